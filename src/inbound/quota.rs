//! The account's sending quota as SES enforces it: at most `max_send_rate` recipients per
//! second (a token bucket holding one second's worth) and `max_24_hour_send` per rolling 24
//! hours (per-minute counts). Both count recipients of accepted mail, from SMTP and the API
//! alike. The counts live in memory: a restart starts the 24-hour window afresh. In a fleet they
//! live in Redis and count every node's mail; while Redis is unavailable each node admits its
//! share (the limits ÷ the live nodes) from its own counts.

use std::collections::VecDeque;
use std::time::Instant;

use parking_lot::Mutex;

use crate::settings::account::AccountSettings;

const DAY_MINUTES: u64 = 24 * 60;

/// Why the quota refuses a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaExceeded {
    Rate,
    Daily,
}

#[derive(Debug)]
struct Counts {
    /// Recipients that may still go this second (may dip below zero after a large message).
    tokens: f64,
    refilled: Instant,
    /// (minute since the epoch, recipients accepted in it), oldest first.
    minutes: VecDeque<(u64, u64)>,
}

#[derive(Debug)]
pub struct SendQuota {
    counts: Mutex<Counts>,
    fleet: std::sync::OnceLock<std::sync::Arc<crate::fleet::Fleet>>,
    /// In a fleet without limits: recipients counted here and not yet added to the fleet's
    /// count (added every second, see [`SendQuota::flush_to_fleet`]).
    unflushed: std::sync::atomic::AtomicU64,
}

impl Default for SendQuota {
    fn default() -> Self {
        Self {
            counts: Mutex::new(Counts {
                tokens: f64::MAX,
                refilled: Instant::now(),
                minutes: VecDeque::new(),
            }),
            fleet: std::sync::OnceLock::new(),
            unflushed: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

fn current_minute() -> u64 {
    crate::spool::unix_now() / 60
}

impl Counts {
    fn forget_old(&mut self, minute: u64) {
        while self
            .minutes
            .front()
            .is_some_and(|(m, _)| *m + DAY_MINUTES <= minute)
        {
            self.minutes.pop_front();
        }
    }

    fn last_day(&self) -> u64 {
        self.minutes.iter().map(|(_, n)| n).sum()
    }
}

impl SendQuota {
    /// Counts `recipients` against the quota, or says which limit they would break. A message
    /// is admitted while any of this second's rate is left, so a message with more recipients
    /// than the rate still goes (it uses up the following seconds).
    pub fn admit(&self, limits: &AccountSettings, recipients: u64) -> Result<(), QuotaExceeded> {
        let mut counts = self.counts.lock();
        let minute = current_minute();
        counts.forget_old(minute);
        if limits.max_24_hour_send > 0 && counts.last_day() + recipients > limits.max_24_hour_send {
            return Err(QuotaExceeded::Daily);
        }
        if limits.max_send_rate > 0 {
            let rate = limits.max_send_rate as f64;
            let now = Instant::now();
            let elapsed = now.duration_since(counts.refilled).as_secs_f64();
            counts.tokens = (counts.tokens.min(rate) + elapsed * rate).min(rate);
            counts.refilled = now;
            if counts.tokens < 1.0 {
                return Err(QuotaExceeded::Rate);
            }
            counts.tokens -= recipients as f64;
        }
        match counts.minutes.back_mut() {
            Some((m, n)) if *m == minute => *n += recipients,
            _ => counts.minutes.push_back((minute, recipients)),
        }
        Ok(())
    }

    /// Counts the quota fleet-wide from now on.
    pub fn join_fleet(&self, fleet: std::sync::Arc<crate::fleet::Fleet>) {
        let _ = self.fleet.set(fleet);
    }

    /// [`SendQuota::admit`] for the whole fleet when this relay is a node (one Redis round
    /// trip); this node's share of the limits while Redis is unavailable.
    pub async fn admit_anywhere(
        &self,
        limits: &AccountSettings,
        recipients: u64,
    ) -> Result<(), QuotaExceeded> {
        use crate::fleet::limits::{QuotaAnswer, admit_quota};
        let Some(fleet) = self.fleet.get() else {
            return self.admit(limits, recipients);
        };
        if limits.max_send_rate == 0 && limits.max_24_hour_send == 0 {
            // Nothing to refuse: no round trip per message, the count follows within a second.
            self.unflushed
                .fetch_add(recipients, std::sync::atomic::Ordering::Relaxed);
            return self.admit(limits, recipients);
        }
        if fleet.redis_up() {
            let asked = admit_quota(
                fleet.store(),
                limits.max_send_rate,
                limits.max_24_hour_send,
                recipients,
            );
            match asked.await {
                Ok(QuotaAnswer::Counted) => return Ok(()),
                Ok(QuotaAnswer::OverRate) => return Err(QuotaExceeded::Rate),
                Ok(QuotaAnswer::OverDaily) => return Err(QuotaExceeded::Daily),
                Err(error) => tracing::debug!(%error, "quota from Redis failed: this node's share"),
            }
        }
        let live = u64::from(fleet.live_nodes());
        let share = |limit: u64| if limit == 0 { 0 } else { (limit / live).max(1) };
        let shared = AccountSettings {
            max_send_rate: share(limits.max_send_rate),
            max_24_hour_send: share(limits.max_24_hour_send),
            ..*limits
        };
        self.admit(&shared, recipients)
    }

    /// Adds what was counted here since the last call to the fleet's count (kept for the next
    /// call while Redis is unavailable).
    pub async fn flush_to_fleet(&self) {
        use std::sync::atomic::Ordering;
        let Some(fleet) = self.fleet.get() else {
            return;
        };
        let recipients = self.unflushed.swap(0, Ordering::Relaxed);
        if recipients == 0 {
            return;
        }
        let counted = crate::fleet::limits::admit_quota(fleet.store(), 0, 0, recipients).await;
        if counted.is_err() {
            self.unflushed.fetch_add(recipients, Ordering::Relaxed);
        }
    }

    /// SES's `SentLast24Hours`: the fleet's, when Redis answers.
    pub async fn sent_last_24_hours_anywhere(&self) -> u64 {
        if let Some(fleet) = self.fleet.get()
            && let Ok(total) = crate::fleet::limits::sent_last_24_hours(fleet.store()).await
        {
            return total;
        }
        self.sent_last_24_hours()
    }

    /// SES's `SentLast24Hours` as this relay counted it.
    pub fn sent_last_24_hours(&self) -> u64 {
        let mut counts = self.counts.lock();
        counts.forget_old(current_minute());
        counts.last_day()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: u64, day: u64) -> AccountSettings {
        AccountSettings {
            sending_enabled: true,
            max_send_rate: rate,
            max_24_hour_send: day,
        }
    }

    #[test]
    fn unlimited_counts_but_never_refuses() {
        let quota = SendQuota::default();
        for _ in 0..1000 {
            assert_eq!(quota.admit(&limits(0, 0), 3), Ok(()));
        }
        assert_eq!(quota.sent_last_24_hours(), 3000);
    }

    #[test]
    fn the_rate_allows_one_seconds_worth_then_refuses() {
        let quota = SendQuota::default();
        let admitted = (0..20)
            .filter(|_| quota.admit(&limits(5, 0), 1).is_ok())
            .count();
        // Five, plus whatever refilled while the loop ran (microseconds: none).
        assert_eq!(admitted, 5);
        assert_eq!(quota.admit(&limits(5, 0), 1), Err(QuotaExceeded::Rate));
    }

    #[test]
    fn the_daily_quota_counts_recipients() {
        let quota = SendQuota::default();
        assert_eq!(quota.admit(&limits(0, 10), 6), Ok(()));
        assert_eq!(quota.admit(&limits(0, 10), 5), Err(QuotaExceeded::Daily));
        assert_eq!(quota.admit(&limits(0, 10), 4), Ok(()));
        assert_eq!(quota.admit(&limits(0, 10), 1), Err(QuotaExceeded::Daily));
        assert_eq!(quota.sent_last_24_hours(), 10);
    }
}
