//! The last hour, minute by minute: messages delivered, deferred and bounced per pool and per
//! source IP, counted in memory as attempts end (whether or not `[events] path` is set). The
//! console's Overview charts and Dedicated IPs counts read it; so does the API extension
//! `GET /v2/email/poolrelay/history`.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use parking_lot::Mutex;
use serde::Serialize;

/// Minutes kept.
pub const MINUTES: u64 = 60;

/// What happened to recipients in one minute.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Counts {
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.delivered += other.delivered;
        self.deferred += other.deferred;
        self.bounced += other.bounced;
    }
}

/// One attempt's outcome for some recipients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Deferred,
    Bounced,
}

/// One minute of counts.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Minute {
    /// Minutes since the Unix epoch.
    pub minute: u64,
    pub pools: BTreeMap<String, Counts>,
    pub ips: BTreeMap<IpAddr, Counts>,
}

#[derive(Debug, Default)]
pub struct History {
    minutes: Mutex<VecDeque<Minute>>,
}

fn current_minute() -> u64 {
    crate::spool::unix_now() / 60
}

impl History {
    /// Counts `recipients` of mail of `pool` that left (or tried to) from `ip`.
    pub fn record(&self, pool: &str, ip: Option<IpAddr>, outcome: Outcome, recipients: u64) {
        self.record_at(current_minute(), pool, ip, outcome, recipients);
    }

    fn record_at(
        &self,
        minute: u64,
        pool: &str,
        ip: Option<IpAddr>,
        outcome: Outcome,
        recipients: u64,
    ) {
        let counts = match outcome {
            Outcome::Delivered => Counts {
                delivered: recipients,
                ..Counts::default()
            },
            Outcome::Deferred => Counts {
                deferred: recipients,
                ..Counts::default()
            },
            Outcome::Bounced => Counts {
                bounced: recipients,
                ..Counts::default()
            },
        };
        let mut minutes = self.minutes.lock();
        if minutes.back().is_none_or(|m| m.minute != minute) {
            minutes.push_back(Minute {
                minute,
                ..Minute::default()
            });
        }
        while minutes
            .front()
            .is_some_and(|m| m.minute + MINUTES <= minute)
        {
            minutes.pop_front();
        }
        let Some(slot) = minutes.back_mut() else {
            return;
        };
        match slot.pools.get_mut(pool) {
            Some(existing) => existing.add(counts),
            None => {
                slot.pools.insert(pool.to_string(), counts);
            }
        }
        if let Some(ip) = ip {
            slot.ips.entry(ip).or_default().add(counts);
        }
    }

    /// The last hour, oldest minute first, every minute present (empty ones too).
    pub fn last_hour(&self) -> Vec<Minute> {
        self.last_hour_at(current_minute())
    }

    fn last_hour_at(&self, now: u64) -> Vec<Minute> {
        let minutes = self.minutes.lock();
        (now + 1 - MINUTES..=now)
            .map(|minute| {
                minutes
                    .iter()
                    .find(|m| m.minute == minute)
                    .cloned()
                    .unwrap_or(Minute {
                        minute,
                        ..Minute::default()
                    })
            })
            .collect()
    }

    /// Each source IP's totals over the last hour.
    pub fn hour_by_ip(&self) -> BTreeMap<IpAddr, Counts> {
        let mut totals: BTreeMap<IpAddr, Counts> = BTreeMap::new();
        for minute in self.last_hour() {
            for (ip, counts) in minute.ips {
                totals.entry(ip).or_default().add(counts);
            }
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_fill_the_hour_and_old_ones_drop_out() {
        let history = History::default();
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        history.record_at(1000, "a", Some(ip), Outcome::Delivered, 2);
        history.record_at(1000, "a", Some(ip), Outcome::Bounced, 1);
        history.record_at(1030, "b", None, Outcome::Deferred, 4);
        let hour = history.last_hour_at(1030);
        assert_eq!(hour.len(), 60);
        assert_eq!((hour[0].minute, hour[59].minute), (971, 1030));
        let at_1000 = &hour[29];
        assert_eq!(
            at_1000.pools["a"],
            Counts {
                delivered: 2,
                deferred: 0,
                bounced: 1
            }
        );
        assert_eq!(at_1000.ips[&ip].delivered, 2);
        assert_eq!(hour[59].pools["b"].deferred, 4);
        // An hour later minute 1000 is gone.
        history.record_at(1060, "a", None, Outcome::Delivered, 1);
        let later = history.last_hour_at(1060);
        assert!(later.iter().all(|m| m.minute > 1000));
        assert!(later.iter().all(|m| m.ips.is_empty()));
    }
}
