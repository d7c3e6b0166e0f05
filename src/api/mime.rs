//! SendEmail's `Content.Simple` made into a MIME message with mail-builder: subject, text and
//! HTML bodies (multipart/alternative when both), attachments (multipart/mixed), extra headers.
//!
//! The JSON request carries Unicode text, so bodies and subject are written as UTF-8 whatever
//! `Charset` says; nothing is lost, and the label matches the bytes.

use base64::Engine;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;

use super::address::Mailbox;
use super::request::{Member, bad};
use crate::admin::error::ApiError;

/// Headers SendEmail builds itself: a `Headers` entry may not set them.
const BUILT_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "reply-to",
    "return-path",
];

/// Who the message is from and to, as its header shows them (Bcc is never shown).
pub struct Addressing<'a> {
    pub from: &'a Mailbox,
    pub to: &'a [Mailbox],
    pub cc: &'a [Mailbox],
    pub reply_to: &'a [Mailbox],
    /// `<id@hostname>` without the brackets.
    pub message_id: String,
}

fn header_addresses(list: &[Mailbox]) -> Address<'static> {
    Address::new_list(
        list.iter()
            .map(|m| Address::new_address(m.name.clone(), m.address.clone()))
            .collect(),
    )
}

/// The text of `Content.Simple.<part>.Data` (`Subject`, `Body.Text`, `Body.Html`).
fn text(content: &Member<'_>, name: &str) -> Result<Option<String>, ApiError> {
    let part = content.object(name)?;
    if part.is_absent() {
        return Ok(None);
    }
    part.only(&["Data", "Charset"])?;
    Ok(Some(part.required_string("Data")?))
}

/// The whole message for `Content.Simple`.
pub fn simple(content: &Member<'_>, addressing: &Addressing<'_>) -> Result<Vec<u8>, ApiError> {
    content.only(&["Subject", "Body", "Headers", "Attachments"])?;
    let subject = text(content, "Subject")?
        .ok_or_else(|| bad("Content.Simple.Subject is required".into()))?;
    let body = content.object("Body")?;
    body.only(&["Text", "Html"])?;
    let (plain, html) = (text(&body, "Text")?, text(&body, "Html")?);
    if plain.is_none() && html.is_none() {
        return Err(bad("Content.Simple.Body needs Text or Html".into()));
    }
    let mut builder = MessageBuilder::new()
        .from(Address::new_address(
            addressing.from.name.clone(),
            addressing.from.address.clone(),
        ))
        .message_id(addressing.message_id.clone())
        .subject(subject);
    if !addressing.to.is_empty() {
        builder = builder.to(header_addresses(addressing.to));
    }
    if !addressing.cc.is_empty() {
        builder = builder.cc(header_addresses(addressing.cc));
    }
    if !addressing.reply_to.is_empty() {
        builder = builder.reply_to(header_addresses(addressing.reply_to));
    }
    for header in content.array("Headers")? {
        header.only(&["Name", "Value"])?;
        let (name, value) = (
            header.required_string("Name")?,
            header.required_string("Value")?,
        );
        check_header(&name, &value)?;
        builder = builder.header(name, Raw::new(value));
    }
    let mut texts: Vec<MimePart<'static>> = Vec::new();
    if let Some(plain) = plain {
        texts.push(MimePart::new("text/plain", plain));
    }
    if let Some(html) = html {
        texts.push(MimePart::new("text/html", html));
    }
    let mut parts = match texts.len() {
        1 => texts,
        _ => vec![MimePart::new("multipart/alternative", texts)],
    };
    for attachment in content.array("Attachments")? {
        parts.push(attachment_part(&attachment)?);
    }
    let body = match parts.len() {
        1 => parts.remove(0),
        _ => MimePart::new("multipart/mixed", parts),
    };
    builder
        .body(body)
        .write_to_vec()
        .map_err(|error| ApiError::Internal(format!("cannot build the message: {error}")))
}

fn check_header(name: &str, value: &str) -> Result<(), ApiError> {
    let name_ok = !name.is_empty()
        && name.len() <= 76
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    if !name_ok {
        return Err(bad(format!("header name {name:?} is not a field name")));
    }
    if BUILT_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(bad(format!(
            "header {name} is set by SendEmail itself; use the request's own members"
        )));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') || value.len() > 2048 {
        return Err(bad(format!(
            "the value of header {name} has control characters or is over 2048 characters"
        )));
    }
    Ok(())
}

/// One `Attachments` entry: RawContent (base64 in JSON), FileName, optional ContentType,
/// ContentDisposition (ATTACHMENT, or INLINE with ContentId), ContentDescription and
/// ContentTransferEncoding.
fn attachment_part(attachment: &Member<'_>) -> Result<MimePart<'static>, ApiError> {
    attachment.only(&[
        "RawContent",
        "FileName",
        "ContentType",
        "ContentDisposition",
        "ContentId",
        "ContentDescription",
        "ContentTransferEncoding",
    ])?;
    let raw = attachment.required_str("RawContent")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw.as_bytes())
        .map_err(|_| bad("Attachments[].RawContent is not base64".into()))?;
    let file_name = attachment.required_string("FileName")?;
    if file_name.chars().any(|c| c.is_control()) {
        return Err(bad("Attachments[].FileName has control characters".into()));
    }
    let content_type = attachment
        .string("ContentType")?
        .unwrap_or_else(|| "application/octet-stream".into());
    let type_ok = |b: u8| b.is_ascii_alphanumeric() || b"/.+-_".contains(&b);
    if content_type.split('/').count() != 2 || !content_type.bytes().all(type_ok) {
        return Err(bad(format!(
            "ContentType {content_type:?} is not a MIME type"
        )));
    }
    let mut part = MimePart::new(content_type, bytes);
    part = match attachment.string("ContentDisposition")?.as_deref() {
        None | Some("ATTACHMENT") => part.attachment(file_name),
        Some("INLINE") => {
            let cid = attachment.string("ContentId")?.unwrap_or(file_name);
            check_header("Content-ID", &cid)?;
            part.inline().cid(cid)
        }
        Some(other) => {
            return Err(bad(format!(
                "ContentDisposition is ATTACHMENT or INLINE, not {other}"
            )));
        }
    };
    if let Some(description) = attachment.string("ContentDescription")? {
        check_header("Content-Description", &description)?;
        part = part.header("Content-Description", Raw::new(description));
    }
    Ok(
        match attachment.string("ContentTransferEncoding")?.as_deref() {
            None => part,
            Some("BASE64") => part.transfer_encoding("base64"),
            Some("QUOTED_PRINTABLE") => part.transfer_encoding("quoted-printable"),
            Some("SEVEN_BIT") => part.transfer_encoding("7bit"),
            Some(other) => {
                return Err(bad(format!(
                    "ContentTransferEncoding is BASE64, QUOTED_PRINTABLE or SEVEN_BIT, not {other}"
                )));
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::address::parse_mailbox;
    use serde_json::json;

    fn build(simple: serde_json::Value) -> Result<String, ApiError> {
        let from = parse_mailbox("\"Ops, Inc\" <ops@example.com>").expect("address");
        let to = [parse_mailbox("a@example.org").expect("address")];
        let addressing = Addressing {
            from: &from,
            to: &to,
            cc: &[],
            reply_to: &[],
            message_id: "id@relay.test".into(),
        };
        let member = Member::root(&simple);
        simple_message(&member, &addressing)
    }

    fn simple_message(
        member: &Member<'_>,
        addressing: &Addressing<'_>,
    ) -> Result<String, ApiError> {
        simple(member, addressing).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    #[test]
    fn line_breaks_in_the_subject_or_body_cannot_add_header_fields() {
        let message = build(json!({
            "Subject": {"Data": "Hi\r\nBcc: evil@example.test\r\n\r\nbody"},
            "Body": {"Text": {"Data": "text\r\n.\r\n"}}
        }))
        .expect("built");
        let head = message.split("\r\n\r\n").next().unwrap_or_default();
        assert!(
            !head
                .lines()
                .any(|l| l.to_ascii_lowercase().starts_with("bcc:")),
            "{message}"
        );
        assert!(head.contains("Message-ID: <id@relay.test>"), "{head}");
        assert!(head.contains("\"Ops, Inc\" <ops@example.com>"), "{head}");
        assert!(message.lines().all(|l| l.len() <= 998));
    }

    #[test]
    fn members_that_are_not_implemented_or_wrong_are_named() {
        let error = build(json!({
            "Subject": {"Data": "s"},
            "Body": {"Text": {"Data": "b"}},
            "Headers": [{"Name": "Subject", "Value": "again"}]
        }))
        .expect_err("Subject is built");
        assert!(
            error.body()["message"]
                .as_str()
                .unwrap_or("")
                .contains("Subject")
        );
        let error = build(json!({"Subject": {"Data": "s"}, "Body": {}})).expect_err("no body");
        assert!(
            error.body()["message"]
                .as_str()
                .unwrap_or("")
                .contains("Text or Html")
        );
        let error = build(json!({
            "Subject": {"Data": "s"},
            "Body": {"Text": {"Data": "b"}},
            "Attachments": [{"RawContent": "not base64!", "FileName": "a"}]
        }))
        .expect_err("bad base64");
        assert!(
            error.body()["message"]
                .as_str()
                .unwrap_or("")
                .contains("base64")
        );
    }
}
