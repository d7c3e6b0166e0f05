//! Queue operations for operators: list, retry now, delete, hold and release.
//!
//! They are messages to the scheduler (which owns the queue), answered over a oneshot channel, so
//! they never race with deliveries. Deleting or holding a message whose attempt is running waits
//! for the attempt to end (at once if it is only waiting for a shaping limit; a transaction in
//! progress is never cut). Holds are stored in the envelope, so they survive restarts. Every
//! change is logged as an audit line.

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::spool::Envelope;
use crate::spool::RecipientState;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("message {0} is not in the queue")]
    NotFound(String),
    #[error("message {0} is on hold; release it first")]
    Held(String),
    #[error("the spool could not be updated: {0}")]
    Spool(String),
    #[error("the queue is shutting down")]
    Stopped,
}

/// Where a message is in the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    Ready,
    InFlight,
    Waiting,
    Held,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryRecipient {
    pub address: String,
    pub state: RecipientState,
    pub last_reply: Option<String>,
}

/// One queued message as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueEntry {
    pub id: String,
    pub state: EntryState,
    pub age_seconds: u64,
    pub sender: String,
    pub recipients: Vec<EntryRecipient>,
    pub configuration_set: Option<String>,
    pub pool: String,
    pub attempts: u32,
    /// Seconds until the next attempt, for waiting messages.
    pub next_attempt_in_seconds: Option<u64>,
    pub last_error: Option<String>,
    /// The source address of the last attempt.
    pub last_source_ip: Option<std::net::IpAddr>,
}

pub(super) type Answer<T> = oneshot::Sender<Result<T, QueueError>>;

pub(super) enum Command {
    List(Answer<Vec<QueueEntry>>),
    RetryNow(String, Answer<()>),
    Delete(String, Answer<()>),
    Hold(String, Answer<()>),
    Release(String, Answer<()>),
}

/// Hands newly accepted messages to the scheduler, and carries operator commands to it.
#[derive(Clone)]
pub struct QueueHandle {
    sender: mpsc::UnboundedSender<Envelope>,
    commands: mpsc::UnboundedSender<Command>,
}

impl QueueHandle {
    pub(super) fn new(
        sender: mpsc::UnboundedSender<Envelope>,
        commands: mpsc::UnboundedSender<Command>,
    ) -> Self {
        Self { sender, commands }
    }

    /// A handle to no scheduler (for tools that drive inbound sessions on their own): what it
    /// is given stays in the spool.
    pub fn detached() -> Self {
        let (sender, _) = mpsc::unbounded_channel();
        let (commands, _) = mpsc::unbounded_channel();
        Self { sender, commands }
    }

    pub fn enqueue(&self, envelope: Envelope) {
        if let Err(error) = self.sender.send(envelope) {
            // Only during shutdown: the message is in the spool and is picked up at the next start.
            tracing::debug!(id = %error.0.id, "scheduler stopped; message stays in the spool");
        }
    }
}

impl QueueHandle {
    async fn ask<T>(&self, make: impl FnOnce(Answer<T>) -> Command) -> Result<T, QueueError> {
        let (answer, receiver) = oneshot::channel();
        self.commands
            .send(make(answer))
            .map_err(|_| QueueError::Stopped)?;
        receiver.await.map_err(|_| QueueError::Stopped)?
    }

    /// Every queued message, oldest first.
    pub async fn list(&self) -> Result<Vec<QueueEntry>, QueueError> {
        self.ask(Command::List).await
    }

    /// Attempts a waiting message now instead of at its next retry time.
    pub async fn retry_now(&self, id: &str) -> Result<(), QueueError> {
        self.ask(|answer| Command::RetryNow(id.to_string(), answer))
            .await
    }

    /// Removes a message from the queue and the spool, without delivering or bouncing it.
    pub async fn delete(&self, id: &str) -> Result<(), QueueError> {
        self.ask(|answer| Command::Delete(id.to_string(), answer))
            .await
    }

    /// Keeps a message from being attempted until it is released.
    pub async fn hold(&self, id: &str) -> Result<(), QueueError> {
        self.ask(|answer| Command::Hold(id.to_string(), answer))
            .await
    }

    /// Returns a held message to the queue, to be attempted now.
    pub async fn release(&self, id: &str) -> Result<(), QueueError> {
        self.ask(|answer| Command::Release(id.to_string(), answer))
            .await
    }
}
