//! `Content.Template` for SendEmail, and SendBulkEmail (`POST /v2/email/outbound-bulk-emails`):
//! a stored template (or one given inline) filled with each destination's `TemplateData`, then
//! built as `Content.Simple` would be.

use serde_json::{Value, json};

use super::address::parse_mailbox;
use super::mime::{self, Addressing};
use super::request::{Member, bad};
use super::send::{Caller, email_tags, hand_over, mailboxes};
use crate::admin::error::ApiError;
use crate::admin::state::AdminState;
use crate::admin::templates::{self, TemplateContent};
use crate::inbound::InboundContext;
use crate::inbound::submission::Submission;
use crate::spool::new_message_id;

/// SES's limit on `BulkEmailEntries`.
const MAX_BULK_ENTRIES: usize = 50;

/// The template a `Template` member names (`TemplateName`) or holds (`TemplateContent`).
fn template_content(state: &AdminState, template: &Member) -> Result<TemplateContent, ApiError> {
    let inline = template.object("TemplateContent")?;
    match (template.string("TemplateName")?, inline.is_absent()) {
        (Some(name), true) => templates::content(state, &name),
        (None, false) => {
            inline.only(&["Subject", "Text", "Html"])?;
            Ok(TemplateContent {
                subject: inline.string("Subject")?,
                text: inline.string("Text")?,
                html: inline.string("Html")?,
            })
        }
        _ => Err(bad(
            "Template needs exactly one of TemplateName or TemplateContent".into(),
        )),
    }
}

/// The rendered template as a `Content.Simple` member, so one builder makes both.
fn as_simple(rendered: TemplateContent, headers: &[Member]) -> Member {
    let part = |text: Option<String>| text.map(|t| json!({ "Data": t }));
    let mut body = serde_json::Map::new();
    if let Some(text) = part(rendered.text) {
        body.insert("Text".into(), text);
    }
    if let Some(html) = part(rendered.html) {
        body.insert("Html".into(), html);
    }
    let headers: Vec<Value> = headers.iter().filter_map(Member::raw_value).collect();
    let mut simple = serde_json::Map::new();
    simple.insert(
        "Subject".into(),
        json!({ "Data": rendered.subject.unwrap_or_default() }),
    );
    simple.insert("Body".into(), Value::Object(body));
    if !headers.is_empty() {
        simple.insert("Headers".into(), Value::Array(headers));
    }
    Member::root(simple).renamed("Content.Template")
}

/// `Content.Template` of SendEmail.
pub fn render_for_send(
    state: &AdminState,
    template: &Member,
    addressing: &Addressing<'_>,
) -> Result<Vec<u8>, ApiError> {
    template.only(&["TemplateName", "TemplateContent", "TemplateData", "Headers"])?;
    let content = template_content(state, template)?;
    let data = templates::parse_data(
        &template
            .string("TemplateData")?
            .unwrap_or_else(|| "{}".into()),
    )?;
    let rendered = templates::render(&content, &data)?;
    mime::simple(
        &as_simple(rendered, &template.array("Headers")?),
        addressing,
    )
}

/// SendBulkEmail: one result per entry, `SUCCESS` with its `MessageId` or the entry's error.
pub(super) async fn send_bulk(
    state: &AdminState,
    inbound: &InboundContext,
    caller: &Caller<'_>,
    body: Member,
) -> Result<Value, ApiError> {
    body.only(&[
        "FromEmailAddress",
        "ReplyToAddresses",
        "FeedbackForwardingEmailAddress",
        "DefaultEmailTags",
        "DefaultContent",
        "BulkEmailEntries",
        "ConfigurationSetName",
    ])?;
    let from = parse_mailbox(&body.required_string("FromEmailAddress")?)
        .map_err(|e| bad(format!("FromEmailAddress: {e}")))?;
    let reply_to = mailboxes(&body.strings("ReplyToAddresses")?, "ReplyToAddresses")?;
    let return_path = match body.string("FeedbackForwardingEmailAddress")? {
        Some(f) => {
            parse_mailbox(&f).map_err(|e| bad(format!("FeedbackForwardingEmailAddress: {e}")))?
        }
        None => from.clone(),
    };
    let default_tags = email_tags(&body, "DefaultEmailTags")?;
    let default = body.object("DefaultContent")?;
    default.only(&["Template"])?;
    let template = default.object("Template")?;
    template.only(&["TemplateName", "TemplateContent", "TemplateData", "Headers"])?;
    let content = template_content(state, &template)?;
    let default_data = template
        .string("TemplateData")?
        .unwrap_or_else(|| "{}".into());
    let entries = body.array("BulkEmailEntries")?;
    if entries.is_empty() || entries.len() > MAX_BULK_ENTRIES {
        return Err(bad(format!(
            "BulkEmailEntries needs 1 to {MAX_BULK_ENTRIES} entries"
        )));
    }
    let set = body.string("ConfigurationSetName")?;
    let mut results = Vec::with_capacity(entries.len());
    for entry in &entries {
        let outcome = async {
            entry.only(&[
                "Destination",
                "ReplacementTags",
                "ReplacementEmailContent",
                "ReplacementHeaders",
            ])?;
            let destination = entry.object("Destination")?;
            destination.only(&["ToAddresses", "CcAddresses", "BccAddresses"])?;
            let list =
                |name: &str| mailboxes(&destination.strings(name)?, &format!("Destination.{name}"));
            let (to, cc, bcc) = (
                list("ToAddresses")?,
                list("CcAddresses")?,
                list("BccAddresses")?,
            );
            let replacement = entry
                .object("ReplacementEmailContent")?
                .object("ReplacementTemplate")?;
            replacement.only(&["ReplacementTemplateData"])?;
            let data = replacement
                .string("ReplacementTemplateData")?
                .unwrap_or_else(|| default_data.clone());
            let mut data = templates::parse_data(&data)?;
            merge_defaults(&mut data, &templates::parse_data(&default_data)?);
            let rendered = templates::render(&content, &data)?;
            let mut headers = template.array("Headers")?;
            headers.extend(entry.array("ReplacementHeaders")?);
            let id = new_message_id();
            let addressing = Addressing {
                from: &from,
                to: &to,
                cc: &cc,
                reply_to: &reply_to,
                message_id: format!("{id}@{}", inbound.settings.hostname),
            };
            let message = mime::simple(&as_simple(rendered, &headers), &addressing)?;
            let mut tags = default_tags.clone();
            for (name, value) in email_tags(entry, "ReplacementTags")? {
                tags.retain(|(n, _)| *n != name);
                tags.push((name, value));
            }
            let recipients = to
                .iter()
                .chain(&cc)
                .chain(&bcc)
                .map(|m| m.address.clone())
                .collect();
            let submission = Submission {
                id,
                client_ip: caller.ip,
                key: caller.key.access_key_id.clone(),
                allowed_sets: caller.key.allowed_configuration_sets.clone(),
                sender: return_path.address.clone(),
                recipients,
                configuration_set: set.clone(),
                tags,
                content: message,
            };
            hand_over(inbound, caller.key, &from, submission).await
        }
        .await;
        results.push(match outcome {
            Ok(id) => json!({ "Status": "SUCCESS", "MessageId": id }),
            Err(error) => {
                json!({ "Status": bulk_status(&error), "Error": error.body()["message"] })
            }
        });
    }
    Ok(json!({ "BulkEmailEntryResults": results }))
}

/// Values the entry's data lacks come from the default data.
fn merge_defaults(data: &mut Value, defaults: &Value) {
    if let (Value::Object(data), Value::Object(defaults)) = (data, defaults) {
        for (key, value) in defaults {
            data.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
}

/// SES's `BulkEmailStatus` for an entry's error.
fn bulk_status(error: &ApiError) -> &'static str {
    match error.kind() {
        "MessageRejected" => "MESSAGE_REJECTED",
        "SendingPausedException" => "ACCOUNT_SENDING_PAUSED",
        "TooManyRequestsException" => "ACCOUNT_THROTTLED",
        "LimitExceededException" => "ACCOUNT_DAILY_QUOTA_EXCEEDED",
        "NotFoundException" => "CONFIGURATION_SET_DOES_NOT_EXIST",
        "AccessDeniedException" => "MAIL_FROM_DOMAIN_NOT_VERIFIED",
        "BadRequestException" => "INVALID_PARAMETER",
        _ => "FAILED",
    }
}
