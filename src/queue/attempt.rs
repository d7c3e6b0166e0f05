//! One delivery attempt of one message, and everything that follows from its outcome:
//! expiry, events, bounces (DSN), and recording the new state in the spool.

use std::sync::Arc;

use super::dsn::{self, DsnRequest, Reported};
use super::events::{EventLog, RecipientOutcome};
use crate::config::QueueSettings;
use crate::metrics::{self, METRICS};
use crate::outbound::Outbound;
use crate::spool::{Envelope, Recipient, RecipientState, Spool, new_message_id, unix_now};

/// The most of the original message a DSN carries with `RET=FULL`; larger ones get the headers.
const MAX_RETURNED_MESSAGE: u64 = 1024 * 1024;
/// The most of the original headers a DSN carries.
const MAX_RETURNED_HEADERS: usize = 64 * 1024;

/// What attempts share.
pub struct AttemptContext {
    pub outbound: Arc<Outbound>,
    pub spool: Spool,
    pub settings: QueueSettings,
    pub events: Arc<EventLog>,
    /// `smtp.hostname`: the Reporting-MTA of bounces.
    pub hostname: String,
}

/// After an attempt: the message to retry (if any recipient is pending) and new messages to queue
/// (a bounce).
pub struct Outcome {
    pub id: String,
    pub retry: Option<Envelope>,
    pub created: Vec<Envelope>,
}

fn outcome_of(recipient: &Recipient, default_status: &str) -> RecipientOutcome {
    let diagnostic = recipient.last_reply.clone().unwrap_or_default();
    let status = if diagnostic.is_empty() {
        default_status.to_string()
    } else {
        dsn::status_of(&diagnostic)
    };
    RecipientOutcome {
        address: recipient.address.clone(),
        diagnostic,
        status,
        remote_mta: recipient.remote_mta.clone(),
        outgoing_ip: recipient.source_ip,
        tls_version: recipient.tls_version.clone(),
    }
}

/// The expiry time of a message without one recorded (spooled before expiry existed).
pub fn expiry_for(envelope: &Envelope, settings: &QueueSettings) -> u64 {
    if envelope.expires_at != 0 {
        envelope.expires_at
    } else {
        envelope.received_at + settings.max_age.as_secs()
    }
}

/// Fails every pending recipient of an expired message.
fn expire(envelope: &mut Envelope, now: u64) -> bool {
    if envelope.is_finished() || now < envelope.expires_at {
        return false;
    }
    let minutes = envelope.expires_at.saturating_sub(envelope.received_at) / 60;
    for recipient in envelope
        .recipients
        .iter_mut()
        .filter(|r| r.state == RecipientState::Pending)
    {
        let last = recipient
            .last_reply
            .take()
            .unwrap_or_else(|| "no attempt succeeded".into());
        recipient.last_reply = Some(format!(
            "550 4.4.7 Message expired: unable to deliver in {minutes} minutes (last error: {last})"
        ));
        recipient.state = RecipientState::Failed;
    }
    tracing::warn!(id = %envelope.id, pool = %envelope.pool, minutes, "message expired");
    true
}

/// One attempt. `slot` is the scheduler's delivery slot, held until the attempt ends or waits for
/// a shaping limit.
pub async fn attempt(
    ctx: Arc<AttemptContext>,
    mut envelope: Envelope,
    mut slot: crate::outbound::shaping::DeliverySlot,
) -> Outcome {
    envelope.expires_at = expiry_for(&envelope, &ctx.settings);
    let was_pending: Vec<bool> = envelope
        .recipients
        .iter()
        .map(|r| r.state == RecipientState::Pending)
        .collect();
    let untouched = ctx.outbound.deliver(&mut envelope, &mut slot).await;
    expire(&mut envelope, unix_now());
    // Recipients not attempted (shutdown came while they waited for a shaping limit) and still
    // pending are not reported as delayed; if nothing was attempted, the attempt does not count.
    let mut was_pending = was_pending;
    for &index in &untouched {
        if envelope.recipients[index].state == RecipientState::Pending {
            was_pending[index] = false;
        }
    }
    if !untouched.is_empty() && !was_pending.iter().any(|was| *was) {
        envelope.attempts = envelope.attempts.saturating_sub(1);
    }

    // Metrics and events for what changed in this attempt.
    let now = unix_now();
    for (recipient, was) in envelope.recipients.iter().zip(&was_pending) {
        if !*was {
            continue;
        }
        let labels = metrics::outcome(&envelope.pool, recipient.source_ip);
        match recipient.state {
            RecipientState::Delivered => {
                METRICS.delivered.get_or_create(&labels).inc();
                METRICS
                    .delivery_seconds
                    .observe(now.saturating_sub(envelope.received_at) as f64);
            }
            RecipientState::Pending => {
                METRICS.deferred.get_or_create(&labels).inc();
            }
            RecipientState::Failed => {
                METRICS.bounced.get_or_create(&labels).inc();
            }
        }
    }
    let changed = |state: RecipientState| {
        envelope
            .recipients
            .iter()
            .zip(&was_pending)
            .filter(move |(r, was)| **was && r.state == state)
            .map(|(r, _)| r)
    };
    let mut delivered: Vec<RecipientOutcome> = changed(RecipientState::Delivered)
        .map(|r| outcome_of(r, "2.0.0"))
        .collect();
    while !delivered.is_empty() {
        // One Delivery event per distinct reply (one per transaction).
        let first = delivered[0].diagnostic.clone();
        let (same, rest): (Vec<_>, Vec<_>) =
            delivered.into_iter().partition(|r| r.diagnostic == first);
        ctx.events.delivery(&envelope, &same);
        delivered = rest;
    }
    let bounced: Vec<RecipientOutcome> = changed(RecipientState::Failed)
        .map(|r| outcome_of(r, "5.0.0"))
        .collect();
    ctx.events.bounce(&envelope, &bounced);
    let delayed: Vec<RecipientOutcome> = changed(RecipientState::Pending)
        .map(|r| outcome_of(r, "4.0.0"))
        .collect();
    ctx.events.delivery_delay(&envelope, &delayed);

    // A bounce for final recipients not yet reported that asked for one (including any whose
    // bounce could not be spooled on an earlier attempt).
    let mut created = Vec::new();
    let wants_report = |r: &Recipient| match r.state {
        RecipientState::Failed => r.notify.on_failure(),
        RecipientState::Delivered => r.notify.on_success(),
        RecipientState::Pending => false,
    };
    let reportable: Vec<usize> = (0..envelope.recipients.len())
        .filter(|&i| !envelope.recipients[i].reported && wants_report(&envelope.recipients[i]))
        .collect();
    let mut report_done = true;
    if !reportable.is_empty() && !envelope.sender.is_empty() && !envelope.is_dsn {
        match send_dsn(&ctx, &envelope, &reportable).await {
            Ok(dsn) => created.push(dsn),
            Err(error) => {
                report_done = false;
                tracing::error!(id = %envelope.id, %error, "cannot spool the bounce; the message is kept and it is tried again");
            }
        }
    }
    if report_done {
        for recipient in envelope
            .recipients
            .iter_mut()
            .filter(|r| r.state != RecipientState::Pending)
        {
            recipient.reported = true;
        }
    }

    let finished = envelope.is_finished() && report_done;
    let snapshot = envelope.clone();
    let spool = ctx.spool.clone();
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
    Outcome {
        id: envelope.id.clone(),
        retry: (!finished).then_some(envelope),
        created,
    }
}

/// Builds the DSN for `indexes` of `envelope`, spools it durably and returns its envelope.
async fn send_dsn(
    ctx: &AttemptContext,
    envelope: &Envelope,
    indexes: &[usize],
) -> std::io::Result<Envelope> {
    let path = ctx.spool.content_path(&envelope.id);
    let full = envelope.ret_full && envelope.size <= MAX_RETURNED_MESSAGE;
    let size = envelope.size;
    let original = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let limit = if full {
            size
        } else {
            (MAX_RETURNED_HEADERS as u64).min(size)
        };
        let mut bytes = Vec::with_capacity(limit as usize);
        std::fs::File::open(path)?
            .take(limit)
            .read_to_end(&mut bytes)?;
        Ok(bytes)
    })
    .await
    .map_err(std::io::Error::other)??;
    let original = if full {
        &original[..]
    } else {
        dsn::header_block(&original, MAX_RETURNED_HEADERS)
    };
    let reported: Vec<Reported> = indexes
        .iter()
        .map(|&i| {
            let r = &envelope.recipients[i];
            let failed = r.state == RecipientState::Failed;
            let outcome = outcome_of(r, if failed { "5.0.0" } else { "2.0.0" });
            Reported {
                address: r.address.clone(),
                // smtp-proto keeps the address of `ORCPT=rfc822;addr`, without its type.
                original_recipient: r.orcpt.as_ref().map(|address| format!("rfc822;{address}")),
                action: if failed { "failed" } else { "delivered" },
                status: outcome.status,
                remote_mta: r.remote_mta.clone(),
                diagnostic: outcome.diagnostic,
            }
        })
        .collect();
    let id = new_message_id();
    let content = dsn::build(&DsnRequest {
        reporting_mta: &ctx.hostname,
        original_sender: &envelope.sender,
        original_id: &envelope.id,
        envid: envelope.envid.as_deref(),
        arrival: envelope.received_at,
        recipients: &reported,
        original,
        full,
        token: &id,
    });
    let now = unix_now();
    let dsn_envelope = Envelope {
        id: id.clone(),
        received_at: now,
        sender: String::new(),
        recipients: vec![Recipient::new(envelope.sender.clone())],
        configuration_set: envelope.configuration_set.clone(),
        pool: envelope.pool.clone(),
        client_ip: envelope.client_ip,
        client_helo: ctx.hostname.clone(),
        size: content.len() as u64,
        smtputf8: envelope.smtputf8,
        eight_bit_mime: false,
        attempts: 0,
        last_source_ip: None,
        expires_at: now + ctx.settings.max_age.as_secs(),
        is_dsn: true,
        held: false,
        envid: None,
        ret_full: false,
        tags: envelope.tags.clone(),
    };
    let mut writer = ctx.spool.writer(&id);
    writer.buffer().extend_from_slice(&content);
    writer.commit(dsn_envelope.clone()).await?;
    tracing::info!(id = %envelope.id, dsn = %id, recipients = indexes.len(), to = %envelope.sender, "bounce queued");
    Ok(dsn_envelope)
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
        assert!(!expire(&mut envelope, 1599));
        assert!(expire(&mut envelope, 1600));
        assert_eq!(envelope.recipients[0].state, RecipientState::Delivered);
        assert_eq!(envelope.recipients[1].state, RecipientState::Failed);
        let reply = envelope.recipients[1].last_reply.clone().unwrap();
        assert!(
            reply.starts_with("550 4.4.7 Message expired: unable to deliver in 10 minutes"),
            "{reply}"
        );
        assert!(reply.contains("connection refused"));
        assert_eq!(dsn::status_of(&reply), "4.4.7");
    }
}
