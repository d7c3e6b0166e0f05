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
use super::site_connection::{OpenConnections, SiteConnection};
use crate::fleet::Fleet;
use crate::fleet::limits::{interval, take_site_slot};
use crate::settings::shaping::Rate;

#[derive(Default)]
pub struct SiteLimits {
    fleet: OnceLock<Arc<Fleet>>,
    /// Per site: when this node's next message may go (used without Redis).
    next_local: Mutex<HashMap<String, Instant>>,
    connections: Arc<OpenConnections>,
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

    /// This node's share of the site's connections: `site_max_connections` ÷ live nodes (at
    /// least one), so the nodes together never exceed it while there are no more nodes than
    /// connections allowed. No Redis round trip: the share follows the heartbeats.
    fn connection_share(&self, max: u32) -> u32 {
        let live = self.fleet.get().map_or(1, |fleet| fleet.live_nodes());
        (max / live.max(1)).max(1)
    }

    /// A place among the site's connections, waiting (with the scheduler slot given back) until
    /// one closes when the site is at its limit; `None` when the site has no such limit.
    pub async fn connection(
        &self,
        site: &str,
        max: Option<u32>,
        slot: &mut dyn ReleasableSlot,
    ) -> Result<Option<SiteConnection>, Stopped> {
        let Some(max) = max else { return Ok(None) };
        loop {
            let closed = self.connections.closed();
            {
                let mut per_site = self.connections.per_site();
                let open = per_site.entry(site.to_string()).or_insert(0);
                if *open < self.connection_share(max) {
                    *open += 1;
                    return Ok(Some(SiteConnection::new(&self.connections, site)));
                }
            }
            slot.release();
            // A heartbeat may change the share without any connection closing.
            let wait = tokio::time::timeout(Duration::from_secs(1), closed);
            unless_stopped(slot, wait).await?.ok();
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

    use crate::outbound::shaping::Slot;

    #[tokio::test]
    async fn a_site_at_its_connection_limit_waits_until_one_closes() {
        let limits = Arc::new(SiteLimits::default());
        let mut slot = Slot::default();
        let first = limits.connection("mx", Some(2), &mut slot).await.unwrap();
        let _second = limits.connection("mx", Some(2), &mut slot).await.unwrap();
        assert!(
            limits
                .connection("other", Some(2), &mut slot)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            limits
                .connection("mx", None, &mut slot)
                .await
                .unwrap()
                .is_none()
        );
        let waiting = tokio::spawn({
            let limits = limits.clone();
            async move {
                let mut slot = Slot::default();
                limits
                    .connection("mx", Some(2), &mut slot)
                    .await
                    .map(|c| c.is_some())
            }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the third waits");
        drop(first);
        assert_eq!(waiting.await.unwrap(), Ok(true));
    }

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
