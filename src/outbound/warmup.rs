//! Warm-up: a new dedicated IP sends only so many messages a day, rising on a schedule.
//!
//! An IP with `warmup_started` is on day `today - warmup_started + 1` of the schedule; while the
//! schedule runs, each message attempt from it takes one unit of that day's cap. When every IP of
//! a pool is capped, its mail goes to the pool's `overflow_pool` or waits for the caps to reset at
//! midnight UTC. The day's counts are saved in the spool folder (`warmup.json`) by the relay's
//! periodic upkeep and at shutdown, so a restart does not hand out a day's cap twice.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use parking_lot::Mutex;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::settings::WarmupSettings;
use crate::spool::state_file::StateFile;

/// What the warm-up says about an IP today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmupState {
    /// No warm-up (never started, warm-up disabled, or the schedule is over).
    Warm,
    /// Day `day` (1-based) of `days`, with this many messages allowed today.
    Warming { day: usize, days: usize, cap: u64 },
}

impl WarmupState {
    pub fn of(settings: &WarmupSettings, started: Option<NaiveDate>, today: NaiveDate) -> Self {
        let Some(started) = started.filter(|_| settings.enabled) else {
            return Self::Warm;
        };
        let elapsed = (today - started).num_days().max(0) as usize;
        match settings.schedule.get(elapsed) {
            Some(&cap) => Self::Warming {
                day: elapsed + 1,
                days: settings.schedule.len(),
                cap,
            },
            None => Self::Warm,
        }
    }

    /// SES `WarmupPercentage`.
    pub fn percentage(self) -> u64 {
        match self {
            Self::Warm => 100,
            Self::Warming { day, days, .. } => ((day.saturating_sub(1)) * 100 / days.max(1)) as u64,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct DayCounts {
    day: Option<NaiveDate>,
    counts: HashMap<IpAddr, u64>,
}

/// Today's sends per warming IP.
pub struct WarmupLedger {
    file: StateFile,
    counts: Mutex<DayCounts>,
}

impl WarmupLedger {
    /// Loads the counts saved in `path` (missing or unreadable: start from zero).
    pub fn load(path: Option<PathBuf>) -> Self {
        let file = StateFile::new(path);
        let counts = file.load().unwrap_or_default();
        Self {
            file,
            counts: Mutex::new(counts),
        }
    }

    /// Takes one message from `ip`'s cap for `today`; false when the cap is used up.
    pub fn try_take(&self, ip: IpAddr, today: NaiveDate, cap: u64) -> bool {
        let mut counts = self.counts.lock();
        if counts.day != Some(today) {
            counts.day = Some(today);
            counts.counts.clear();
        }
        let used = counts.counts.entry(ip).or_default();
        if *used >= cap {
            return false;
        }
        *used += 1;
        self.file.changed();
        true
    }

    /// How many messages `ip` has sent today.
    pub fn used_today(&self, ip: IpAddr, today: NaiveDate) -> u64 {
        let counts = self.counts.lock();
        match counts.day == Some(today) {
            true => counts.counts.get(&ip).copied().unwrap_or(0),
            false => 0,
        }
    }

    /// Today's counts, for the fleet's copy.
    pub fn today_counts(&self, today: NaiveDate) -> Vec<(IpAddr, u64)> {
        let counts = self.counts.lock();
        match counts.day == Some(today) {
            true => counts.counts.iter().map(|(&ip, &n)| (ip, n)).collect(),
            false => Vec::new(),
        }
    }

    /// Raises today's counts to `known` where they are lower (the fleet's counts for IPs this
    /// node took over, or a count lost with a spool).
    pub fn raise_to(&self, today: NaiveDate, known: &[(IpAddr, u64)]) {
        let mut counts = self.counts.lock();
        if counts.day != Some(today) {
            counts.day = Some(today);
            counts.counts.clear();
        }
        for &(ip, n) in known {
            let used = counts.counts.entry(ip).or_default();
            if *used < n {
                *used = n;
                self.file.changed();
            }
        }
    }

    /// Blocking: writes the counts if they changed.
    pub fn save(&self) -> std::io::Result<()> {
        self.file.save(|| self.counts.lock().clone())
    }
}

/// Today in UTC.
pub fn today() -> NaiveDate {
    chrono::Utc::now().date_naive()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn schedule_days_and_caps() {
        let settings = WarmupSettings {
            enabled: true,
            schedule: vec![10, 20, 40],
        };
        let started = Some(date("2026-11-20"));
        assert_eq!(
            WarmupState::of(&settings, started, date("2026-11-20")),
            WarmupState::Warming {
                day: 1,
                days: 3,
                cap: 10
            }
        );
        assert_eq!(
            WarmupState::of(&settings, started, date("2026-11-22")),
            WarmupState::Warming {
                day: 3,
                days: 3,
                cap: 40
            }
        );
        assert_eq!(
            WarmupState::of(&settings, started, date("2026-11-23")),
            WarmupState::Warm
        );
        assert_eq!(
            WarmupState::of(&settings, None, date("2026-11-20")),
            WarmupState::Warm
        );
        let off = WarmupSettings {
            enabled: false,
            ..settings
        };
        assert_eq!(
            WarmupState::of(&off, started, date("2026-11-20")),
            WarmupState::Warm
        );
        assert_eq!(
            WarmupState::Warming {
                day: 2,
                days: 4,
                cap: 1
            }
            .percentage(),
            25
        );
    }

    #[test]
    fn the_default_schedule_reaches_50000_on_day_45() {
        let schedule = crate::settings::default_warmup_schedule();
        assert_eq!(schedule.len(), 45);
        assert_eq!(schedule[44], 50_000);
        assert!(schedule.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn caps_are_exact_reset_daily_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warmup.json");
        let ip: IpAddr = "127.0.0.3".parse().unwrap();
        let ledger = WarmupLedger::load(Some(path.clone()));
        let taken = (0..10)
            .filter(|_| ledger.try_take(ip, date("2026-11-20"), 3))
            .count();
        assert_eq!(taken, 3);
        ledger.save().unwrap();
        let reloaded = WarmupLedger::load(Some(path));
        assert!(
            !reloaded.try_take(ip, date("2026-11-20"), 3),
            "the day's cap is still used"
        );
        assert!(
            reloaded.try_take(ip, date("2026-11-21"), 3),
            "a new day resets it"
        );
    }

    #[test]
    fn counts_known_to_the_fleet_raise_this_nodes_and_never_lower_them() {
        let ledger = WarmupLedger::load(None);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.3".parse().unwrap(), "127.0.0.4".parse().unwrap());
        let day = date("2026-11-20");
        assert!(ledger.try_take(a, day, 10));
        assert!(ledger.try_take(a, day, 10));
        ledger.raise_to(day, &[(a, 1), (b, 9)]);
        assert_eq!(ledger.used_today(a, day), 2, "never lowered");
        assert_eq!(ledger.used_today(b, day), 9, "raised");
        assert!(ledger.try_take(b, day, 10));
        assert!(
            !ledger.try_take(b, day, 10),
            "the cap counts the fleet's sends"
        );
        let mut counts = ledger.today_counts(day);
        counts.sort();
        assert_eq!(counts, [(a, 2), (b, 10)]);
    }
}
