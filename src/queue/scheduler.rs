//! The scheduler task: owns every queued message and decides when each is attempted.
//!
//! A message is in exactly one place: `ready` (to start as soon as a delivery slot is free),
//! `in_flight` (an attempt is running), `waiting` (until its retry time; a heap of due times
//! finds the next one without scanning) or `held` (by an operator).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::attempt::{self, Finished};
use super::backoff::{jittered, retry_delay};
use super::context::AttemptContext;
use super::operations::{Command, EntryRecipient, EntryState, QueueEntry, QueueError};
use super::slot::{DeliverySlot, WAITING_PER_RUNNING};
use crate::outbound::BackInRotation;
use crate::spool::{Envelope, unix_now};

/// How long shutdown waits for deliveries in progress before abandoning them (their messages
/// stay in the spool and are attempted again after the next start).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How often mail of a paused configuration set (or a paused account) looks again whether it
/// may go. Waiting costs no attempt and counts no retry.
const PAUSED_RECHECK: Duration = Duration::from_secs(2);

/// A message whose attempt is running.
struct InFlight {
    /// The envelope as it was when the attempt started (for listing).
    envelope: Envelope,
    task: tokio::task::Id,
    /// Stops the attempt if it is waiting for a shaping limit (delete, hold, shutdown).
    stop: CancellationToken,
}

pub struct Scheduler {
    receiver: mpsc::UnboundedReceiver<Envelope>,
    commands: mpsc::UnboundedReceiver<Command>,
    context: Arc<AttemptContext>,
    shutdown: CancellationToken,
    ready: VecDeque<Envelope>,
    waiting: HashMap<String, (Instant, Envelope)>,
    /// Due times of `waiting` entries; an entry whose time no longer matches is stale.
    timers: BinaryHeap<Reverse<(Instant, String)>>,
    held: HashMap<String, Envelope>,
    in_flight: HashMap<String, InFlight>,
    /// Operator commands for messages whose attempt is running, applied when it ends.
    after_attempt: HashMap<String, Vec<Command>>,
}

impl Scheduler {
    pub(super) fn new(
        receiver: mpsc::UnboundedReceiver<Envelope>,
        commands: mpsc::UnboundedReceiver<Command>,
        context: Arc<AttemptContext>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            receiver,
            commands,
            context,
            shutdown,
            ready: VecDeque::new(),
            waiting: HashMap::new(),
            timers: BinaryHeap::new(),
            held: HashMap::new(),
            in_flight: HashMap::new(),
            after_attempt: HashMap::new(),
        }
    }

    fn wait(&mut self, envelope: Envelope, due: Instant) {
        self.timers.push(Reverse((due, envelope.id.clone())));
        self.waiting.insert(envelope.id.clone(), (due, envelope));
    }

    /// Runs until shutdown. `recovered` are the messages found in the spool at start-up.
    pub async fn run(mut self, recovered: Vec<Envelope>) {
        for envelope in recovered {
            if envelope.held {
                self.held.insert(envelope.id.clone(), envelope);
            } else {
                self.ready.push_back(envelope);
            }
        }
        let settings = self.context.settings.clone();
        let mut tasks: JoinSet<Finished> = JoinSet::new();
        // A delivery holds a slot while it works; one waiting for a shaping limit gives it back,
        // so deliveries for other sites and pools keep going.
        let slots = Arc::new(Semaphore::new(settings.max_concurrent_deliveries));
        let waiting_places = Arc::new(Semaphore::new(
            settings.max_concurrent_deliveries * WAITING_PER_RUNNING,
        ));
        loop {
            while !self.ready.is_empty() {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    break;
                };
                self.start(&mut tasks, permit, &waiting_places);
            }
            let next_due = self.timers.peek().map(|Reverse((due, _))| *due);
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                Ok(permit) = slots.clone().acquire_owned(), if !self.ready.is_empty() => {
                    self.start(&mut tasks, permit, &waiting_places);
                }
                Some(envelope) = self.receiver.recv() => self.ready.push_back(envelope),
                back = self.context.outbound.pools_back_in_rotation() => self.retry_pools(back),
                Some(command) = self.commands.recv() => self.command(command).await,
                Some(finished) = tasks.join_next(), if !tasks.is_empty() => match finished {
                    Ok(outcome) => {
                        self.ready.extend(outcome.created);
                        self.in_flight.remove(&outcome.id);
                        if let Some(envelope) = outcome.retry {
                            let until_expiry = Duration::from_secs(envelope.expires_at.saturating_sub(unix_now()));
                            let factor = rand::random_range(0.8..1.2);
                            let delay = jittered(retry_delay(&settings, envelope.attempts), factor, until_expiry);
                            self.wait(envelope, Instant::now() + delay);
                        }
                        self.apply_after_attempt(&outcome.id).await;
                    }
                    Err(error) => {
                        tracing::error!(%error, "delivery task failed; its message stays in the spool until restart");
                        let task = error.id();
                        if let Some(id) = self.in_flight.iter().find(|(_, running)| running.task == task).map(|(id, _)| id.clone()) {
                            self.in_flight.remove(&id);
                            self.apply_after_attempt(&id).await;
                        }
                    }
                },
                _ = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                    let now = Instant::now();
                    while let Some(Reverse((due, _))) = self.timers.peek() {
                        if *due > now {
                            break;
                        }
                        let Some(Reverse((due, id))) = self.timers.pop() else { break };
                        if self.waiting.get(&id).is_some_and(|(when, _)| *when == due)
                            && let Some((_, envelope)) = self.waiting.remove(&id)
                        {
                            self.ready.push_back(envelope);
                        }
                    }
                }
            }
        }
        // Let attempts in progress finish briefly; whatever is cut off stays in the spool.
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
        self.context.outbound.close_idle(true).await;
        let outbound = self.context.outbound.clone();
        let saved = tokio::task::spawn_blocking(move || outbound.save_state()).await;
        if let Err(error) = saved {
            tracing::error!(%error, "cannot save the warm-up counts and site suspensions");
        }
    }

    /// Starts an attempt for the first ready message.
    fn start(
        &mut self,
        tasks: &mut JoinSet<Finished>,
        slot: OwnedSemaphorePermit,
        waiting_places: &Arc<Semaphore>,
    ) {
        if let Some(envelope) = self.ready.pop_front() {
            let registry = self.context.registry.load();
            if let Some(paused) = registry.sending_paused(envelope.configuration_set.as_deref()) {
                tracing::debug!(id = %envelope.id, ?paused, "sending paused; the message waits");
                self.wait(envelope, Instant::now() + PAUSED_RECHECK);
                return;
            }
            let stop = self.shutdown.child_token();
            let snapshot = envelope.clone();
            let task = tasks.spawn(attempt::attempt(
                self.context.clone(),
                envelope,
                DeliverySlot::new(slot, waiting_places.clone(), stop.clone()),
            ));
            self.in_flight.insert(
                snapshot.id.clone(),
                InFlight {
                    envelope: snapshot,
                    task: task.id(),
                    stop,
                },
            );
        }
    }

    /// Source addresses came back into rotation: mail waiting for their pools goes now rather
    /// than at its next retry time.
    fn retry_pools(&mut self, back: BackInRotation) {
        let due: Vec<String> = self
            .waiting
            .iter()
            .filter(|(_, (_, envelope))| back.pools.contains(&envelope.pool))
            .map(|(id, _)| id.clone())
            .collect();
        if !due.is_empty() {
            tracing::info!(addresses = ?back.addresses, messages = due.len(), "source IPs back in rotation; retrying their pools' mail now");
        }
        for id in due {
            if let Some((_, envelope)) = self.waiting.remove(&id) {
                self.ready.push_back(envelope);
            }
        }
    }

    /// Applies the operator commands that waited for `id`'s attempt to end.
    async fn apply_after_attempt(&mut self, id: &str) {
        for command in self.after_attempt.remove(id).unwrap_or_default() {
            self.command(command).await;
        }
    }

    async fn command(&mut self, command: Command) {
        // Delete or hold of a message being attempted: an attempt waiting for a shaping limit
        // stops at once; the command is applied when the attempt has ended (a transaction in
        // progress is never cut).
        if let Command::Delete(id, _) | Command::Hold(id, _) = &command
            && let Some(running) = self.in_flight.get(id)
        {
            running.stop.cancel();
            self.after_attempt
                .entry(id.clone())
                .or_default()
                .push(command);
            return;
        }
        match command {
            Command::List(answer) => {
                let _ = answer.send(Ok(self.list()));
            }
            Command::RetryNow(id, answer) => {
                let result = if let Some((_, envelope)) = self.waiting.remove(&id) {
                    tracing::info!(id, "retry requested by an operator");
                    self.ready.push_back(envelope);
                    Ok(())
                } else if self.held.contains_key(&id) {
                    Err(QueueError::Held(id))
                } else if self.in_flight.contains_key(&id) || self.ready.iter().any(|e| e.id == id)
                {
                    Ok(())
                } else {
                    Err(QueueError::NotFound(id))
                };
                let _ = answer.send(result);
            }
            Command::Delete(id, answer) => {
                let result = match self.take_queued(&id) {
                    Ok(envelope) => {
                        self.context.spool.remove(&envelope);
                        tracing::warn!(id, "message deleted from the queue by an operator");
                        Ok(())
                    }
                    Err(error) => Err(error),
                };
                let _ = answer.send(result);
            }
            Command::Hold(id, answer) => {
                let result = match self.take_queued(&id) {
                    Ok(mut envelope) => {
                        envelope.held = true;
                        let persisted = self.persist(&envelope).await;
                        tracing::warn!(id, "message put on hold by an operator");
                        self.held.insert(id, envelope);
                        persisted
                    }
                    Err(error) => Err(error),
                };
                let _ = answer.send(result);
            }
            Command::Release(id, answer) => {
                let result = match self.held.remove(&id) {
                    Some(mut envelope) => {
                        envelope.held = false;
                        let persisted = self.persist(&envelope).await;
                        tracing::warn!(id, "message released by an operator");
                        self.ready.push_back(envelope);
                        persisted
                    }
                    None => Err(QueueError::NotFound(id)),
                };
                let _ = answer.send(result);
            }
        }
    }

    /// Removes a message that is not being attempted from wherever it is queued (commands for
    /// a message being attempted wait in `after_attempt`).
    fn take_queued(&mut self, id: &str) -> Result<Envelope, QueueError> {
        if let Some((_, envelope)) = self.waiting.remove(id) {
            return Ok(envelope);
        }
        if let Some(envelope) = self.held.remove(id) {
            return Ok(envelope);
        }
        if let Some(at) = self.ready.iter().position(|e| e.id == id)
            && let Some(envelope) = self.ready.remove(at)
        {
            return Ok(envelope);
        }
        Err(QueueError::NotFound(id.to_string()))
    }

    async fn persist(&self, envelope: &Envelope) -> Result<(), QueueError> {
        self.context
            .spool
            .update(envelope)
            .await
            .map_err(|error| QueueError::Spool(error.to_string()))
    }

    fn list(&self) -> Vec<QueueEntry> {
        let now = Instant::now();
        let unix = unix_now();
        let entry = |envelope: &Envelope, state: EntryState, due: Option<Instant>| QueueEntry {
            id: envelope.id.clone(),
            state,
            age_seconds: unix.saturating_sub(envelope.received_at),
            sender: envelope.sender.clone(),
            recipients: envelope
                .recipients
                .iter()
                .map(|r| EntryRecipient {
                    address: r.address.clone(),
                    state: r.state,
                    last_reply: r.last_reply.clone(),
                })
                .collect(),
            configuration_set: envelope.configuration_set.clone(),
            pool: envelope.pool.clone(),
            last_source_ip: envelope.last_source_ip,
            attempts: envelope.attempts,
            next_attempt_in_seconds: due.map(|due| due.saturating_duration_since(now).as_secs()),
            last_error: envelope
                .recipients
                .iter()
                .filter(|r| r.state != crate::spool::RecipientState::Delivered)
                .find_map(|r| r.last_reply.clone()),
        };
        let mut entries: Vec<QueueEntry> = self
            .ready
            .iter()
            .map(|e| entry(e, EntryState::Ready, None))
            .chain(
                self.in_flight
                    .values()
                    .map(|running| entry(&running.envelope, EntryState::InFlight, None)),
            )
            .chain(
                self.waiting
                    .values()
                    .map(|(due, e)| entry(e, EntryState::Waiting, Some(*due))),
            )
            .chain(self.held.values().map(|e| entry(e, EntryState::Held, None)))
            .collect();
        entries.sort_by(|a, b| b.age_seconds.cmp(&a.age_seconds).then(a.id.cmp(&b.id)));
        entries
    }
}
