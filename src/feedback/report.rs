//! Reading a bounce or an abuse report, whatever its layout: RFC 3464 delivery status
//! notifications, RFC 5965 feedback reports (ARF), and the plain-text bounces some servers still
//! send. Pure: bytes in, a [`Report`] out; nothing here decides which message it is about.
//!
//! MIME is parsed by mail-parser (which walks nested multiparts without recursion, and nested
//! messages only three deep); the field blocks inside by `fields`.

use mail_parser::{Message, MessageParser, MimeHeaders};

use super::fields::{self, FieldBlock, angle_address};

/// One recipient block of a DSN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DsnRecipient {
    pub final_recipient: Option<String>,
    pub action: Option<String>,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
}

/// What the headers of a returned original message say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Original {
    pub message_id: Option<String>,
    pub return_path: Option<String>,
}

/// A bounce: from a DSN, or read out of plain text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BounceReport {
    /// `Reporting-MTA` without its type.
    pub reporting_mta: Option<String>,
    /// The DSN's recipient blocks; for a plain-text bounce, one block built from its reply.
    pub recipients: Vec<DsnRecipient>,
    pub original: Original,
    /// True for an RFC 3464 report, false for one read from text.
    pub standard: bool,
}

/// An abuse (or other feedback) report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComplaintReport {
    /// `Feedback-Type` (`abuse`, `fraud`, ...), lower-case.
    pub feedback_type: String,
    pub user_agent: Option<String>,
    pub arrival_date: Option<String>,
    pub original_mail_from: Option<String>,
    pub original_rcpt_to: Vec<String>,
    pub original: Original,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Bounce(BounceReport),
    Complaint(ComplaintReport),
    /// Not MIME that can be read at all.
    Unreadable,
}

/// SES's complaint feedback types; anything else is `other`.
const FEEDBACK_TYPES: [&str; 6] = [
    "abuse",
    "auth-failure",
    "fraud",
    "not-spam",
    "other",
    "virus",
];

/// Reads `raw` (a whole message as received).
pub fn parse(raw: &[u8]) -> Report {
    let Some(message) = MessageParser::default().parse(raw) else {
        return Report::Unreadable;
    };
    let mut delivery_status: Option<Vec<FieldBlock>> = None;
    let mut feedback: Option<FieldBlock> = None;
    let mut original = Original::default();
    let mut text: Option<String> = None;
    for part in message.parts.iter().skip(1).chain(message.parts.first()) {
        let (ctype, subtype) = part
            .content_type()
            .map(|c| {
                let sub = c.subtype().unwrap_or_default().to_ascii_lowercase();
                (c.ctype().to_ascii_lowercase(), sub)
            })
            .unwrap_or_else(|| ("text".into(), "plain".into()));
        match (ctype.as_str(), subtype.as_str()) {
            ("message", "delivery-status" | "global-delivery-status") => {
                let body = String::from_utf8_lossy(part.contents());
                delivery_status.get_or_insert_with(|| fields::blocks(&body));
            }
            ("message", "feedback-report") => {
                let body = String::from_utf8_lossy(part.contents());
                feedback.get_or_insert_with(|| {
                    fields::blocks(&body).into_iter().next().unwrap_or_default()
                });
            }
            ("message", "rfc822" | "global") => {
                if let Some(inner) = part.message() {
                    original = original_of(inner);
                }
            }
            ("text", "rfc822-headers" | "rfc822-header") => {
                let body = String::from_utf8_lossy(part.contents());
                if let Some(block) = fields::blocks(&body).into_iter().next() {
                    original = Original {
                        message_id: block.get("message-id").map(str::to_string),
                        return_path: block
                            .get("return-path")
                            .map(|v| angle_address(v).to_string()),
                    };
                }
            }
            ("text", "plain") if text.is_none() && !part.is_multipart() => {
                text = part.text_contents().map(str::to_string);
            }
            _ => {}
        }
    }
    if let Some(block) = feedback {
        return Report::Complaint(complaint(&block, original));
    }
    if let Some(blocks) = delivery_status {
        return Report::Bounce(delivery_status_report(&blocks, original));
    }
    Report::Bounce(plain_bounce(
        text.as_deref().unwrap_or(""),
        &message,
        original,
    ))
}

fn original_of(inner: &Message<'_>) -> Original {
    Original {
        message_id: inner.header_raw("Message-ID").map(|v| v.trim().to_string()),
        return_path: inner
            .header_raw("Return-Path")
            .map(|v| angle_address(v).to_string()),
    }
}

fn complaint(block: &FieldBlock, original: Original) -> ComplaintReport {
    let feedback_type = block
        .get("feedback-type")
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| FEEDBACK_TYPES.contains(&t.as_str()))
        .unwrap_or_else(|| "other".into());
    ComplaintReport {
        feedback_type,
        user_agent: block.get("user-agent").map(str::to_string),
        arrival_date: block
            .get("arrival-date")
            .or(block.get("received-date"))
            .map(str::to_string),
        original_mail_from: block
            .get("original-mail-from")
            .map(|v| angle_address(v).to_string()),
        original_rcpt_to: block
            .all("original-rcpt-to")
            .map(|v| angle_address(v).to_string())
            .collect(),
        original,
    }
}

fn delivery_status_report(blocks: &[FieldBlock], original: Original) -> BounceReport {
    let reporting_mta = blocks
        .first()
        .and_then(|b| b.typed("reporting-mta"))
        .map(str::to_string);
    let recipients = blocks
        .iter()
        .filter(|b| b.get("final-recipient").is_some() || b.get("action").is_some())
        .map(|b| DsnRecipient {
            final_recipient: b
                .typed("final-recipient")
                .map(|a| angle_address(a).to_string()),
            action: b.get("action").map(|a| a.to_ascii_lowercase()),
            status: b
                .get("status")
                .map(|s| status_code(s).unwrap_or(s).to_string()),
            diagnostic: b.get("diagnostic-code").map(str::to_string),
        })
        .collect();
    BounceReport {
        reporting_mta,
        recipients,
        original,
        standard: true,
    }
}

/// A bounce that is not a DSN: the first SMTP reply in its text (`550 5.1.1 ...`, or `550`
/// alone, or a status code alone) is what it says. Addresses in the text are never used.
fn plain_bounce(text: &str, message: &Message<'_>, original: Original) -> BounceReport {
    let reply = find_reply(text);
    let recipient = DsnRecipient {
        final_recipient: None,
        action: reply.as_ref().map(|r| {
            if r.code.starts_with('4') {
                "delayed".to_string()
            } else {
                "failed".to_string()
            }
        }),
        status: reply
            .as_ref()
            .and_then(|r| r.status.clone())
            .or_else(|| reply.as_ref().map(|r| format!("{}.0.0", &r.code[..1]))),
        diagnostic: reply.map(|r| r.line),
    };
    let reporting_mta = message
        .from()
        .and_then(|from| from.first())
        .and_then(|addr| addr.address())
        .and_then(|a| a.rsplit_once('@').map(|(_, d)| d.to_string()));
    BounceReport {
        reporting_mta,
        recipients: vec![recipient],
        original,
        standard: false,
    }
}

struct FoundReply {
    code: String,
    status: Option<String>,
    line: String,
}

/// The first `4xx`/`5xx` reply in `text`, with its enhanced status code if one follows it.
fn find_reply(text: &str) -> Option<FoundReply> {
    for line in text.lines().take(2000) {
        let words: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || matches!(c, ':' | '(' | ')' | '<' | '>' | ';'))
            .filter(|w| !w.is_empty())
            .collect();
        for (i, word) in words.iter().enumerate() {
            // `550-5.1.1` (a continued reply) carries its status in the same word.
            let (code, joined) = word.split_once('-').unwrap_or((word, ""));
            let is_code = code.len() == 3
                && code.bytes().all(|b| b.is_ascii_digit())
                && matches!(code.as_bytes()[0], b'4' | b'5');
            if !is_code {
                continue;
            }
            let next = if joined.is_empty() {
                words.get(i + 1).copied()
            } else {
                Some(joined)
            };
            let status = next
                .and_then(status_code)
                .filter(|s| s.as_bytes()[0] == code.as_bytes()[0])
                .map(str::to_string);
            let line: String = line.trim().chars().take(500).collect();
            return Some(FoundReply {
                code: code.to_string(),
                status,
                line,
            });
        }
    }
    None
}

/// `5.1.1` at the start of `text` (class 2, 4 or 5; subject and detail of 1-3 digits).
fn status_code(text: &str) -> Option<&str> {
    let candidate = text
        .trim()
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()?;
    let mut parts = candidate.split('.');
    let class = parts.next()?;
    let ok = matches!(class, "2" | "4" | "5")
        && parts.clone().count() == 2
        && parts.all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    ok.then_some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_found_in_text() {
        let found =
            find_reply("host mx.example.test said: 550-5.1.1 The email account does not exist")
                .unwrap();
        assert_eq!(found.code, "550");
        assert_eq!(found.status.as_deref(), Some("5.1.1"));
        let no_status =
            find_reply("SMTP error from remote mail server after RCPT TO:<a@b>: 550 unrouteable")
                .unwrap();
        assert_eq!(no_status.status, None);
        assert!(find_reply("nothing here, 200 OK, 6xx").is_none());
        // A status whose class differs from the reply's is not taken.
        assert_eq!(find_reply("451 5.1.1 odd").unwrap().status, None);
        assert_eq!(status_code("5.1.10 (bad)"), Some("5.1.10"));
        assert_eq!(status_code("5.1"), None);
        assert_eq!(status_code("9.1.1"), None);
    }

    #[test]
    fn garbage_is_unreadable_or_undetermined() {
        for input in [&b""[..], b"\xff\xfe\x00", b"Subject: hi\r\n\r\nhello"] {
            match parse(input) {
                Report::Unreadable => {}
                Report::Bounce(bounce) => {
                    assert!(!bounce.standard);
                    assert_eq!(bounce.recipients[0].status, None);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    /// A fixture from `tests/fixtures/feedback` with its placeholders filled, CRLF line ends.
    fn fixture(text: &str) -> Vec<u8> {
        text.replace("{{TO}}", "b-abc@bounce.example.test")
            .replace("{{RP}}", "b-abc@bounce.example.test")
            .replace("{{RCPT}}", "rcpt@dest.test")
            .replace("{{MSGID}}", "<m1@sender.test>")
            .replace('\n', "\r\n")
            .into_bytes()
    }

    fn bounce_of(text: &str) -> (BounceReport, Option<(&'static str, &'static str)>) {
        let Report::Bounce(bounce) = parse(&fixture(text)) else {
            panic!("not a bounce");
        };
        let first = bounce.recipients[0].clone();
        let kind = crate::events::bounce_type::BounceKind::from_status(
            first.action.as_deref(),
            first.status.as_deref(),
        )
        .map(|k| (k.bounce_type.as_ses(), k.sub_type.as_ses()));
        (bounce, kind)
    }

    #[test]
    fn real_world_layouts_are_read() {
        let (postfix, kind) = bounce_of(include_str!(
            "../../tests/fixtures/feedback/postfix-user-unknown.eml"
        ));
        assert!(postfix.standard);
        assert_eq!(kind, Some(("Permanent", "NoEmail")));
        assert_eq!(postfix.reporting_mta.as_deref(), Some("mx.dest.test"));
        assert_eq!(
            postfix.recipients[0].final_recipient.as_deref(),
            Some("rcpt@dest.test")
        );
        assert_eq!(
            postfix.original.message_id.as_deref(),
            Some("<m1@sender.test>")
        );
        assert_eq!(
            postfix.original.return_path.as_deref(),
            Some("b-abc@bounce.example.test")
        );
        let (_, kind) = bounce_of(include_str!(
            "../../tests/fixtures/feedback/postfix-delayed.eml"
        ));
        assert_eq!(kind, Some(("Transient", "General")));
        let (gmail, kind) = bounce_of(include_str!(
            "../../tests/fixtures/feedback/gmail-inbox-full.eml"
        ));
        assert_eq!(kind, Some(("Transient", "MailboxFull")));
        assert_eq!(
            gmail.original.message_id.as_deref(),
            Some("<m1@sender.test>")
        );
        let (microsoft, kind) = bounce_of(include_str!(
            "../../tests/fixtures/feedback/microsoft-recipient-not-found.eml"
        ));
        assert_eq!(kind, Some(("Permanent", "NoEmail")));
        assert_eq!(
            microsoft.original.return_path.as_deref(),
            Some("b-abc@bounce.example.test")
        );
        let (exim, kind) = bounce_of(include_str!(
            "../../tests/fixtures/feedback/exim-unrouteable.eml"
        ));
        assert!(!exim.standard);
        assert_eq!(kind, Some(("Permanent", "General")));
        assert!(
            exim.recipients[0].final_recipient.is_none(),
            "no address is read from text"
        );
        assert!(
            exim.recipients[0]
                .diagnostic
                .as_deref()
                .is_some_and(|d| d.contains("550 Unrouteable"))
        );
    }

    #[test]
    fn abuse_reports_are_read() {
        let Report::Complaint(arf) = parse(&fixture(include_str!(
            "../../tests/fixtures/feedback/arf-abuse.eml"
        ))) else {
            panic!("not a complaint");
        };
        assert_eq!(arf.feedback_type, "abuse");
        assert_eq!(arf.user_agent.as_deref(), Some("SomeGenerator/1.0"));
        assert_eq!(
            arf.original_mail_from.as_deref(),
            Some("b-abc@bounce.example.test")
        );
        assert_eq!(arf.original_rcpt_to, ["rcpt@dest.test"]);
        assert_eq!(arf.original.message_id.as_deref(), Some("<m1@sender.test>"));
        let Report::Complaint(headers_only) = parse(&fixture(include_str!(
            "../../tests/fixtures/feedback/arf-headers-only.eml"
        ))) else {
            panic!("not a complaint");
        };
        assert!(
            headers_only.original_mail_from.is_none() && headers_only.original_rcpt_to.is_empty()
        );
        assert_eq!(
            headers_only.original.message_id.as_deref(),
            Some("<m1@sender.test>")
        );
    }
}
