//! One of a site's `site_max_connections` (see `site_limits`), held by an open connection for
//! as long as it lives (its `ConnectionPermit` carries it) and given back when it closes.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

/// Connections open per site on this node, and a signal when one closes.
#[derive(Default)]
pub(super) struct OpenConnections {
    per_site: Mutex<HashMap<String, u32>>,
    closed: tokio::sync::Notify,
}

/// One of a site's `site_max_connections`, held by an open connection; given back on drop.
#[derive(Debug)]
pub struct SiteConnection {
    open: Arc<OpenConnections>,
    site: String,
}

impl std::fmt::Debug for OpenConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenConnections")
    }
}

impl Drop for SiteConnection {
    fn drop(&mut self) {
        let counters = &self.open;
        let mut per_site = counters.per_site.lock();
        if let Some(open) = per_site.get_mut(&self.site) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                per_site.remove(&self.site);
            }
        }
        drop(per_site);
        counters.closed.notify_waiters();
    }
}

impl OpenConnections {
    /// Open connections per site (locked while the guard lives).
    pub(super) fn per_site(&self) -> MutexGuard<'_, HashMap<String, u32>> {
        self.per_site.lock()
    }

    /// Resolves when a connection closes after this call.
    pub(super) fn closed(&self) -> tokio::sync::futures::Notified<'_> {
        self.closed.notified()
    }
}

impl SiteConnection {
    /// A place counted already in `open` (the caller raised the site's count).
    pub(super) fn new(open: &Arc<OpenConnections>, site: &str) -> Self {
        Self {
            open: open.clone(),
            site: site.to_string(),
        }
    }
}
