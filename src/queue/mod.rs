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

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub mod attempt;
mod backoff;
pub mod bounce;
pub mod context;
pub mod dsn;
mod handover;
pub mod operations;
mod scheduler;
mod slot;
mod suppression;

pub use backoff::{jittered, retry_delay};
pub use operations::{QueueEntry, QueueError, QueueHandle};
pub use scheduler::Scheduler;

use context::AttemptContext;

/// The queue: a handle for inbound and operators, and the scheduler task to run.
pub fn new(context: AttemptContext, shutdown: CancellationToken) -> (QueueHandle, Scheduler) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let (commands, command_receiver) = mpsc::unbounded_channel();
    (
        QueueHandle::new(sender, commands),
        Scheduler::new(receiver, command_receiver, Arc::new(context), shutdown),
    )
}
