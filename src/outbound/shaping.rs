//! Traffic shaping per (source IP, site): how many connections, how many messages per
//! connection, and how fast messages and new connections may go.
//!
//! A *site* is the set of MX hosts a domain's mail goes to (see [`site_of`]), so gmail.com and a
//! domain hosted at Google share one set of limits, as receivers count per sending IP, not per
//! recipient domain. Limits come from `[[shaping]]` entries matched against the site's host names:
//! `site = "*"` sets defaults, `site = "*.google.com"` covers every host under google.com, and an
//! exact host name beats both. Each limit is taken from the most specific entry that sets it.
//!
//! A delivery that must wait for a limit gives its scheduler slot back first (see
//! [`ReleasableSlot`]), so a slow site never holds up other sites or pools. Waiters for a
//! connection are served in order (tokio's semaphore is fair).
//!
//! A reload changes the limits of pairs already in use ([`Shaper::reconfigure`]): rates start
//! afresh and wake their waiters, a higher connection limit frees permits at once, and a lower
//! one is reached as open connections close (no connection is cut).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::next_hop::Target;
pub use crate::settings::shaping::{Limits, Rate, ShapingRule, limits_for};

/// The name of the site a list of next hops belongs to: its host names, sorted, comma-separated.
pub fn site_of(targets: &[Target]) -> String {
    let mut hosts: Vec<String> = targets
        .iter()
        .map(|t| t.host.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts.join(",")
}

/// A token bucket holding up to `rate.count` tokens, refilled evenly over `rate.per`.
#[derive(Debug)]
struct Bucket {
    rate: Rate,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: Rate, now: Instant) -> Self {
        Self {
            rate,
            tokens: f64::from(rate.count),
            last: now,
        }
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let per_token = self.rate.per.as_secs_f64() / f64::from(self.rate.count);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed / per_token).min(f64::from(self.rate.count));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) * per_token))
        }
    }
}

/// A delivery's place among the scheduler's concurrent deliveries, as outbound sees it (the
/// scheduler's `DeliverySlot` implements it). A delivery that has to wait for a shaping limit
/// gives it back, so the scheduler can start deliveries for other sites; and it stops waiting when
/// told to (shutdown, or the message deleted or held): the message stays in the spool.
pub trait ReleasableSlot: Send + Sync {
    /// Gives the place back to the scheduler (a no-op when already given back).
    fn release(&mut self);
    /// Cancelled when a waiting delivery must give up.
    fn stop(&self) -> &CancellationToken;
}

/// The delivery was told to stop while it waited for a shaping limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// Runs `wait` unless the delivery is told to stop first.
pub async fn unless_stopped<T>(
    slot: &dyn ReleasableSlot,
    wait: impl Future<Output = T>,
) -> Result<T, Stopped> {
    tokio::select! {
        _ = slot.stop().cancelled() => Err(Stopped),
        value = wait => Ok(value),
    }
}

/// Shaping state of one (source IP, site) pair.
#[derive(Debug)]
pub struct Pair {
    /// The site's name (see [`site_of`]).
    pub site: String,
    limits: Mutex<Limits>,
    connections: Arc<Semaphore>,
    /// Permits to take out of circulation as connections close: a lowered `max_connections`
    /// while more than the new limit were open.
    excess: Arc<AtomicUsize>,
    /// Signalled when the limits change, so rate waiters look again.
    changed: Notify,
    /// Signalled when a connection of this pair goes back to the idle cache.
    returned: Notify,
    /// Deliveries waiting for a connection of this pair. While any wait, a newcomer waits
    /// behind them instead of taking the next connection that comes back, so connections go
    /// to deliveries in the order they asked (and mail leaves in order of arrival).
    waiting: Arc<AtomicUsize>,
    messages: Mutex<Option<Bucket>>,
    connects: Mutex<Option<Bucket>>,
}

/// Held by a delivery while it waits its turn for a connection (see [`Pair::has_waiters`]).
#[derive(Debug)]
pub struct WaitingTurn(Arc<AtomicUsize>);

impl Drop for WaitingTurn {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Held by an open connection: one of its pair's `max_connections`.
#[derive(Debug)]
pub struct ConnectionPermit {
    permit: Option<OwnedSemaphorePermit>,
    excess: Arc<AtomicUsize>,
    /// One of the site's `site_max_connections`, when it has that limit.
    _site: Option<super::site_connection::SiteConnection>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let retire = self
            .excess
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if retire && let Some(permit) = self.permit.take() {
            permit.forget();
        }
    }
}

impl ConnectionPermit {
    fn new(permit: OwnedSemaphorePermit, excess: &Arc<AtomicUsize>) -> Self {
        Self {
            permit: Some(permit),
            excess: excess.clone(),
            _site: None,
        }
    }

    /// Holds `site` for as long as the connection lives too.
    pub fn with_site(mut self, site: Option<super::site_connection::SiteConnection>) -> Self {
        self._site = site;
        self
    }
}

/// Takes a token from `bucket` if it has a limit: `None` to go ahead, else how long until one.
fn next_token(bucket: &Mutex<Option<Bucket>>) -> Option<Duration> {
    bucket.lock().as_mut()?.take(Instant::now()).err()
}

async fn wait_for_token(
    bucket: &Mutex<Option<Bucket>>,
    changed: &Notify,
    slot: &mut dyn ReleasableSlot,
) -> Result<(), Stopped> {
    // The common case, a token at hand or no limit, costs one lock.
    if next_token(bucket).is_none() {
        return Ok(());
    }
    loop {
        // Listening for a reload, then looking again: a reload between the look and the
        // sleep still wakes this waiter.
        let changed = changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let Some(wait) = next_token(bucket) else {
            return Ok(());
        };
        slot.release();
        unless_stopped(slot, async {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = changed => {}
            }
        })
        .await?;
    }
}

impl Pair {
    fn new(site: &str, limits: Limits) -> Self {
        let now = Instant::now();
        Self {
            site: site.to_string(),
            limits: Mutex::new(limits),
            connections: Arc::new(Semaphore::new(limits.max_connections.max(1) as usize)),
            excess: Arc::default(),
            changed: Notify::new(),
            returned: Notify::new(),
            waiting: Arc::default(),
            messages: Mutex::new(limits.max_message_rate.map(|r| Bucket::new(r, now))),
            connects: Mutex::new(limits.max_connection_rate.map(|r| Bucket::new(r, now))),
        }
    }

    /// The pair's limits now (a reload may change them).
    pub fn limits(&self) -> Limits {
        *self.limits.lock()
    }

    /// Applies new limits to a pair in use (see the module's documentation).
    fn set_limits(&self, new: Limits) {
        let old = std::mem::replace(&mut *self.limits.lock(), new);
        if old == new {
            return;
        }
        let now = Instant::now();
        if old.max_message_rate != new.max_message_rate {
            *self.messages.lock() = new.max_message_rate.map(|r| Bucket::new(r, now));
        }
        if old.max_connection_rate != new.max_connection_rate {
            *self.connects.lock() = new.max_connection_rate.map(|r| Bucket::new(r, now));
        }
        let (old_max, new_max) = (old.max_connections.max(1), new.max_connections.max(1));
        if new_max > old_max {
            let mut raise = (new_max - old_max) as usize;
            // Permits still owed from an earlier lowering are cancelled first.
            let owed = self
                .excess
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    Some(n.saturating_sub(raise))
                })
                .unwrap_or_default();
            raise -= owed.min(raise);
            self.connections.add_permits(raise);
        } else if new_max < old_max {
            let lower = (old_max - new_max) as usize;
            let forgotten = self.connections.forget_permits(lower);
            self.excess.fetch_add(lower - forgotten, Ordering::AcqRel);
        }
        self.changed.notify_waiters();
    }

    /// Waits until `max_message_rate` allows one more message.
    pub async fn message_allowed(&self, slot: &mut dyn ReleasableSlot) -> Result<(), Stopped> {
        wait_for_token(&self.messages, &self.changed, slot).await
    }

    /// Waits until `max_connection_rate` allows one more new connection.
    pub async fn connect_allowed(&self, slot: &mut dyn ReleasableSlot) -> Result<(), Stopped> {
        wait_for_token(&self.connects, &self.changed, slot).await
    }

    /// A connection permit if one is free now.
    pub fn try_connection(&self) -> Option<ConnectionPermit> {
        self.connections
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|permit| ConnectionPermit::new(permit, &self.excess))
    }

    /// Waits for either a free connection permit (`Some`) or a connection of this pair going
    /// back to the idle cache (`None`: take it from there).
    pub async fn connection_or_returned(&self) -> Option<ConnectionPermit> {
        tokio::select! {
            permit = self.connections.clone().acquire_owned() => {
                permit.ok().map(|permit| ConnectionPermit::new(permit, &self.excess))
            }
            _ = self.returned.notified() => None,
        }
    }

    /// Whether deliveries are waiting for a connection of this pair.
    pub fn has_waiters(&self) -> bool {
        self.waiting.load(Ordering::Acquire) > 0
    }

    /// Counts the caller among the waiting deliveries until the turn is dropped.
    pub fn waiting_turn(&self) -> WaitingTurn {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        WaitingTurn(self.waiting.clone())
    }

    /// A connection of this pair is idle again: wakes one waiter.
    pub fn connection_returned(&self) {
        self.returned.notify_one();
    }

    /// Connections open now (idle ones included).
    pub fn open_connections(&self) -> u32 {
        let free = self.connections.available_permits() as u32;
        let excess = self.excess.load(Ordering::Acquire) as u32;
        (self.limits().max_connections.max(1) + excess).saturating_sub(free)
    }
}

/// (source IP, site); `None` is the host's default address.
type PairKey = (Option<IpAddr>, String);

/// Shaping state for every (source IP, site) pair seen.
#[derive(Debug, Default)]
pub struct Shaper {
    rules: Mutex<Vec<ShapingRule>>,
    pairs: Mutex<HashMap<PairKey, Arc<Pair>>>,
}

impl Shaper {
    pub fn new(rules: Vec<ShapingRule>) -> Self {
        Self {
            rules: Mutex::new(rules),
            pairs: Mutex::new(HashMap::new()),
        }
    }

    /// The pair's state, created with the site's limits on first use.
    pub fn pair(&self, source: Option<IpAddr>, site: &str) -> Arc<Pair> {
        let mut pairs = self.pairs.lock();
        if let Some(pair) = pairs.get(&(source, site.to_string())) {
            return pair.clone();
        }
        let pair = Arc::new(Pair::new(site, limits_for(&self.rules.lock(), site)));
        pairs.insert((source, site.to_string()), pair.clone());
        pair
    }

    /// New `[[shaping]]` rules (a reload): pairs made from now on use them, and every pair in
    /// use takes its site's new limits.
    pub fn reconfigure(&self, rules: Vec<ShapingRule>) {
        let pairs = self.pairs.lock();
        let mut current = self.rules.lock();
        if *current == rules {
            return;
        }
        for pair in pairs.values() {
            pair.set_limits(limits_for(&rules, &pair.site));
        }
        *current = rules;
        tracing::info!(pairs = pairs.len(), "shaping limits reloaded");
    }

    /// Forgets pairs with no open connection and no delivery using them, once their rate
    /// buckets are full again (so forgetting them allows no extra burst).
    pub fn forget_idle(&self) {
        let now = Instant::now();
        let full = |bucket: &Mutex<Option<Bucket>>| {
            let mut bucket = bucket.lock();
            bucket.as_mut().is_none_or(|b| {
                let refilled = now.saturating_duration_since(b.last) >= b.rate.per;
                refilled || b.tokens >= f64::from(b.rate.count)
            })
        };
        self.pairs.lock().retain(|_, pair| {
            Arc::strong_count(pair) > 1
                || pair.open_connections() > 0
                || !full(&pair.messages)
                || !full(&pair.connects)
        });
    }
}

/// A scheduler slot that is never told to stop, for tests that wait for a limit.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Slot(CancellationToken);

#[cfg(test)]
impl ReleasableSlot for Slot {
    fn release(&mut self) {}
    fn stop(&self) -> &CancellationToken {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::shaping::rule;

    #[test]
    fn site_names_ignore_order_case_and_duplicates() {
        let target = |host: &str| Target {
            host: host.to_string(),
            addr: "127.0.0.1:25".parse().unwrap(),
            require_tls: false,
            verify_tls: false,
        };
        let a = site_of(&[target("MX2.example.test."), target("mx1.example.test")]);
        let b = site_of(&[
            target("mx1.example.test"),
            target("mx2.example.test"),
            target("mx1.example.test"),
        ]);
        assert_eq!(a, "mx1.example.test,mx2.example.test");
        assert_eq!(a, b);
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::new(Rate::parse("10/s").unwrap(), start);
        for _ in 0..10 {
            assert_eq!(bucket.take(start), Ok(()));
        }
        let wait = bucket.take(start).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait >= Duration::from_millis(99));
        assert_eq!(bucket.take(start + Duration::from_millis(100)), Ok(()));
        assert!(bucket.take(start + Duration::from_millis(150)).is_err());
    }

    #[tokio::test]
    async fn connections_are_limited_and_come_back_when_dropped() {
        let shaper = Shaper::new(vec![rule("*", Some(2), None)]);
        let pair = shaper.pair(None, "mx.example.test");
        let first = pair.try_connection().unwrap();
        let _second = pair.try_connection().unwrap();
        assert!(pair.try_connection().is_none());
        assert_eq!(pair.open_connections(), 2);
        drop(first);
        assert!(pair.try_connection().is_some());
    }

    #[tokio::test]
    async fn a_returned_connection_wakes_a_waiter() {
        let shaper = Shaper::new(vec![rule("*", Some(1), None)]);
        let pair = shaper.pair(None, "mx.example.test");
        let _held = pair.try_connection().unwrap();
        pair.connection_returned();
        assert!(pair.connection_or_returned().await.is_none());
    }

    #[tokio::test]
    async fn a_lowered_connection_limit_is_reached_as_connections_close() {
        let shaper = Shaper::new(vec![rule("*", Some(3), None)]);
        let pair = shaper.pair(None, "mx.example.test");
        let mut open: Vec<_> = (0..3).map(|_| pair.try_connection().unwrap()).collect();
        shaper.reconfigure(vec![rule("*", Some(1), None)]);
        assert_eq!(pair.limits().max_connections, 1);
        assert_eq!(pair.open_connections(), 3);
        open.pop();
        assert!(pair.try_connection().is_none(), "two still open, limit 1");
        open.pop();
        assert!(pair.try_connection().is_none(), "one still open, limit 1");
        assert_eq!(pair.open_connections(), 1);
        open.pop();
        let again = pair.try_connection();
        assert!(again.is_some());
        assert!(pair.try_connection().is_none());
    }

    #[tokio::test]
    async fn a_raised_connection_limit_frees_permits_at_once_and_cancels_a_lowering() {
        let shaper = Shaper::new(vec![rule("*", Some(2), None)]);
        let pair = shaper.pair(None, "mx.example.test");
        let _open: Vec<_> = (0..2).map(|_| pair.try_connection().unwrap()).collect();
        shaper.reconfigure(vec![rule("*", Some(1), None)]);
        shaper.reconfigure(vec![rule("*", Some(4), None)]);
        assert_eq!(pair.open_connections(), 2);
        let _third = pair.try_connection().unwrap();
        let _fourth = pair.try_connection().unwrap();
        assert!(pair.try_connection().is_none());
        assert_eq!(pair.open_connections(), 4);
        // Pairs made after the reload use the new rules too.
        let other = shaper.pair(None, "mx.other.test");
        assert_eq!(other.limits().max_connections, 4);
    }

    #[tokio::test]
    async fn a_reload_wakes_a_delivery_waiting_for_the_old_rate() {
        let shaper = Arc::new(Shaper::new(vec![rule("*", None, Some("1/h"))]));
        let pair = shaper.pair(None, "mx.example.test");
        let mut slot = Slot::default();
        assert_eq!(pair.message_allowed(&mut slot).await, Ok(()));
        let waiter = tokio::spawn({
            let pair = pair.clone();
            async move {
                let mut slot = Slot::default();
                pair.message_allowed(&mut slot).await
            }
        });
        // The waiter sleeps for the next token (an hour away)...
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        // ...until the rate is raised: it takes a token of the new rate without the hour.
        shaper.reconfigure(vec![rule("*", None, Some("100/s"))]);
        let waited = tokio::time::timeout(Duration::from_secs(1), waiter).await;
        assert!(matches!(waited, Ok(Ok(Ok(())))), "{waited:?}");
    }
}
