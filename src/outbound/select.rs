//! Choosing the source IP for a delivery: smooth weighted round robin over a pool's IPs.
//!
//! Smooth WRR (as in nginx) spreads picks evenly instead of in bursts: with weights 5/2/3 the
//! sequence is a a c b a c a b c a ..., and every 10 picks hold exactly 5, 2 and 3.
//! The state (one running score per IP) is kept per pool; the pick itself is a pure function.
//!
//! [`SourcePicker`] is the whole choice for one delivery to one site: which of the pool's IPs
//! may be used now (weight, address family, health, warm-up cap), the overflow pool when every IP
//! is capped, and, when nothing is left, why.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Instant;

use chrono::NaiveDate;

use super::health::Health;
use super::warmup::{WarmupLedger, WarmupState};
use crate::registry::{PoolMembers, Registry, Source};

/// Picks one of `candidates` (address, weight), updating the running scores in `current`.
/// Weight 0 never wins. When `avoid` is set and another candidate exists, `avoid` is skipped:
/// a retry after a temporary failure should leave from a different IP of the pool.
pub fn select_source_ip(
    candidates: &[(IpAddr, u32)],
    current: &mut HashMap<IpAddr, i64>,
    avoid: Option<IpAddr>,
) -> Option<IpAddr> {
    let eligible = |&&(address, weight): &&(IpAddr, u32)| weight > 0 && Some(address) != avoid;
    let others = candidates.iter().filter(eligible).count();
    let pool: Vec<(IpAddr, u32)> = if others > 0 {
        candidates.iter().filter(eligible).copied().collect()
    } else {
        candidates.iter().filter(|(_, w)| *w > 0).copied().collect()
    };
    let total: i64 = pool.iter().map(|&(_, w)| i64::from(w)).sum();
    let mut best: Option<(IpAddr, i64)> = None;
    for &(address, weight) in &pool {
        let score = current.entry(address).or_insert(0);
        *score += i64::from(weight);
        if best.is_none_or(|(_, top)| *score > top) {
            best = Some((address, *score));
        }
    }
    let (winner, _) = best?;
    if let Some(score) = current.get_mut(&winner) {
        *score -= total;
    }
    Some(winner)
}

/// Per-pool selector state shared by all deliveries.
#[derive(Debug, Default)]
pub struct SourceSelector {
    scores: Mutex<HashMap<String, HashMap<IpAddr, i64>>>,
}

impl SourceSelector {
    pub fn select(
        &self,
        pool: &str,
        candidates: &[(IpAddr, u32)],
        avoid: Option<IpAddr>,
    ) -> Option<IpAddr> {
        let mut scores = self.scores.lock();
        let current = scores.entry(pool.to_string()).or_default();
        select_source_ip(candidates, current, avoid)
    }
}

/// The source a delivery binds to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picked {
    /// `None`: the host's default address (`ses-shared-pool` configured empty).
    pub address: Option<IpAddr>,
    /// The IP's own EHLO name, if it has one.
    pub ehlo_hostname: Option<String>,
}

/// Why no source can be picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoPick {
    /// Every IP left is at its warm-up cap for today, and there is no overflow pool (left).
    WarmupCapped,
    /// The IPs left are suspended for this site.
    Suspended,
    /// The IPs left cannot be bound on this host.
    Unbindable,
    /// Nothing left to try: every IP was tried in this attempt or is out of rotation.
    Exhausted,
    /// The pool has no address of the next hop's family (IPv4 or IPv6).
    OtherFamily,
}

/// What the picker consults: shared health, warm-up counts and selector state.
pub struct PickerContext<'a> {
    pub registry: &'a Registry,
    pub health: &'a Health,
    pub ledger: &'a WarmupLedger,
    pub selector: &'a SourceSelector,
    pub site: &'a str,
    pub today: NaiveDate,
}

/// Picks source IPs for one site within one attempt, never the same one twice after it failed
/// ([`SourcePicker::exclude`]).
pub struct SourcePicker {
    /// The message's pool.
    home_pool: String,
    /// The pool sources come from now: the home pool, or its overflow pool once every home IP
    /// is capped.
    pool: String,
    members: PoolMembers,
    /// The IP the message's previous attempt used (avoided if another one is usable).
    avoid: Option<IpAddr>,
    unusable: HashSet<IpAddr>,
    capped: HashSet<IpAddr>,
}

impl SourcePicker {
    pub fn new(registry: &Registry, pool: &str, avoid: Option<IpAddr>) -> Self {
        Self {
            home_pool: pool.to_string(),
            pool: pool.to_string(),
            members: registry.pool_members(pool),
            avoid,
            unusable: HashSet::new(),
            capped: HashSet::new(),
        }
    }

    /// The pool sources come from now.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// True when the pool has addresses but none in rotation (every weight is 0).
    pub fn none_in_rotation(&self) -> bool {
        matches!(&self.members, PoolMembers::Addresses(list) if list.iter().all(|s| s.weight == 0))
    }

    /// This source failed for the site in this attempt: do not pick it again.
    pub fn exclude(&mut self, address: IpAddr) {
        self.unusable.insert(address);
    }

    /// The next source for a next hop of the given address family.
    pub fn next(&mut self, ipv4: bool, ctx: &PickerContext<'_>) -> Result<Picked, NoPick> {
        loop {
            let PoolMembers::Addresses(list) = &self.members else {
                return Ok(Picked {
                    address: None,
                    ehlo_hostname: None,
                });
            };
            let (candidates, why_none) = self.candidates(list, ipv4, ctx);
            let Some(address) = ctx.selector.select(&self.pool, &candidates, self.avoid) else {
                if why_none == NoPick::WarmupCapped
                    && self.pool == self.home_pool
                    && let Some(overflow) = ctx.registry.overflow_pool(&self.pool)
                {
                    tracing::info!(pool = %self.home_pool, overflow, "warm-up caps reached; using the overflow pool");
                    self.pool = overflow.to_string();
                    self.members = ctx.registry.pool_members(overflow);
                    continue;
                }
                return Err(why_none);
            };
            let Some(source) = list.iter().find(|s| s.address == address) else {
                return Err(NoPick::Exhausted);
            };
            if let WarmupState::Warming { cap, .. } =
                WarmupState::of(ctx.registry.warmup(), source.warmup_started, ctx.today)
                && !ctx.ledger.try_take(address, ctx.today, cap)
            {
                self.capped.insert(address);
                continue;
            }
            return Ok(Picked {
                address: Some(address),
                ehlo_hostname: source.ehlo_hostname.clone(),
            });
        }
    }

    /// The usable (address, weight) pairs now, and what to say if there are none.
    fn candidates(
        &self,
        list: &[Source],
        ipv4: bool,
        ctx: &PickerContext<'_>,
    ) -> (Vec<(IpAddr, u32)>, NoPick) {
        let now = Instant::now();
        let (mut suspended, mut unbindable) = (0, 0);
        let candidates = list
            .iter()
            .filter(|s| {
                s.weight > 0
                    && s.address.is_ipv4() == ipv4
                    && !self.unusable.contains(&s.address)
                    && !self.capped.contains(&s.address)
            })
            .filter(|s| {
                if ctx.health.is_unbindable(s.address) {
                    unbindable += 1;
                    false
                } else if ctx.health.is_suspended_for_site(s.address, ctx.site, now) {
                    suspended += 1;
                    false
                } else {
                    true
                }
            })
            .map(|s| (s.address, s.weight))
            .collect();
        let all_capped = !self.capped.is_empty()
            && list.iter().all(|s| {
                s.weight == 0
                    || self.capped.contains(&s.address)
                    || self.unusable.contains(&s.address)
            });
        let why_none = if list.iter().all(|s| s.address.is_ipv4() != ipv4) {
            NoPick::OtherFamily
        } else if all_capped {
            NoPick::WarmupCapped
        } else if suspended > 0 {
            NoPick::Suspended
        } else if unbindable > 0 {
            NoPick::Unbindable
        } else {
            NoPick::Exhausted
        };
        (candidates, why_none)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn count(candidates: &[(IpAddr, u32)], picks: usize) -> HashMap<IpAddr, usize> {
        let mut state = HashMap::new();
        let mut counts = HashMap::new();
        for _ in 0..picks {
            let chosen = select_source_ip(candidates, &mut state, None).unwrap();
            *counts.entry(chosen).or_default() += 1;
        }
        counts
    }

    #[test]
    fn weights_5_2_3_over_100_picks_give_50_20_30() {
        let counts = count(&[(ip(2), 5), (ip(3), 2), (ip(4), 3)], 100);
        assert_eq!(counts[&ip(2)], 50);
        assert_eq!(counts[&ip(3)], 20);
        assert_eq!(counts[&ip(4)], 30);
    }

    #[test]
    fn picks_are_spread_not_bursty() {
        let mut state = HashMap::new();
        let picks: Vec<IpAddr> = (0..4)
            .map(|_| select_source_ip(&[(ip(2), 1), (ip(3), 1)], &mut state, None).unwrap())
            .collect();
        assert_eq!(picks, [ip(2), ip(3), ip(2), ip(3)]);
    }

    #[test]
    fn zero_weight_is_never_chosen() {
        let counts = count(&[(ip(2), 0), (ip(3), 1)], 10);
        assert_eq!(counts.get(&ip(2)), None);
        assert_eq!(
            select_source_ip(&[(ip(2), 0)], &mut HashMap::new(), None),
            None
        );
        assert_eq!(select_source_ip(&[], &mut HashMap::new(), None), None);
    }

    #[test]
    fn avoid_prefers_another_ip_when_there_is_one() {
        let mut state = HashMap::new();
        for _ in 0..10 {
            let chosen = select_source_ip(&[(ip(2), 9), (ip(3), 1)], &mut state, Some(ip(2)));
            assert_eq!(chosen, Some(ip(3)));
        }
        // The only IP is still used rather than none.
        assert_eq!(
            select_source_ip(&[(ip(2), 1)], &mut state, Some(ip(2))),
            Some(ip(2))
        );
    }
}
