//! Choosing the source IP for a delivery: smooth weighted round robin over a pool's IPs.
//!
//! Smooth WRR (as in nginx) spreads picks evenly instead of in bursts: with weights 5/2/3 the
//! sequence is a a c b a c a b c a ..., and every 10 picks hold exactly 5, 2 and 3.
//! The state (one running score per IP) is kept per pool; the pick itself is a pure function.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

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
        let mut scores = self
            .scores
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = scores.entry(pool.to_string()).or_default();
        select_source_ip(candidates, current, avoid)
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
