//! The suppression list and the sent ledger as seen from a delivery attempt:
//!
//! * before the attempt, recipients on the list (for the reasons the message's configuration
//!   set, or else the account, suppresses) fail at once without being attempted, with a
//!   `Bounce` event of subtype `OnAccountSuppressionList` (their DSN follows as for any failure);
//! * after it, recipients that bounced hard go on the list (reason `BOUNCE`), and delivered
//!   messages are recorded for bounces and complaints that arrive later.

use super::context::AttemptContext;
use super::dsn;
use crate::events::BounceDetails;
use crate::events::bounce_type::BounceKind;
use crate::ledger::sent::{SentRecipient, SentRecord};
use crate::ledger::suppression::Suppressed;
use crate::metrics::METRICS;
use crate::outbound::report::{AttemptReport, Failure, Outcome};
use crate::settings::suppression::SuppressionReason;
use crate::spool::{Envelope, RecipientState, unix_now};

/// Fails the pending recipients that are on the suppression list.
pub(super) fn stop_suppressed(ctx: &AttemptContext, envelope: &mut Envelope) {
    let Some(ledger) = &ctx.ledger else {
        return;
    };
    if envelope.is_dsn || ledger.suppressed_count() == 0 {
        return;
    }
    let reasons = ctx
        .registry
        .load()
        .suppressed_reasons_for(envelope.configuration_set.as_deref());
    if reasons.is_empty() {
        return;
    }
    // Looked up right here: a lookup takes microseconds (p99 16-18 us with ten million
    // entries in the page cache, benches/results/suppression.md), while handing it to a
    // blocking thread cost 19% of the relay's throughput (benches/feature-cost.sh --feedback).
    let looked_up: Vec<_> = envelope
        .pending()
        .filter_map(|(i, recipient)| match ledger.stops(&recipient.address, reasons) {
            Ok(found) => found.map(|entry| (i, entry)),
            Err(error) => {
                tracing::error!(%error, "cannot read the suppression list; the recipient is attempted");
                None
            }
        })
        .collect();
    if looked_up.is_empty() {
        return;
    }
    let mut stopped = Vec::new();
    for (index, entry) in looked_up {
        let recipient = &mut envelope.recipients[index];
        recipient.state = RecipientState::Failed;
        recipient.last_reply = Some(format!(
            "550 5.1.1 {} is on the account-level suppression list (reason {}); not attempted",
            recipient.address, entry.reason
        ));
        tracing::info!(id = %envelope.id, recipient = %recipient.address, reason = %entry.reason, "suppressed; not attempted");
        stopped.push(index);
    }
    METRICS.suppressed_recipients.inc_by(stopped.len() as u64);
    publish(ctx, envelope, &stopped);
}

fn publish(ctx: &AttemptContext, envelope: &Envelope, stopped: &[usize]) {
    let outcomes: Vec<_> = stopped
        .iter()
        .map(|&i| super::bounce::outcome_of(&envelope.recipients[i], "5.1.1"))
        .collect();
    let details = BounceDetails {
        kind: BounceKind::SUPPRESSED,
        action: "failed",
        feedback_id: None,
        reporting_mta: None,
    };
    ctx.events.bounce_with(envelope, &details, &outcomes);
}

/// Puts the recipients this attempt hard-bounced on the list, if the message's reasons
/// include `BOUNCE`. Refusals of the source IP never get here (they defer).
pub(super) async fn record_hard_bounces(
    ctx: &AttemptContext,
    envelope: &Envelope,
    report: &AttemptReport,
) {
    let Some(ledger) = ctx.ledger.clone() else {
        return;
    };
    let reasons = ctx
        .registry
        .load()
        .suppressed_reasons_for(envelope.configuration_set.as_deref());
    if !reasons.contains(SuppressionReason::Bounce) || envelope.is_dsn {
        return;
    }
    let now = unix_now();
    let entries: Vec<Suppressed> = report
        .outcomes()
        .filter_map(|(index, outcome)| {
            let reply = match &outcome.result {
                Outcome::Failed(failure @ (Failure::Remote(_) | Failure::NoSuchDomain(_))) => {
                    failure.reply()
                }
                _ => return None,
            };
            let status = dsn::status_of(&reply);
            BounceKind::from_status(Some("failed"), Some(&status))
                .filter(|kind| kind.is_permanent())
                .map(|_| Suppressed {
                    address: envelope.recipients[index].address.clone(),
                    reason: SuppressionReason::Bounce,
                    last_update: now,
                    message_id: Some(envelope.id.clone()),
                    feedback_id: None,
                })
        })
        .collect();
    if entries.is_empty() {
        return;
    }
    let count = entries.len();
    match tokio::task::spawn_blocking(move || ledger.suppress_all(&entries)).await {
        Ok(Ok(_)) => {
            tracing::info!(id = %envelope.id, count, "hard-bounced recipients added to the suppression list")
        }
        _ => {
            tracing::error!(id = %envelope.id, "cannot add hard-bounced recipients to the suppression list")
        }
    }
}

/// Records a message that this attempt delivered to someone, for later reports.
pub(super) fn record_sent(ctx: &AttemptContext, envelope: &Envelope, report: &AttemptReport) {
    let Some(recorder) = &ctx.sent else {
        return;
    };
    let delivered = report
        .outcomes()
        .any(|(_, outcome)| matches!(outcome.result, Outcome::Delivered(_)));
    if !delivered || envelope.is_dsn {
        return;
    }
    recorder.record(SentRecord {
        message_id: envelope.id.clone(),
        received_at: envelope.received_at,
        sender: envelope.sender.clone(),
        recipients: envelope
            .recipients
            .iter()
            .map(|r| SentRecipient {
                address: r.address.clone(),
                outgoing_ip: r.source_ip,
            })
            .collect(),
        configuration_set: envelope.configuration_set.clone(),
        pool: envelope.pool.clone(),
        client_ip: envelope.client_ip,
        header_message_id: envelope.header_message_id.clone(),
        tags: envelope.tags.clone(),
    });
}
