//! Retry timing: exponential backoff with jitter, never past a message's expiry.

use std::time::Duration;

use crate::config::QueueSettings;

/// The delay before attempt number `attempts + 1`, given `attempts` failed ones, before jitter.
pub fn retry_delay(settings: &QueueSettings, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(30);
    settings
        .retry_interval
        .saturating_mul(1u32 << doublings)
        .min(settings.max_retry_interval)
}

/// `delay` scaled by `factor` (0.8 to 1.2 in use), and never past `until_expiry`.
pub fn jittered(delay: Duration, factor: f64, until_expiry: Duration) -> Duration {
    delay.mul_f64(factor.clamp(0.5, 2.0)).min(until_expiry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let settings = QueueSettings {
            retry_interval: Duration::from_secs(60),
            max_retry_interval: Duration::from_secs(600),
            max_age: Duration::from_secs(86400),
            max_concurrent_deliveries: 1,
            connection_idle_timeout: Duration::from_secs(1),
        };
        let delays: Vec<u64> = (1..=6)
            .map(|n| retry_delay(&settings, n).as_secs())
            .collect();
        assert_eq!(delays, [60, 120, 240, 480, 600, 600]);
    }

    #[test]
    fn jitter_stays_in_bounds_and_before_expiry() {
        let base = Duration::from_secs(100);
        let far = Duration::from_secs(10_000);
        assert_eq!(jittered(base, 0.8, far), Duration::from_secs(80));
        assert_eq!(jittered(base, 1.2, far), Duration::from_secs(120));
        assert_eq!(
            jittered(base, 1.2, Duration::from_secs(30)),
            Duration::from_secs(30)
        );
    }
}
