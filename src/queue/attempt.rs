//! One delivery attempt of one message, and everything that follows from its outcome: the
//! recipients' new states, expiry, logs, metrics, events, bounces (DSN), and recording the new
//! state in the spool.

use std::sync::Arc;

use super::bounce::{self, outcome_of};
use super::context::AttemptContext;
use super::handover::{self, Sent};
use super::slot::DeliverySlot;
use super::suppression;
use crate::config::QueueSettings;
use crate::events::history::Outcome as Counted;
use crate::events::{DelayType, EventLog, RecipientOutcome};
use crate::metrics::{self, METRICS};
use crate::outbound::report::{AttemptReport, Outcome};
use crate::spool::{Envelope, RecipientState, Spool, unix_now};

/// After an attempt: the message to retry (if any recipient is pending) and new messages to
/// queue (a bounce).
pub struct Finished {
    pub id: String,
    pub retry: Option<Envelope>,
    pub created: Vec<Envelope>,
}

/// The expiry time of a message without one recorded (spooled before expiry existed).
pub fn expiry_for(envelope: &Envelope, settings: &QueueSettings) -> u64 {
    if envelope.expires_at != 0 {
        envelope.expires_at
    } else {
        envelope.received_at + settings.max_age.as_secs()
    }
}

/// Fails every pending recipient of an expired message; returns their indexes.
fn expire(envelope: &mut Envelope, now: u64) -> Vec<usize> {
    if envelope.is_finished() || now < envelope.expires_at {
        return Vec::new();
    }
    let minutes = envelope.expires_at.saturating_sub(envelope.received_at) / 60;
    let mut expired = Vec::new();
    for (index, recipient) in envelope.recipients.iter_mut().enumerate() {
        if recipient.state != RecipientState::Pending {
            continue;
        }
        let last = recipient
            .last_reply
            .take()
            .unwrap_or_else(|| "no attempt succeeded".into());
        recipient.last_reply = Some(format!(
            "550 4.4.7 Message expired: unable to deliver in {minutes} minutes (last error: {last})"
        ));
        recipient.state = RecipientState::Failed;
        expired.push(index);
    }
    tracing::warn!(id = %envelope.id, pool = %envelope.pool, minutes, "message expired");
    expired
}

/// A source IP in a log line: the address, or `-` for none (or the host's default address).
struct SourceIp(Option<std::net::IpAddr>);

impl std::fmt::Display for SourceIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(address) => address.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// Writes the attempt's outcomes into the envelope and logs each one with everything an
/// operator needs. Returns which recipients the attempt changed. The attempt counts only if it
/// attempted something.
fn apply(envelope: &mut Envelope, report: &AttemptReport) -> Vec<bool> {
    let mut changed = vec![false; envelope.recipients.len()];
    if report.attempted_any() {
        envelope.attempts += 1;
    }
    if let Some(address) = report.last_source_ip {
        envelope.last_source_ip = Some(address);
    }
    let configuration_set = envelope.configuration_set.as_deref().unwrap_or("-");
    for (index, outcome) in report.outcomes() {
        changed[index] = true;
        let recipient = &mut envelope.recipients[index];
        let reply = outcome.result.reply();
        recipient.source_ip = outcome.source_ip;
        recipient.tls_version = outcome.tls_version.clone();
        if let Some(remote) = outcome.remote_mta {
            recipient.remote_mta = Some(remote.to_string());
        }
        // Formatted only if the line is logged.
        let source_ip = SourceIp(outcome.source_ip);
        let (id, pool, next_hop) = (&envelope.id, &envelope.pool, &outcome.next_hop);
        let address = &recipient.address;
        match &outcome.result {
            Outcome::Delivered(_) => {
                recipient.state = RecipientState::Delivered;
                tracing::info!(%id, configuration_set, %pool, %source_ip, next_hop, recipient = %address, reply, "delivered");
            }
            Outcome::Failed(_) => {
                recipient.state = RecipientState::Failed;
                tracing::warn!(%id, configuration_set, %pool, %source_ip, next_hop, recipient = %address, reply, "failed permanently");
            }
            Outcome::Deferred(_) => {
                tracing::warn!(%id, configuration_set, %pool, %source_ip, next_hop, recipient = %address, reply, attempt = envelope.attempts, "deferred");
            }
        }
        recipient.last_reply = Some(reply);
    }
    changed
}

/// Metrics and events for the recipients this attempt changed, by their new state.
fn publish(events: &EventLog, envelope: &Envelope, changed: &[bool], report: &AttemptReport) {
    let now = unix_now();
    let changed_in = |state: RecipientState| {
        envelope
            .recipients
            .iter()
            .zip(changed)
            .filter(move |(r, changed)| **changed && r.state == state)
            .map(|(r, _)| r)
    };
    let history = events.history();
    for recipient in changed_in(RecipientState::Delivered) {
        history.record(&envelope.pool, recipient.source_ip, Counted::Delivered, 1);
        let labels = metrics::outcome(&envelope.pool, recipient.source_ip);
        METRICS.delivered.get_or_create(&labels).inc();
        METRICS
            .delivery_seconds
            .observe(now.saturating_sub(envelope.received_at) as f64);
    }
    for recipient in changed_in(RecipientState::Pending) {
        history.record(&envelope.pool, recipient.source_ip, Counted::Deferred, 1);
        let labels = metrics::outcome(&envelope.pool, recipient.source_ip);
        METRICS.deferred.get_or_create(&labels).inc();
    }
    for recipient in changed_in(RecipientState::Failed) {
        history.record(&envelope.pool, recipient.source_ip, Counted::Bounced, 1);
        let labels = metrics::outcome(&envelope.pool, recipient.source_ip);
        METRICS.bounced.get_or_create(&labels).inc();
    }
    if !events.enabled() {
        return;
    }
    let mut delivered: Vec<RecipientOutcome> = changed_in(RecipientState::Delivered)
        .map(|r| outcome_of(r, "2.0.0"))
        .collect();
    while !delivered.is_empty() {
        // One Delivery event per distinct reply (one per transaction).
        let first = delivered[0].diagnostic.clone();
        let (same, rest): (Vec<_>, Vec<_>) =
            delivered.into_iter().partition(|r| r.diagnostic == first);
        events.delivery(envelope, &same);
        delivered = rest;
    }
    let bounced: Vec<RecipientOutcome> = changed_in(RecipientState::Failed)
        .map(|r| outcome_of(r, "5.0.0"))
        .collect();
    events.bounce(envelope, &bounced);
    let delayed: Vec<RecipientOutcome> = changed_in(RecipientState::Pending)
        .map(|r| outcome_of(r, "4.0.0"))
        .collect();
    events.delivery_delay(envelope, delay_type(report), &delayed);
}

/// SES `delayType` of the attempt's deferrals: that of the first deferred recipient.
fn delay_type(report: &AttemptReport) -> DelayType {
    let first = report
        .outcomes()
        .find_map(|(_, outcome)| match &outcome.result {
            Outcome::Deferred(deferral) => Some(deferral),
            _ => None,
        });
    match first {
        Some(deferral) if deferral.is_ip_failure() => DelayType::IpFailure,
        _ => DelayType::TransientCommunicationFailure,
    }
}

/// One attempt. `slot` is the scheduler's delivery slot, held until the attempt ends or waits
/// for a shaping limit.
pub async fn attempt(
    ctx: Arc<AttemptContext>,
    mut envelope: Envelope,
    mut slot: DeliverySlot,
) -> Finished {
    envelope.expires_at = expiry_for(&envelope, &ctx.settings);
    suppression::stop_suppressed(&ctx, &mut envelope);
    let report = match handover::send(&ctx, &envelope, &mut slot).await {
        Sent::Here(report) => report,
        Sent::HandedOver { node } => {
            tracing::info!(id = %envelope.id, pool = %envelope.pool, node, "handed over to the node with the pool's IPs");
            ctx.spool.remove(&envelope);
            return Finished {
                id: envelope.id.clone(),
                retry: None,
                created: Vec::new(),
            };
        }
    };
    let mut changed = apply(&mut envelope, &report);
    for index in expire(&mut envelope, unix_now()) {
        changed[index] = true;
    }
    publish(&ctx.events, &envelope, &changed, &report);
    suppression::record_hard_bounces(&ctx, &envelope, &report).await;
    suppression::record_sent(&ctx, &envelope, &report);
    let (created, report_done) = match bounce::report_final(&ctx, &mut envelope).await {
        Ok(created) => (created.into_iter().collect(), true),
        Err(error) => {
            tracing::error!(id = %envelope.id, %error, "cannot spool the bounce; the message is kept and it is tried again");
            (Vec::new(), false)
        }
    };
    let finished = envelope.is_finished() && report_done;
    persist(&ctx.spool, &mut envelope, finished).await;
    // Only the first attempt reads from memory: a message that waits holds no memory.
    envelope.in_memory = None;
    Finished {
        id: envelope.id.clone(),
        retry: (!finished).then_some(envelope),
        created,
    }
}

/// Records the message's new state, or removes it when it is finished.
async fn persist(spool: &Spool, envelope: &mut Envelope, finished: bool) {
    if finished {
        spool.remove(envelope);
    } else if let Err(error) = spool.defer(envelope).await {
        tracing::error!(id = %envelope.id, %error, "cannot update the spool (recipients may be attempted again)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_fails_pending_recipients_with_4_4_7() {
        let mut envelope: Envelope = serde_json::from_value(serde_json::json!({
            "id": "x", "received_at": 1000, "sender": "a@example.test",
            "recipients": [
                {"address": "done@example.test", "state": "delivered"},
                {"address": "slow@example.test", "state": "pending", "last_reply": "451 4.4.1 connection refused"}
            ],
            "configuration_set": null, "pool": "p", "client_ip": "127.0.0.1", "client_helo": "h",
            "size": 1, "expires_at": 1600
        }))
        .unwrap();
        assert!(expire(&mut envelope, 1599).is_empty());
        assert_eq!(expire(&mut envelope, 1600), vec![1]);
        assert_eq!(envelope.recipients[0].state, RecipientState::Delivered);
        assert_eq!(envelope.recipients[1].state, RecipientState::Failed);
        let reply = envelope.recipients[1].last_reply.clone().unwrap();
        assert!(
            reply.starts_with("550 4.4.7 Message expired: unable to deliver in 10 minutes"),
            "{reply}"
        );
        assert!(reply.contains("connection refused"));
        assert_eq!(crate::queue::dsn::status_of(&reply), "4.4.7");
    }
}
