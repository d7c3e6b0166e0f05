//! `[[shaping]] site_max_message_rate`: a limit for a site across all IPs (and, in a fleet, all
//! nodes). Receivers throttle per sending organisation too, not only per IP.
//!
//! In a fleet the slots come from Redis (`fleet::limits`, one round trip per message). On a
//! single relay, or while Redis is unavailable, they come from this node's own clock: with the
//! interval stretched by the number of live nodes, so the fleet as a whole stays within the
//! limit on each node's share.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::shaping::{ReleasableSlot, Stopped, unless_stopped};
use crate::fleet::Fleet;
use crate::fleet::limits::{interval, take_site_slot};
use crate::settings::shaping::Rate;

#[derive(Default)]
pub struct SiteLimits {
    fleet: OnceLock<Arc<Fleet>>,
    /// Per site: when this node's next message may go (used without Redis).
    next_local: Mutex<HashMap<String, Instant>>,
}

impl SiteLimits {
    /// Takes slots from the fleet's Redis from now on.
    pub fn join(&self, fleet: Arc<Fleet>) {
        let _ = self.fleet.set(fleet);
    }

    /// Waits until the site's rate allows one more message (giving the scheduler slot back
    /// while waiting).
    pub async fn message_allowed(
        &self,
        site: &str,
        rate: Option<Rate>,
        slot: &mut dyn ReleasableSlot,
    ) -> Result<(), Stopped> {
        let Some(rate) = rate else { return Ok(()) };
        loop {
            let wait = match self.fleet.get() {
                Some(fleet) if fleet.redis_up() => {
                    match take_site_slot(fleet.store(), site, rate).await {
                        Ok(wait) => wait,
                        Err(error) => {
                            tracing::debug!(%error, site, "site rate from Redis failed: this node's share");
                            self.take_local(site, rate, fleet.live_nodes())
                        }
                    }
                }
                Some(fleet) => self.take_local(site, rate, fleet.live_nodes()),
                None => self.take_local(site, rate, 1),
            };
            let Some(wait) = wait else { return Ok(()) };
            slot.release();
            unless_stopped(slot, tokio::time::sleep(wait)).await?;
        }
    }

    /// This node's slot: the site's interval times `share` (the live nodes).
    fn take_local(&self, site: &str, rate: Rate, share: u32) -> Option<Duration> {
        let spacing = interval(rate) * share.max(1);
        let now = Instant::now();
        let mut next = self.next_local.lock();
        let at = next.entry(site.to_string()).or_insert(now);
        if *at > now {
            return Some(*at - now);
        }
        *at = now + spacing;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_slots_are_spaced_by_the_share_of_live_nodes() {
        let limits = SiteLimits::default();
        let rate = Rate::parse("10/s").unwrap();
        assert_eq!(limits.take_local("mx.example", rate, 2), None);
        let wait = limits.take_local("mx.example", rate, 2).unwrap();
        assert!(
            wait > Duration::from_millis(150) && wait <= Duration::from_millis(200),
            "{wait:?}"
        );
        assert_eq!(
            limits.take_local("other.example", rate, 2),
            None,
            "sites are apart"
        );
    }
}
