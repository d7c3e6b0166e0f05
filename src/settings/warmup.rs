//! `[warmup]`: the automatic warm-up schedule (SES "standard auto warm-up", made explicit).

/// Automatic IP warm-up (SES "standard auto warm-up", made explicit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmupSettings {
    /// SES `AutoWarmupEnabled`: with `false`, no IP is capped.
    pub enabled: bool,
    /// Messages per day for a warming IP, day 1 first; after the last day the IP is warm.
    pub schedule: Vec<u64>,
}

impl Default for WarmupSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            schedule: default_warmup_schedule(),
        }
    }
}

/// The default schedule: roughly doubling at first, then steady growth, reaching 50,000 a day on
/// day 45, as SES's standard warm-up does.
pub fn default_warmup_schedule() -> Vec<u64> {
    let mut schedule = vec![50, 100, 200, 400, 700, 1000, 1500, 2000, 3000, 4000];
    let (start, end, days) = (4000.0_f64, 50_000.0_f64, 35);
    for day in 1..=days {
        schedule.push((start * (end / start).powf(day as f64 / days as f64)).round() as u64);
    }
    schedule
}
