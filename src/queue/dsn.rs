//! Delivery status notifications (RFC 3464): the bounce a sender gets when recipients fail.
//!
//! A DSN is a `multipart/report; report-type=delivery-status` message with a human-readable part,
//! a `message/delivery-status` part (Reporting-MTA, then per recipient Final-Recipient, Action,
//! Status, Remote-MTA and Diagnostic-Code with the remote reply) and the original headers (or the
//! whole original message with `RET=FULL`). It is sent with an empty reverse path (`MAIL FROM:<>`),
//! so it can never bounce in turn. Building it is pure; the queue spools and sends it.

use crate::smtp::address;
use chrono::{DateTime, Utc};

/// One recipient reported in a DSN.
#[derive(Debug, Clone)]
pub struct Reported {
    pub address: String,
    pub original_recipient: Option<String>,
    /// `failed` or `delivered`.
    pub action: &'static str,
    pub status: String,
    pub remote_mta: Option<String>,
    pub diagnostic: String,
}

/// Everything a DSN says.
pub struct DsnRequest<'a> {
    pub reporting_mta: &'a str,
    pub original_sender: &'a str,
    pub original_id: &'a str,
    pub envid: Option<&'a str>,
    pub arrival: u64,
    pub recipients: &'a [Reported],
    /// The original headers, or the whole original message when `full`.
    pub original: &'a [u8],
    pub full: bool,
    /// A unique token for the MIME boundary and Message-ID.
    pub token: &'a str,
}

/// The enhanced status code in a reply (`550 5.1.1 ...` gives `5.1.1`), or a default by class.
pub fn status_of(reply: &str) -> String {
    let mut words = reply.split_whitespace();
    let code = words.next().unwrap_or_default();
    if let Some(candidate) = words.next() {
        let parts: Vec<&str> = candidate.split('.').collect();
        if parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
            && matches!(parts[0], "2" | "4" | "5")
        {
            return candidate.to_string();
        }
    }
    match code.as_bytes().first() {
        Some(b'2') => "2.0.0".into(),
        Some(b'4') => "4.0.0".into(),
        _ => "5.0.0".into(),
    }
}

/// Only printable ASCII and no line breaks: a remote reply must not be able to add header lines.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn rfc5322_date(unix: u64) -> String {
    DateTime::<Utc>::from_timestamp(unix as i64, 0)
        .unwrap_or_default()
        .to_rfc2822()
}

/// The complete DSN message (headers and body, CRLF line ends).
pub fn build(request: &DsnRequest<'_>) -> Vec<u8> {
    let boundary = format!("poolrelay-dsn-{}", request.token);
    let failed = request.recipients.iter().any(|r| r.action == "failed");
    let mut out = String::new();
    headers(&mut out, request, failed, &boundary);
    notification(&mut out, request, failed, &boundary);
    delivery_status(&mut out, request, &boundary);
    let (description, content_type) = if request.full {
        ("Undelivered Message", "message/rfc822")
    } else {
        ("Undelivered Message Headers", "text/rfc822-headers")
    };
    out.push_str(&format!(
        "--{boundary}\r\nContent-Description: {description}\r\nContent-Type: {content_type}\r\n\r\n"
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(request.original);
    if !request.original.ends_with(b"\r\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    bytes
}

/// The DSN's own header block, from the postmaster to the original sender.
fn headers(out: &mut String, request: &DsnRequest<'_>, failed: bool, boundary: &str) {
    let subject = if failed {
        "Undelivered Mail Returned to Sender"
    } else {
        "Successful Mail Delivery Report"
    };
    out.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{}>\r\n",
        request.reporting_mta
    ));
    let to = address::for_the_wire(request.original_sender);
    out.push_str(&format!("To: <{}>\r\n", clean(&to)));
    out.push_str(&format!("Subject: {subject}\r\n"));
    out.push_str(&format!("Date: {}\r\n", Utc::now().to_rfc2822()));
    out.push_str(&format!(
        "Message-ID: <{}.dsn@{}>\r\n",
        request.token, request.reporting_mta
    ));
    out.push_str("Auto-Submitted: auto-replied\r\n");
    out.push_str("MIME-Version: 1.0\r\n");
    out.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\n"
    ));
    out.push_str("This is a MIME-encapsulated message.\r\n\r\n");
}

/// The first part: the explanation a person reads.
fn notification(out: &mut String, request: &DsnRequest<'_>, failed: bool, boundary: &str) {
    out.push_str(&format!("--{boundary}\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"));
    out.push_str(&format!(
        "This is the mail system at host {}.\r\n\r\n",
        request.reporting_mta
    ));
    if failed {
        out.push_str("Your message could not be delivered to one or more recipients.\r\nThe reasons are given below.\r\n\r\n");
    } else {
        out.push_str(
            "Your message was delivered to the recipients below, as you asked to be told.\r\n\r\n",
        );
    }
    for recipient in request.recipients {
        out.push_str(&format!(
            "<{}>: {}\r\n",
            clean(&recipient.address),
            clean(&recipient.diagnostic)
        ));
    }
    out.push_str("\r\n");
}

/// The second part: `message/delivery-status` (RFC 3464), one block per recipient.
fn delivery_status(out: &mut String, request: &DsnRequest<'_>, boundary: &str) {
    out.push_str(&format!("--{boundary}\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n"));
    out.push_str(&format!(
        "Reporting-MTA: dns; {}\r\n",
        request.reporting_mta
    ));
    out.push_str(&format!(
        "X-Poolrelay-Queue-ID: {}\r\n",
        request.original_id
    ));
    if let Some(envid) = request.envid {
        out.push_str(&format!("Original-Envelope-Id: {}\r\n", clean(envid)));
    }
    out.push_str(&format!(
        "Arrival-Date: {}\r\n",
        rfc5322_date(request.arrival)
    ));
    for recipient in request.recipients {
        out.push_str("\r\n");
        if let Some(original) = &recipient.original_recipient {
            out.push_str(&format!("Original-Recipient: {}\r\n", clean(original)));
        }
        out.push_str(&format!(
            "Final-Recipient: rfc822; {}\r\n",
            clean(&address::for_the_wire(&recipient.address))
        ));
        out.push_str(&format!("Action: {}\r\n", recipient.action));
        out.push_str(&format!("Status: {}\r\n", clean(&recipient.status)));
        if let Some(remote) = &recipient.remote_mta {
            out.push_str(&format!("Remote-MTA: dns; {}\r\n", clean(remote)));
        }
        out.push_str(&format!(
            "Diagnostic-Code: smtp; {}\r\n",
            clean(&recipient.diagnostic)
        ));
    }
    out.push_str("\r\n");
}

/// The header block of a message (up to and including the blank line), at most `limit` bytes.
pub fn header_block(content: &[u8], limit: usize) -> &[u8] {
    let end = memchr::memmem::find(content, b"\r\n\r\n").map_or(content.len(), |at| at + 4);
    &content[..end.min(limit)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_from_replies() {
        assert_eq!(status_of("550 5.1.1 No such user"), "5.1.1");
        assert_eq!(status_of("554 no enhanced code"), "5.0.0");
        assert_eq!(status_of("451 4.4.1 connection refused"), "4.4.1");
        assert_eq!(status_of("250 2.0.0 Ok"), "2.0.0");
        assert_eq!(status_of("550 9.9.9 odd"), "5.0.0");
    }

    #[test]
    fn a_dsn_is_a_well_formed_report() {
        let recipients = [Reported {
            address: "gone@example.test".into(),
            original_recipient: Some("rfc822;Gone@Example.test".into()),
            action: "failed",
            status: "5.1.1".into(),
            remote_mta: Some("mx.example.test".into()),
            diagnostic: "550 5.1.1 No such user\r\nInjected: header".into(),
        }];
        let original = b"From: a@example.test\r\nSubject: hello\r\n\r\n";
        let dsn = build(&DsnRequest {
            reporting_mta: "relay.test",
            original_sender: "a@example.test",
            original_id: "abc",
            envid: Some("env-1"),
            arrival: 0,
            recipients: &recipients,
            original,
            full: false,
            token: "t1",
        });
        let text = String::from_utf8(dsn.clone()).unwrap();
        assert!(text.contains("Content-Type: multipart/report; report-type=delivery-status;"));
        assert!(text.contains(
            "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.test\r\n"
        ));
        assert!(text.contains(
            "Final-Recipient: rfc822; gone@example.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        ));
        assert!(
            text.contains("Diagnostic-Code: smtp; 550 5.1.1 No such user??Injected: header\r\n")
        );
        assert!(text.contains("Original-Envelope-Id: env-1\r\n"));
        assert!(text.contains("Original-Recipient: rfc822;Gone@Example.test\r\n"));
        assert!(text.contains(
            "Content-Type: text/rfc822-headers\r\n\r\nFrom: a@example.test\r\nSubject: hello\r\n"
        ));
        assert!(text.ends_with("--poolrelay-dsn-t1--\r\n"));
        // Parses as MIME with three parts.
        let parsed = mail_parser::MessageParser::new().parse(&dsn[..]).unwrap();
        assert_eq!(parsed.parts.len(), 4, "the report and its three parts");
        for (i, &b) in dsn.iter().enumerate() {
            if b == b'\n' {
                assert_eq!(dsn[i - 1], b'\r');
            }
        }
    }

    #[test]
    fn header_block_stops_at_the_blank_line() {
        assert_eq!(header_block(b"A: b\r\n\r\nbody", 100), b"A: b\r\n\r\n");
        assert_eq!(header_block(b"A: b\r\nno body", 100), b"A: b\r\nno body");
        assert_eq!(header_block(b"A: b\r\n\r\nbody", 3), b"A: ");
    }
}
