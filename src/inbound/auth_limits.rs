//! Limits on password checking, so AUTH cannot be used to exhaust the relay or guess passwords.
//!
//! An argon2 check costs about 19 MiB and tens of milliseconds on purpose. Checks run at most
//! `smtp.auth_concurrency` at a time (by default the number of cores); the rest wait in line, so
//! memory stays flat however many clients try at once. A client address that failed
//! `smtp.auth_failures_per_ip` times within [`FAILURE_WINDOW`] is refused without a check until
//! the window has passed, across sessions (the per-session limit alone lets a client reconnect).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{Semaphore, SemaphorePermit};

/// How long failures from an address are remembered.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Above this many remembered addresses, expired ones are dropped before adding another.
const PRUNE_ABOVE: usize = 10_000;

/// Failures from one address in the current window.
struct Failures {
    count: u32,
    since: Instant,
}

pub struct AuthLimits {
    checks: Semaphore,
    max_failures: u32,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

impl AuthLimits {
    pub fn new(concurrency: usize, max_failures: u32) -> Self {
        Self {
            checks: Semaphore::new(concurrency.max(1)),
            max_failures,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for a turn to check a password.
    pub async fn turn(&self) -> Option<SemaphorePermit<'_>> {
        self.checks.acquire().await.ok()
    }

    /// True while `address` may not try again.
    pub fn blocked(&self, address: IpAddr, now: Instant) -> bool {
        self.failures.lock().get(&address).is_some_and(|f| {
            now.duration_since(f.since) < FAILURE_WINDOW && f.count >= self.max_failures
        })
    }

    /// A check for `address` failed.
    pub fn failed(&self, address: IpAddr, now: Instant) {
        let mut failures = self.failures.lock();
        if failures.len() >= PRUNE_ABOVE {
            failures.retain(|_, f| now.duration_since(f.since) < FAILURE_WINDOW);
        }
        let entry = failures.entry(address).or_insert(Failures {
            count: 0,
            since: now,
        });
        if now.duration_since(entry.since) >= FAILURE_WINDOW {
            *entry = Failures {
                count: 0,
                since: now,
            };
        }
        entry.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_after_its_failures_until_the_window_passes() {
        let limits = AuthLimits::new(2, 3);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.5".parse().unwrap(), "::1".parse().unwrap());
        let start = Instant::now();
        for _ in 0..3 {
            assert!(!limits.blocked(a, start));
            limits.failed(a, start);
        }
        assert!(limits.blocked(a, start));
        assert!(
            !limits.blocked(b, start),
            "other addresses are not affected"
        );
        let later = start + FAILURE_WINDOW;
        assert!(!limits.blocked(a, later), "the window passed");
        limits.failed(a, later);
        assert!(
            !limits.blocked(a, later),
            "a new window starts from one failure"
        );
    }

    #[tokio::test]
    async fn checks_take_turns() {
        let limits = AuthLimits::new(2, 10);
        let first = limits.turn().await;
        let second = limits.turn().await;
        assert!(first.is_some() && second.is_some());
        assert!(limits.checks.try_acquire().is_err(), "a third waits");
        drop(first);
        assert!(limits.checks.try_acquire().is_ok());
    }
}
