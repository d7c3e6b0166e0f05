//! The queue scheduler: decides when each spooled message is attempted.
//!
//! New messages arrive through a [`QueueHandle`]; messages waiting for a retry sit in a heap
//! ordered by due time, so the scheduler sleeps until exactly the next one is due and never scans
//! the spool. Up to `max_concurrent_deliveries` attempts run at once, each in its own task, and
//! each task persists its own outcome (envelope update or removal), so slow disks do not stall
//! the scheduler.
//!
//! Retry policy here is simple exponential backoff from `retry_interval`, capped at
//! `max_retry_interval`. Expiry and bounces are not implemented yet: a message stays queued
//! until it is delivered or fails permanently.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::QueueSettings;
use crate::outbound::Outbound;
use crate::spool::{Envelope, RecipientState, Spool};

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

/// The delay before attempt number `attempts + 1`, given `attempts` failed ones.
pub fn retry_delay(settings: &QueueSettings, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(30);
    settings
        .retry_interval
        .saturating_mul(1u32 << doublings)
        .min(settings.max_retry_interval)
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
    outbound: Arc<Outbound>,
    spool: Spool,
    settings: QueueSettings,
    shutdown: CancellationToken,
}

pub fn new(
    outbound: Arc<Outbound>,
    spool: Spool,
    settings: QueueSettings,
    shutdown: CancellationToken,
) -> (QueueHandle, Scheduler) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (
        QueueHandle { sender },
        Scheduler {
            receiver,
            outbound,
            spool,
            settings,
            shutdown,
        },
    )
}

impl Scheduler {
    /// Runs until shutdown. `recovered` are the messages found in the spool at start-up.
    pub async fn run(mut self, recovered: Vec<Envelope>) {
        let mut ready: VecDeque<Envelope> = recovered.into();
        let mut waiting: BinaryHeap<Reverse<Waiting>> = BinaryHeap::new();
        let mut sequence = 0u64;
        let mut in_flight: JoinSet<Option<Envelope>> = JoinSet::new();
        loop {
            while in_flight.len() < self.settings.max_concurrent_deliveries {
                let Some(envelope) = ready.pop_front() else {
                    break;
                };
                let outbound = self.outbound.clone();
                let spool = self.spool.clone();
                in_flight.spawn(attempt(outbound, spool, envelope));
            }
            let next_due = waiting.peek().map(|Reverse(w)| w.due);
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                Some(envelope) = self.receiver.recv() => ready.push_back(envelope),
                Some(finished) = in_flight.join_next(), if !in_flight.is_empty() => match finished {
                    Ok(Some(envelope)) => {
                        let delay = retry_delay(&self.settings, envelope.attempts);
                        sequence += 1;
                        waiting.push(Reverse(Waiting { due: Instant::now() + delay, sequence, envelope }));
                    }
                    Ok(None) => {}
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
        self.outbound.close_idle(true).await;
    }
}

/// One attempt: deliver, then persist the outcome. Returns the envelope if it must be retried.
async fn attempt(
    outbound: Arc<Outbound>,
    spool: Spool,
    mut envelope: Envelope,
) -> Option<Envelope> {
    outbound.deliver(&mut envelope).await;
    let finished = envelope.is_finished();
    let snapshot = envelope.clone();
    let persisted = tokio::task::spawn_blocking(move || {
        if finished {
            spool.remove(&snapshot.id)
        } else {
            spool.update(&snapshot)
        }
    })
    .await;
    match persisted {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::error!(id = %envelope.id, %error, "cannot update the spool (recipients may be attempted again)")
        }
        Err(error) => tracing::error!(id = %envelope.id, %error, "spool update task failed"),
    }
    if finished {
        let failed = envelope
            .recipients
            .iter()
            .filter(|r| r.state == RecipientState::Failed)
            .count();
        tracing::debug!(id = %envelope.id, failed, "message done; removed from the spool");
        None
    } else {
        Some(envelope)
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
            max_concurrent_deliveries: 1,
            connection_idle_timeout: Duration::from_secs(1),
        };
        let delays: Vec<u64> = (1..=6)
            .map(|n| retry_delay(&settings, n).as_secs())
            .collect();
        assert_eq!(delays, [60, 120, 240, 480, 600, 600]);
    }
}
