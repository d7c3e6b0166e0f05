//! SendEmail (`POST /v2/email/outbound-emails`): the request checked member by member, the
//! message built (`Simple`, `Template`) or taken as given (`Raw`), then handed to the same
//! acceptance path as SMTP mail. The answer's `MessageId` is the spool id every event carries.

use std::net::IpAddr;

use base64::Engine;
use hyper::StatusCode;
use mail_parser::MessageParser;
use serde_json::{Value, json};

use super::address::{Mailbox, parse_mailbox};
use super::mime::{self, Addressing};
use super::request::{Member, bad};
use super::template_content;
use crate::admin::error::ApiError;
use crate::admin::state::AdminState;
use crate::inbound::InboundContext;
use crate::inbound::quota::QuotaExceeded;
use crate::inbound::refusal::Refusal;
use crate::inbound::submission::{Submission, submit};
use crate::settings::api::ApiKey;
use crate::spool::new_message_id;

/// SES's limit on To + Cc + Bcc.
pub const MAX_RECIPIENTS: usize = 50;

/// Who is sending, as the listener knows it.
pub struct Caller<'a> {
    pub key: &'a ApiKey,
    pub ip: IpAddr,
}

pub fn mailboxes(list: &[String], member: &str) -> Result<Vec<Mailbox>, ApiError> {
    list.iter()
        .map(|text| parse_mailbox(text).map_err(|e| bad(format!("{member}: {e}"))))
        .collect()
}

/// `EmailTags`: names and values of ASCII letters, digits, `_` and `-`, at most 256 each.
pub fn email_tags(body: &Member<'_>, member: &str) -> Result<Vec<(String, String)>, ApiError> {
    let ok = |t: &str| {
        (1..=256).contains(&t.len())
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    body.array(member)?
        .iter()
        .map(|tag| {
            tag.only(&["Name", "Value"])?;
            let (name, value) = (tag.required_string("Name")?, tag.required_string("Value")?);
            if !ok(&name) || !ok(&value) {
                return Err(bad(format!(
                    "{member}: {name:?}={value:?} may only use A-Z, a-z, 0-9, '_' and '-' (1-256 characters)"
                )));
            }
            Ok((name, value))
        })
        .collect()
}

/// A refusal of the acceptance path as SES's API says it.
pub fn api_error(refusal: Refusal) -> ApiError {
    let reply = refusal.reply().to_string();
    let message = reply.trim_end().to_string();
    let ses = |status, kind| ApiError::Ses {
        status,
        kind,
        message: message.clone(),
    };
    match refusal {
        Refusal::UnknownConfigurationSet(set) => {
            ApiError::NotFound(format!("Configuration set <{set}> does not exist."))
        }
        Refusal::ConfigurationSetNotAllowed { .. } | Refusal::FromNotAllowed(_) => {
            ApiError::AccessDenied(message)
        }
        Refusal::Content(..) | Refusal::TooManyHops(_) => {
            ses(StatusCode::BAD_REQUEST, "MessageRejected")
        }
        Refusal::SendingPaused(_) => ses(StatusCode::BAD_REQUEST, "SendingPausedException"),
        Refusal::Quota(QuotaExceeded::Rate) => {
            ses(StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException")
        }
        Refusal::Quota(QuotaExceeded::Daily) => {
            ses(StatusCode::BAD_REQUEST, "LimitExceededException")
        }
        Refusal::SpoolUnavailable { .. } => {
            ses(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable")
        }
    }
}

/// The recipients of a request: `Destination`, or for a raw message without one, its To, Cc and
/// Bcc fields.
struct Destination {
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    bcc: Vec<Mailbox>,
}

impl Destination {
    fn read(body: &Member<'_>) -> Result<Option<Self>, ApiError> {
        let destination = body.object("Destination")?;
        if destination.is_absent() {
            return Ok(None);
        }
        destination.only(&["ToAddresses", "CcAddresses", "BccAddresses"])?;
        let list =
            |name: &str| mailboxes(&destination.strings(name)?, &format!("Destination.{name}"));
        Ok(Some(Self {
            to: list("ToAddresses")?,
            cc: list("CcAddresses")?,
            bcc: list("BccAddresses")?,
        }))
    }

    fn addresses(&self) -> Vec<String> {
        let all = self.to.iter().chain(&self.cc).chain(&self.bcc);
        let mut addresses: Vec<String> = Vec::new();
        for mailbox in all {
            if !addresses
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&mailbox.address))
            {
                addresses.push(mailbox.address.clone());
            }
        }
        addresses
    }
}

/// The header fields of a raw message that name people: From, and To + Cc + Bcc.
fn raw_addresses(message: &[u8]) -> (Option<Mailbox>, Vec<String>) {
    let Some(parsed) = MessageParser::new().parse_headers(message) else {
        return (None, Vec::new());
    };
    let from = parsed
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .and_then(|a| parse_mailbox(a).ok());
    let mut recipients = Vec::new();
    for list in [parsed.to(), parsed.cc(), parsed.bcc()]
        .into_iter()
        .flatten()
    {
        recipients.extend(list.iter().filter_map(|a| a.address().map(str::to_string)));
    }
    (from, recipients)
}

/// The message and its From for the request's `Content`.
fn content(
    state: &AdminState,
    body: &Member<'_>,
    addressing: &mut AddressingParts,
) -> Result<(Vec<u8>, Mailbox), ApiError> {
    let content = body.object("Content")?;
    content.only(&["Simple", "Raw", "Template"])?;
    let (simple, raw, template) = (
        content.object("Simple")?,
        content.object("Raw")?,
        content.object("Template")?,
    );
    let given = [&simple, &raw, &template]
        .iter()
        .filter(|m| !m.is_absent())
        .count();
    if given != 1 {
        return Err(bad(
            "Content needs exactly one of Simple, Raw or Template".into()
        ));
    }
    if !raw.is_absent() {
        raw.only(&["Data"])?;
        if !addressing.reply_to.is_empty() {
            return Err(bad(
                "ReplyToAddresses is not supported with Content.Raw: the raw message carries its own Reply-To".into(),
            ));
        }
        let data = base64::engine::general_purpose::STANDARD
            .decode(raw.required_str("Data")?.as_bytes())
            .map_err(|_| bad("Content.Raw.Data is not base64".into()))?;
        // The message's own fields are read only for what the request leaves out.
        let (header_from, header_recipients) =
            match addressing.from.is_none() || addressing.recipients.is_empty() {
                true => raw_addresses(&data),
                false => (None, Vec::new()),
            };
        let from = match addressing.from.take().or(header_from) {
            Some(from) => from,
            None => {
                return Err(bad(
                    "the raw message has no From: address and FromEmailAddress is absent".into(),
                ));
            }
        };
        if addressing.recipients.is_empty() {
            addressing.recipients = header_recipients;
        }
        return Ok((data, from));
    }
    let from = addressing
        .from
        .take()
        .ok_or_else(|| bad("FromEmailAddress is required".into()))?;
    let built = Addressing {
        from: &from,
        to: &addressing.to,
        cc: &addressing.cc,
        reply_to: &addressing.reply_to,
        message_id: addressing.message_id.clone(),
    };
    let message = match template.is_absent() {
        true => mime::simple(&simple, &built)?,
        false => template_content::render_for_send(state, &template, &built)?,
    };
    Ok((message, from))
}

/// What the request says about addresses, before the content is read.
struct AddressingParts {
    from: Option<Mailbox>,
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    reply_to: Vec<Mailbox>,
    recipients: Vec<String>,
    message_id: String,
}

/// SendEmail.
pub async fn send_email(
    state: &AdminState,
    inbound: &InboundContext,
    caller: &Caller<'_>,
    body: Member<'_>,
) -> Result<Value, ApiError> {
    body.only(&[
        "FromEmailAddress",
        "Destination",
        "ReplyToAddresses",
        "FeedbackForwardingEmailAddress",
        "Content",
        "EmailTags",
        "ConfigurationSetName",
    ])?;
    let id = new_message_id();
    let destination = Destination::read(&body)?;
    let from = body
        .string("FromEmailAddress")?
        .map(|f| parse_mailbox(&f).map_err(|e| bad(format!("FromEmailAddress: {e}"))))
        .transpose()?;
    let mut parts = AddressingParts {
        from,
        to: destination
            .as_ref()
            .map(|d| d.to.clone())
            .unwrap_or_default(),
        cc: destination
            .as_ref()
            .map(|d| d.cc.clone())
            .unwrap_or_default(),
        reply_to: mailboxes(&body.strings("ReplyToAddresses")?, "ReplyToAddresses")?,
        recipients: destination
            .as_ref()
            .map(Destination::addresses)
            .unwrap_or_default(),
        message_id: format!("{id}@{}", inbound.settings.hostname),
    };
    let (message, from) = content(state, &body, &mut parts)?;
    let return_path = body
        .string("FeedbackForwardingEmailAddress")?
        .map(|f| parse_mailbox(&f).map_err(|e| bad(format!("FeedbackForwardingEmailAddress: {e}"))))
        .transpose()?;
    let submission = Submission {
        id,
        client_ip: caller.ip,
        key: caller.key.access_key_id.clone(),
        allowed_sets: caller.key.allowed_configuration_sets.clone(),
        sender: return_path.unwrap_or_else(|| from.clone()).address,
        recipients: parts.recipients,
        configuration_set: body.string("ConfigurationSetName")?,
        tags: email_tags(&body, "EmailTags")?,
        content: message,
    };
    let id = hand_over(inbound, caller.key, &from, submission).await?;
    Ok(json!({ "MessageId": id }))
}

/// Checks what the key may send and how many recipients there are, then submits.
pub async fn hand_over(
    inbound: &InboundContext,
    key: &ApiKey,
    from: &Mailbox,
    submission: Submission,
) -> Result<String, ApiError> {
    if submission.recipients.is_empty() {
        return Err(bad(
            "the message has no recipients (Destination is empty)".into()
        ));
    }
    if submission.recipients.len() > MAX_RECIPIENTS {
        return Err(ApiError::Ses {
            status: StatusCode::BAD_REQUEST,
            kind: "MessageRejected",
            message: format!(
                "{} recipients; at most {MAX_RECIPIENTS} (To, Cc and Bcc together)",
                submission.recipients.len()
            ),
        });
    }
    for recipient in &submission.recipients {
        parse_mailbox(recipient).map_err(|e| bad(format!("recipient: {e}")))?;
    }
    if let Some(domains) = &key.allowed_from_domains {
        let domain = from.domain();
        if !domains.iter().any(|d| d.eq_ignore_ascii_case(&domain)) {
            return Err(api_error(Refusal::FromNotAllowed(domain)));
        }
    }
    submit(inbound, submission).await.map_err(api_error)
}
