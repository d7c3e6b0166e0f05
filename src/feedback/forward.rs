//! SES email feedback forwarding: a bounce or complaint goes on to the original sender, from
//! `<>`, through the pool the original message left from, as a new spooled message.

use crate::ledger::sent::SentRecord;
use crate::spool::{Envelope, Recipient, Spool, new_message_id, unix_now};

/// Spools `content` (the report as received) for the original sender of `record`.
pub(super) async fn forward(
    spool: &Spool,
    (hostname, max_age): (&str, std::time::Duration),
    record: &SentRecord,
    content: &[u8],
) -> std::io::Result<Envelope> {
    let now = unix_now();
    let envelope = Envelope {
        id: new_message_id(),
        received_at: now,
        sender: String::new(),
        recipients: vec![Recipient::new(record.sender.clone())],
        configuration_set: record.configuration_set.clone(),
        pool: record.pool.clone(),
        client_ip: record.client_ip,
        client_helo: hostname.to_string(),
        size: content.len() as u64,
        smtputf8: !record.sender.is_ascii(),
        expires_at: now + max_age.as_secs(),
        // Never bounced itself: a report about a report would loop.
        is_dsn: true,
        tags: record.tags.clone(),
        ..Envelope::default()
    };
    let mut writer = spool.writer();
    writer.buffer().extend_from_slice(content);
    let envelope = writer.commit(envelope).await?;
    tracing::info!(id = %envelope.id, original = %record.message_id, to = %record.sender, pool = %record.pool, "feedback forwarded");
    Ok(envelope)
}
