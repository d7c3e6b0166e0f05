//! SendBulkEmail (`POST /v2/email/outbound-bulk-emails`): a stored template (or one given
//! inline) filled with each destination's `TemplateData`, then built as `Content.Simple` would
//! be; one result per entry.

use serde_json::{Value, json};

use super::address::{Mailbox, parse_mailbox};
use super::mime::{self, Addressing};
use super::request::{Member, bad};
use super::send::{Caller, email_tags, hand_over, mailboxes};
use super::template_content::{as_simple, template_content};
use crate::admin::error::ApiError;
use crate::admin::state::AdminState;
use crate::admin::templates::{self, TemplateContent};
use crate::inbound::InboundContext;
use crate::inbound::submission::Submission;
use crate::spool::new_message_id;

/// SES's limit on `BulkEmailEntries`.
const MAX_BULK_ENTRIES: usize = 50;

/// SendBulkEmail: one result per entry, `SUCCESS` with its `MessageId` or the entry's error.
pub(super) async fn send_bulk(
    state: &AdminState,
    inbound: &InboundContext,
    caller: &Caller<'_>,
    body: Member<'_>,
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
    let bulk = Bulk {
        inbound,
        caller,
        from,
        reply_to,
        return_path,
        default_tags,
        headers: template.array("Headers")?,
        default_data: templates::parse_data(&default_data)?,
        content,
        set: body.string("ConfigurationSetName")?,
    };
    let mut results = Vec::with_capacity(entries.len());
    for entry in &entries {
        let outcome = bulk_entry(&bulk, entry).await;
        results.push(match outcome {
            Ok(id) => json!({ "Status": "SUCCESS", "MessageId": id }),
            Err(error) => {
                json!({ "Status": bulk_status(&error), "Error": error.body()["message"] })
            }
        });
    }
    Ok(json!({ "BulkEmailEntryResults": results }))
}

/// What every entry of one SendBulkEmail shares.
struct Bulk<'a> {
    inbound: &'a InboundContext,
    caller: &'a Caller<'a>,
    from: Mailbox,
    reply_to: Vec<Mailbox>,
    return_path: Mailbox,
    default_tags: Vec<(String, String)>,
    /// The template's `Headers`.
    headers: Vec<Member<'a>>,
    default_data: Value,
    content: TemplateContent,
    set: Option<String>,
}

/// One `BulkEmailEntries` entry, rendered and submitted: its MessageId, or why it failed.
async fn bulk_entry(bulk: &Bulk<'_>, entry: &Member<'_>) -> Result<String, ApiError> {
    entry.only(&[
        "Destination",
        "ReplacementTags",
        "ReplacementEmailContent",
        "ReplacementHeaders",
    ])?;
    let destination = entry.object("Destination")?;
    destination.only(&["ToAddresses", "CcAddresses", "BccAddresses"])?;
    let list = |name: &str| mailboxes(&destination.strings(name)?, &format!("Destination.{name}"));
    let (to, cc, bcc) = (
        list("ToAddresses")?,
        list("CcAddresses")?,
        list("BccAddresses")?,
    );
    let replacement = entry
        .object("ReplacementEmailContent")?
        .object("ReplacementTemplate")?;
    replacement.only(&["ReplacementTemplateData"])?;
    let mut data = match replacement.string("ReplacementTemplateData")? {
        Some(data) => templates::parse_data(&data)?,
        None => bulk.default_data.clone(),
    };
    merge_defaults(&mut data, &bulk.default_data);
    let rendered = templates::render(&bulk.content, &data)?;
    let mut headers = bulk.headers.clone();
    headers.extend(entry.array("ReplacementHeaders")?);
    let id = new_message_id();
    let addressing = Addressing {
        from: &bulk.from,
        to: &to,
        cc: &cc,
        reply_to: &bulk.reply_to,
        message_id: format!("{id}@{}", bulk.inbound.settings.hostname),
    };
    let simple = as_simple(rendered, &headers);
    let message = mime::simple(
        &Member::root(&simple).renamed("Content.Template"),
        &addressing,
    )?;
    let mut tags = bulk.default_tags.clone();
    for (name, value) in email_tags(entry, "ReplacementTags")? {
        tags.retain(|(n, _)| *n != name);
        tags.push((name, value));
    }
    let recipients = to.iter().chain(&cc).chain(&bcc);
    let submission = Submission {
        id,
        client_ip: bulk.caller.ip,
        key: bulk.caller.key.access_key_id.clone(),
        allowed_sets: bulk.caller.key.allowed_configuration_sets.clone(),
        sender: bulk.return_path.address.clone(),
        recipients: recipients.map(|m| m.address.clone()).collect(),
        configuration_set: bulk.set.clone(),
        tags,
        content: message,
    };
    hand_over(bulk.inbound, bulk.caller.key, &bulk.from, submission).await
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
