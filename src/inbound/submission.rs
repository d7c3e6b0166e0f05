//! A message handed over whole (the SESv2 API's SendEmail) rather than streamed by SMTP: it goes
//! through the same header filter, identity decision, classification, quota, spool commit, Send
//! event and queue as SMTP mail (see `accept`). Only the framing differs: there is no DATA
//! dot-stuffing, and bare LF line ends (common in raw messages built by programs) become CRLF.

use std::net::IpAddr;

use super::accept::{self, Client};
use super::context::InboundContext;
use super::head::HeadStage;
use super::headers::HeaderFilter;
use super::received::{Trace, received_header};
use super::refusal::{MAX_HOPS, Refusal};
use super::session::Transaction;
use crate::smtp::data::Violation;
use crate::spool::Recipient;

/// The longest line RFC 5322 allows, without its CRLF.
const MAX_LINE: usize = 998;

/// One message from the API.
pub struct Submission {
    /// From `crate::spool::new_message_id`, made by the caller so the message's own
    /// `Message-ID:` can carry it.
    pub id: String,
    pub client_ip: IpAddr,
    /// The access key that signed the request (named in the `Received:` field).
    pub key: String,
    /// The key's `allowed_configuration_sets` (`None`: any).
    pub allowed_sets: Option<Vec<String>>,
    /// The envelope sender (the return path before any VERP rewriting).
    pub sender: String,
    pub recipients: Vec<String>,
    /// `ConfigurationSetName`: wins over the message's own header.
    pub configuration_set: Option<String>,
    /// `EmailTags`, added to those of the message's `X-SES-MESSAGE-TAGS`.
    pub tags: Vec<(String, String)>,
    /// The message, header and body.
    pub content: Vec<u8>,
}

/// The content with every line ending in CRLF, or why it cannot be sent. Content that already
/// follows the rules (the usual case) is returned as it is, without a copy.
fn normalized(content: Vec<u8>, limit: u64) -> Result<Vec<u8>, Violation> {
    if content.len() as u64 > limit {
        return Err(Violation::TooBig);
    }
    let clean = content.split_inclusive(|b| *b == b'\n').all(|line| {
        line.len() <= MAX_LINE + 2
            && line.ends_with(b"\r\n")
            && !line[..line.len() - 2].contains(&b'\r')
    });
    if clean {
        return Ok(content);
    }
    let mut out = Vec::with_capacity(content.len() + content.len() / 50 + 2);
    for line in content.split_inclusive(|b| *b == b'\n') {
        let text = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if text.contains(&b'\r') {
            return Err(Violation::BareNewline);
        }
        if text.len() > MAX_LINE {
            return Err(Violation::LineTooLong);
        }
        out.extend_from_slice(text);
        out.extend_from_slice(b"\r\n");
        if out.len() as u64 > limit {
            return Err(Violation::TooBig);
        }
    }
    Ok(out)
}

/// A message without a `Message-ID:` field gets one naming its spool id, as SES gives every
/// message one (later bounces and complaints are matched by it).
fn with_message_id(content: Vec<u8>, id: &str, hostname: &str) -> Vec<u8> {
    let has_one = crate::smtp::header_fields::fields(&content).any(|f| f.is("message-id"));
    if has_one {
        return content;
    }
    let mut with = format!("Message-ID: <{id}@{hostname}>\r\n").into_bytes();
    with.extend_from_slice(&content);
    with
}

/// Spools and queues the message; the spool id on success (the `MessageId` the API answers and
/// every event carries).
pub async fn submit(ctx: &InboundContext, submission: Submission) -> Result<String, Refusal> {
    let limit = ctx.settings.max_message_bytes;
    let content = normalized(submission.content, limit).map_err(|v| Refusal::Content(v, limit))?;
    let id = submission.id.clone();
    let content = with_message_id(content, &id, &ctx.settings.hostname);
    let client = Client {
        ip: submission.client_ip,
        helo: "sesv2-api",
        user: Some(&submission.key),
        allowed_sets: submission.allowed_sets.as_deref(),
    };
    let trace = Trace {
        helo: client.helo,
        client_ip: client.ip,
        hostname: &ctx.settings.hostname,
        esmtp: true,
        id: &id,
        recipients: &submission.recipients,
        tls: None,
        authenticated: Some(&submission.key),
    };
    let mut writer = ctx.spool.writer();
    let mut filter = HeaderFilter::new();
    let mut head = HeadStage::new(received_header(&trace).into_bytes());
    head.feed(&mut filter, &content, &mut writer);
    head.finish_filter(&mut filter, &mut writer);
    let registry = ctx.registry.load_full();
    head.settle(registry.identities(), &filter, &mut writer);
    if filter.hops() > MAX_HOPS {
        return Err(Refusal::TooManyHops(filter.hops()));
    }
    let explicit = submission.configuration_set.as_deref();
    let classified = accept::classify(ctx, &client, explicit, &filter, head.decision())?;
    let ascii = |a: &String| a.is_ascii();
    let transaction = Transaction {
        smtputf8: !ascii(&submission.sender) || !submission.recipients.iter().all(ascii),
        sender: submission.sender.clone(),
        eight_bit_mime: !content.is_ascii(),
        envid: None,
        ret_full: false,
        recipients: submission
            .recipients
            .iter()
            .cloned()
            .map(Recipient::new)
            .collect(),
        feedback: false,
    };
    let mut envelope = accept::envelope(ctx, &client, &id, transaction, classified, &filter);
    envelope.tags.extend(submission.tags);
    let (held, signing) = head.finish();
    accept::accept(ctx, writer, envelope, held, &signing).await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ends_become_crlf_and_bad_content_is_named() {
        let norm = |bytes: &[u8], limit| normalized(bytes.to_vec(), limit);
        assert_eq!(
            norm(b"A: b\n\nbody\r\nmore", 100).as_deref(),
            Ok(&b"A: b\r\n\r\nbody\r\nmore\r\n"[..])
        );
        assert_eq!(
            norm(b"A: b\r\n\r\nclean\r\n", 100).as_deref(),
            Ok(&b"A: b\r\n\r\nclean\r\n"[..])
        );
        assert_eq!(norm(b"a\rb\r\n", 100), Err(Violation::BareNewline));
        assert_eq!(norm(b"a\r\r\n", 100), Err(Violation::BareNewline));
        let long = vec![b'x'; 999];
        assert_eq!(norm(&long, 10_000), Err(Violation::LineTooLong));
        let mut long_crlf = vec![b'x'; 999];
        long_crlf.extend_from_slice(b"\r\n");
        assert_eq!(norm(&long_crlf, 10_000), Err(Violation::LineTooLong));
        assert_eq!(norm(&[b'x'; 50], 10), Err(Violation::TooBig));
    }

    #[test]
    fn a_message_without_a_message_id_gets_one() {
        let added = with_message_id(b"Subject: s\r\n\r\nbody\r\n".to_vec(), "abc", "relay.test");
        assert!(added.starts_with(b"Message-ID: <abc@relay.test>\r\nSubject: s\r\n"));
        let own = b"Subject: s\r\nMessage-Id: <mine@x>\r\n\r\nbody\r\n".to_vec();
        assert_eq!(with_message_id(own.clone(), "abc", "relay.test"), own);
    }
}
