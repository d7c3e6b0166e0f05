//! The queue scheduler: decides when each spooled message is attempted.
//!
//! New messages arrive through a [`QueueHandle`]; messages waiting for a retry sit in a heap
//! ordered by due time, so the scheduler sleeps until exactly the next one is due and never scans
//! the spool. Up to `max_concurrent_deliveries` attempts run at once, each in its own task, and
//! each task persists its own outcome (envelope update or removal), so slow disks do not stall
//! the scheduler.
//!
//! Retries back off exponentially from `retry_interval` (doubling, ±20% jitter so messages that
//! failed together do not retry together), capped at `max_retry_interval`, and never later than
//! the message's expiry (`max_age`, or the configuration set's `max_delivery_seconds`), when its
//! pending recipients fail with 4.4.7 and the sender gets one bounce.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub mod attempt;
mod bounce;
pub mod dsn;
pub mod operations;
mod scheduler;
mod slot;

pub use operations::{QueueEntry, QueueError};
pub use scheduler::Scheduler;

use crate::config::QueueSettings;
use crate::spool::Envelope;
use attempt::AttemptContext;

/// Hands newly accepted messages to the scheduler, and carries operator commands to it
/// (see `operations`).
#[derive(Clone)]
pub struct QueueHandle {
    sender: mpsc::UnboundedSender<Envelope>,
    commands: mpsc::UnboundedSender<operations::Command>,
}

impl QueueHandle {
    pub fn enqueue(&self, envelope: Envelope) {
        if let Err(error) = self.sender.send(envelope) {
            // Only during shutdown: the message is in the spool and is picked up at the next start.
            tracing::debug!(id = %error.0.id, "scheduler stopped; message stays in the spool");
        }
    }
}

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

pub fn new(context: AttemptContext, shutdown: CancellationToken) -> (QueueHandle, Scheduler) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let (commands, command_receiver) = mpsc::unbounded_channel();
    (
        QueueHandle { sender, commands },
        Scheduler::new(receiver, command_receiver, Arc::new(context), shutdown),
    )
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
