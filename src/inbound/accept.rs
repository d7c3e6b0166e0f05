//! What every message goes through once it has arrived, whichever way it came (SMTP DATA or the
//! SESv2 API): its configuration set and pool checked, pauses and quotas, its envelope made, the
//! commit to the spool (signed where an identity says so), the log line, the Send event and the
//! queue. One path, so the two doors cannot drift apart.

use std::net::IpAddr;
use std::sync::Arc;

use super::context::InboundContext;
use super::head::HeldHead;
use super::headers::HeaderFilter;
use super::received::sanitize_name;
use super::refusal::Refusal;
use super::session::Transaction;
use super::signing::{self, Decision};
use crate::spool::{Envelope, MessageWriter, unix_now};

/// Who handed a message over.
pub(super) struct Client<'a> {
    pub(super) ip: IpAddr,
    /// The EHLO name (SMTP) or what stands for it (the API).
    pub(super) helo: &'a str,
    /// The SMTP user or API access key that authenticated.
    pub(super) user: Option<&'a str>,
    /// The configuration sets that user may send through (`None`: any).
    pub(super) allowed_sets: Option<&'a [String]>,
}

/// The configuration set and pool of a message: `explicit` (the API's `ConfigurationSetName`),
/// else its `X-SES-CONFIGURATION-SET` header, else its identity's default set. Refused when the
/// set does not exist, the client may not use it, or sending is paused.
pub(super) fn classify(
    ctx: &InboundContext,
    client: &Client<'_>,
    explicit: Option<&str>,
    filter: &HeaderFilter,
    decision: Option<&Decision>,
) -> Result<(Option<String>, String), Refusal> {
    let set = explicit
        .or_else(|| filter.configuration_set())
        .map(str::to_string)
        .or_else(|| decision.and_then(|d| d.default_set.clone()));
    let printable = || -> String {
        set.as_deref()
            .unwrap_or_default()
            .chars()
            .take(64)
            .map(|c| if c.is_control() || c == '"' { '_' } else { c })
            .collect()
    };
    if let (Some(user), Some(allowed), Some(name)) = (client.user, client.allowed_sets, &set)
        && !allowed.iter().any(|a| a == name)
    {
        return Err(Refusal::ConfigurationSetNotAllowed {
            set: printable(),
            user: user.to_string(),
        });
    }
    let registry = ctx.registry.load();
    let pool = registry
        .pool_for(set.as_deref())
        .map_err(|_| Refusal::UnknownConfigurationSet(printable()))?;
    if let Some(paused) = registry.sending_paused(set.as_deref()) {
        return Err(Refusal::SendingPaused(paused));
    }
    Ok((set, pool))
}

/// The envelope of an accepted message.
pub(super) fn envelope(
    ctx: &InboundContext,
    client: &Client<'_>,
    id: &str,
    transaction: Transaction,
    (configuration_set, pool): (Option<String>, String),
    filter: &HeaderFilter,
) -> Envelope {
    let received_at = unix_now();
    let lifetime = ctx
        .registry
        .load()
        .max_delivery_seconds(configuration_set.as_deref())
        .unwrap_or(ctx.max_age.as_secs());
    Envelope {
        id: id.to_string(),
        received_at,
        sender: transaction.sender,
        recipients: transaction.recipients,
        configuration_set,
        pool,
        client_ip: client.ip,
        client_helo: sanitize_name(client.helo),
        size: 0,
        smtputf8: transaction.smtputf8,
        eight_bit_mime: transaction.eight_bit_mime,
        attempts: 0,
        last_source_ip: None,
        expires_at: received_at + lifetime,
        is_dsn: false,
        held: false,
        envid: transaction.envid,
        ret_full: transaction.ret_full,
        tags: filter.tags().to_vec(),
        header_message_id: filter.message_id().map(str::to_string),
        sends_as_is: false,
        forwarded_from: None,
        stored: None,
        in_memory: None,
    }
}

/// Counts the message against the account's quota, makes it durable, then queues it. The caller
/// acknowledges only after this returns `Ok`.
pub(super) async fn accept(
    ctx: &InboundContext,
    writer: MessageWriter,
    mut envelope: Envelope,
    held: Option<HeldHead>,
    signing: &str,
) -> Result<(), Refusal> {
    let limits = ctx.registry.load().account();
    ctx.quota
        .admit_anywhere(&limits, envelope.recipients.len() as u64)
        .await
        .map_err(Refusal::Quota)?;
    envelope.size = writer.size();
    let id = envelope.id.clone();
    let committed = match held {
        None => writer.commit(envelope).await,
        Some(held) => {
            let stamp = signing::stamp(held.signer, held.fields, Arc::from(id.as_str()));
            writer.commit_stamped(envelope, held.bytes, stamp).await
        }
    };
    let queued = committed.map_err(|error| Refusal::spool(&id, &error))?;
    tracing::info!(
        id,
        client = %queued.client_ip,
        sender = %queued.sender,
        recipients = queued.recipients.len(),
        configuration_set = queued.configuration_set.as_deref().unwrap_or("-"),
        pool = %queued.pool,
        dkim = signing,
        "accepted"
    );
    ctx.events.send(&queued);
    ctx.queue.enqueue(queued);
    Ok(())
}
