//! Bounces: the DSN (RFC 3464) for recipients that failed, or asked to hear of success,
//! spooled like any other message and sent from `<>`.

use super::context::AttemptContext;
use super::dsn::{self, DsnRequest, Reported};
use crate::events::RecipientOutcome;
use crate::spool::{Envelope, Recipient, RecipientState, Spool, new_message_id, unix_now};

/// The most of the original message a DSN carries with `RET=FULL`; larger ones get the headers.
const MAX_RETURNED_MESSAGE: u64 = 1024 * 1024;
/// The most of the original headers a DSN carries.
const MAX_RETURNED_HEADERS: usize = 64 * 1024;

/// A recipient as events and bounces report it: its last reply and the status code in it.
pub(super) fn outcome_of(recipient: &Recipient, default_status: &str) -> RecipientOutcome {
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

/// Spools one bounce for the final recipients not yet reported that asked for one (including
/// any whose bounce could not be spooled on an earlier attempt) and marks every final recipient
/// reported. Returns the bounce to queue, if one was made. On a spool error nothing is marked,
/// so the next attempt tries again.
pub(super) async fn report_final(
    ctx: &AttemptContext,
    envelope: &mut Envelope,
) -> Result<Option<Envelope>, std::io::Error> {
    let wants_report = |r: &Recipient| match r.state {
        RecipientState::Failed => r.notify.on_failure(),
        RecipientState::Delivered => r.notify.on_success(),
        RecipientState::Pending => false,
    };
    let reportable: Vec<usize> = (0..envelope.recipients.len())
        .filter(|&i| !envelope.recipients[i].reported && wants_report(&envelope.recipients[i]))
        .collect();
    let mut created = None;
    if !reportable.is_empty() && !envelope.sender.is_empty() && !envelope.is_dsn {
        created = Some(send_dsn(ctx, envelope, &reportable).await?);
    }
    for recipient in envelope
        .recipients
        .iter_mut()
        .filter(|r| r.state != RecipientState::Pending)
    {
        recipient.reported = true;
    }
    Ok(created)
}

/// The start of the original message a DSN returns: all of it with `full`, else enough for its
/// header block.
async fn read_original(
    ctx: &AttemptContext,
    envelope: &Envelope,
    full: bool,
) -> std::io::Result<Vec<u8>> {
    let (path, offset) = ctx.spool.content(envelope)?;
    let size = envelope.size;
    tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        use std::io::{Read, Seek};
        let limit = if full {
            size
        } else {
            (MAX_RETURNED_HEADERS as u64).min(size)
        };
        let mut bytes = Vec::with_capacity(limit as usize);
        let mut file = std::fs::File::open(path)?;
        file.seek(std::io::SeekFrom::Start(offset))?;
        file.take(limit).read_to_end(&mut bytes)?;
        Ok(bytes)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Builds the DSN for `indexes` of `envelope`, spools it durably and returns its envelope.
async fn send_dsn(
    ctx: &AttemptContext,
    envelope: &Envelope,
    indexes: &[usize],
) -> std::io::Result<Envelope> {
    let full = envelope.ret_full && envelope.size <= MAX_RETURNED_MESSAGE;
    let original = read_original(ctx, envelope, full).await?;
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
    let about = NoticeFor {
        to: &envelope.sender,
        configuration_set: envelope.configuration_set.as_deref(),
        pool: &envelope.pool,
        client_ip: envelope.client_ip,
        tags: &envelope.tags,
        smtputf8: envelope.smtputf8,
    };
    let settings = (ctx.hostname.as_str(), ctx.settings.max_age);
    let dsn_envelope = spool_notice(&ctx.spool, settings, id.clone(), about, &content).await?;
    tracing::info!(id = %envelope.id, dsn = %id, recipients = indexes.len(), to = %envelope.sender, "bounce queued");
    Ok(dsn_envelope)
}

/// Who a notice (a bounce, a forwarded report) goes to and how: the original message's sender,
/// and the set, pool, client and tags it is sent under.
pub struct NoticeFor<'a> {
    pub to: &'a str,
    pub configuration_set: Option<&'a str>,
    pub pool: &'a str,
    pub client_ip: std::net::IpAddr,
    pub tags: &'a [(String, String)],
    pub smtputf8: bool,
}

/// Spools `content` as message `id`, from `<>` to `about.to` through `about.pool`, durably,
/// and returns its envelope to queue. It is never bounced itself (a notice about a notice would
/// loop).
pub async fn spool_notice(
    spool: &Spool,
    (hostname, max_age): (&str, std::time::Duration),
    id: String,
    about: NoticeFor<'_>,
    content: &[u8],
) -> std::io::Result<Envelope> {
    let now = unix_now();
    let envelope = Envelope {
        id,
        received_at: now,
        sender: String::new(),
        recipients: vec![Recipient::new(about.to.to_string())],
        configuration_set: about.configuration_set.map(str::to_string),
        pool: about.pool.to_string(),
        client_ip: about.client_ip,
        client_helo: hostname.to_string(),
        size: content.len() as u64,
        smtputf8: about.smtputf8,
        expires_at: now + max_age.as_secs(),
        is_dsn: true,
        tags: about.tags.to_vec(),
        ..Envelope::default()
    };
    let mut writer = spool.writer();
    writer.buffer().extend_from_slice(content);
    writer.commit(envelope).await
}
