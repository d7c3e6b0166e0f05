//! SES email feedback forwarding: a bounce or complaint goes on to the original sender, from
//! `<>`, through the pool the original message left from, as a new spooled message.

use crate::ledger::sent::SentRecord;
use crate::queue::bounce::{NoticeFor, spool_notice};
use crate::spool::{Envelope, Spool, new_message_id};

/// Spools `content` (the report as received) for the original sender of `record`.
pub(super) async fn forward(
    spool: &Spool,
    settings: (&str, std::time::Duration),
    record: &SentRecord,
    content: &[u8],
) -> std::io::Result<Envelope> {
    let about = NoticeFor {
        to: &record.sender,
        configuration_set: record.configuration_set.as_deref(),
        pool: &record.pool,
        client_ip: record.client_ip,
        tags: &record.tags,
        smtputf8: !record.sender.is_ascii(),
    };
    let envelope = spool_notice(spool, settings, new_message_id(), about, content).await?;
    tracing::info!(id = %envelope.id, original = %record.message_id, to = %record.sender, pool = %record.pool, "feedback forwarded");
    Ok(envelope)
}
