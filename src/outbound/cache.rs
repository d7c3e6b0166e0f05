//! Idle outbound connections kept for reuse.
//!
//! After a transaction the session is ready for the next MAIL, so the connection goes back here,
//! keyed by (source IP, next-hop address): a connection is only ever reused for mail that would
//! have been sent from the same source to the same destination, so reuse cannot move mail between
//! pools.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::client::SmtpClient;

/// Idle connections kept per (source, destination).
const MAX_IDLE_PER_KEY: usize = 32;

pub type CacheKey = (Option<IpAddr>, SocketAddr);

pub struct ConnectionCache {
    idle: Mutex<HashMap<CacheKey, Vec<(SmtpClient, Instant)>>>,
    idle_timeout: Duration,
}

impl ConnectionCache {
    pub fn new(idle_timeout: Duration) -> Self {
        Self {
            idle: Mutex::new(HashMap::new()),
            idle_timeout,
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<CacheKey, Vec<(SmtpClient, Instant)>>> {
        self.idle.lock()
    }

    /// The most recently used idle connection for `key` that has not expired.
    pub fn take(&self, key: CacheKey) -> Option<SmtpClient> {
        let mut idle = self.lock();
        let list = idle.get_mut(&key)?;
        while let Some((client, since)) = list.pop() {
            if since.elapsed() < self.idle_timeout {
                return Some(client);
            }
            // Expired: dropping closes it; the reaper says QUIT to the ones it finds first.
        }
        None
    }

    /// Returns a connection for reuse; gives it back when it should be closed instead.
    pub fn put(&self, client: SmtpClient) -> Option<SmtpClient> {
        if client.closing || client.transactions >= client.max_transactions {
            return Some(client);
        }
        let mut idle = self.lock();
        let list = idle.entry((client.source, client.target)).or_default();
        if list.len() >= MAX_IDLE_PER_KEY {
            return Some(client);
        }
        list.push((client, Instant::now()));
        None
    }

    /// Removes and returns connections idle for longer than the timeout (all of them if `all`).
    pub fn expired(&self, all: bool) -> Vec<SmtpClient> {
        let mut idle = self.lock();
        let mut out = Vec::new();
        for list in idle.values_mut() {
            let mut index = 0;
            while index < list.len() {
                if all || list[index].1.elapsed() >= self.idle_timeout {
                    out.push(list.swap_remove(index).0);
                } else {
                    index += 1;
                }
            }
        }
        idle.retain(|_, list| !list.is_empty());
        out
    }
}
