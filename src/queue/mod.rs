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

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub mod attempt;
pub mod dsn;
pub mod events;

use crate::config::QueueSettings;
use crate::spool::{Envelope, unix_now};
use attempt::{AttemptContext, Outcome};

/// How long shutdown waits for deliveries in progress before abandoning them (their messages
/// stay in the spool and are attempted again after the next start).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Hands newly accepted messages to the scheduler.
#[derive(Clone)]
pub struct QueueHandle {
    sender: mpsc::UnboundedSender<Envelope>,
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

struct Waiting {
    due: Instant,
    sequence: u64,
    envelope: Envelope,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.sequence) == (other.due, other.sequence)
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.sequence).cmp(&(other.due, other.sequence))
    }
}

pub struct Scheduler {
    receiver: mpsc::UnboundedReceiver<Envelope>,
    context: Arc<AttemptContext>,
    shutdown: CancellationToken,
}

pub fn new(context: AttemptContext, shutdown: CancellationToken) -> (QueueHandle, Scheduler) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (
        QueueHandle { sender },
        Scheduler {
            receiver,
            context: Arc::new(context),
            shutdown,
        },
    )
}

impl Scheduler {
    /// Runs until shutdown. `recovered` are the messages found in the spool at start-up.
    pub async fn run(mut self, recovered: Vec<Envelope>) {
        let settings = self.context.settings.clone();
        let mut ready: VecDeque<Envelope> = recovered.into();
        let mut waiting: BinaryHeap<Reverse<Waiting>> = BinaryHeap::new();
        let mut sequence = 0u64;
        let mut in_flight: JoinSet<Outcome> = JoinSet::new();
        loop {
            while in_flight.len() < settings.max_concurrent_deliveries {
                let Some(envelope) = ready.pop_front() else {
                    break;
                };
                in_flight.spawn(attempt::attempt(self.context.clone(), envelope));
            }
            let next_due = waiting.peek().map(|Reverse(w)| w.due);
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                Some(envelope) = self.receiver.recv() => ready.push_back(envelope),
                Some(finished) = in_flight.join_next(), if !in_flight.is_empty() => match finished {
                    Ok(outcome) => {
                        ready.extend(outcome.created);
                        if let Some(envelope) = outcome.retry {
                            let until_expiry = Duration::from_secs(envelope.expires_at.saturating_sub(unix_now()));
                            let factor = rand::random_range(0.8..1.2);
                            let delay = jittered(retry_delay(&settings, envelope.attempts), factor, until_expiry);
                            sequence += 1;
                            waiting.push(Reverse(Waiting { due: Instant::now() + delay, sequence, envelope }));
                        }
                    }
                    Err(error) => tracing::error!(%error, "delivery task failed; its message stays in the spool until restart"),
                },
                _ = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                    let now = Instant::now();
                    while waiting.peek().is_some_and(|Reverse(w)| w.due <= now) {
                        if let Some(Reverse(due)) = waiting.pop() {
                            ready.push_back(due.envelope);
                        }
                    }
                }
            }
        }
        // Let attempts in progress finish briefly; whatever is cut off stays in the spool.
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        in_flight.abort_all();
        self.context.outbound.close_idle(true).await;
    }
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
