//! Which sent message and which of its recipients a report is about.
//!
//! A signed return-path token settles it: from the address the report was sent to, else from
//! the report itself (the ARF `Original-Mail-From`, the returned message's `Return-Path`, or any
//! token in its text — each one checked against its HMAC). Without a token, the returned
//! message's `Message-ID` finds the message, and the recipient must be one the report names
//! (`Original-Rcpt-To`, `Final-Recipient`) or the message's only one. Nothing else is guessed.

use super::report::{Original, Report};
use crate::ledger::sent::SentRecord;
use crate::ledger::{Ledger, LedgerError};
use crate::return_path::{ReturnPath, TokenTarget};

/// Tokens looked for in a report's text at most.
const MAX_CANDIDATES: usize = 64;

/// A report's message and the indexes of its recipients the report is about.
#[derive(Debug, Clone)]
pub struct Matched {
    pub record: SentRecord,
    pub recipients: Vec<usize>,
}

/// Why a report matched nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    Unreadable,
    /// No token and no `Message-ID` of a message the relay sent.
    UnknownMessage,
    /// The message is known, but not which recipient.
    NoRecipient,
    /// A success notification, not a bounce.
    NotABounce,
    /// The report names a return path whose signature is wrong or whose time is past: it is
    /// not trusted at all (not even by its `Message-ID`).
    BadToken,
}

impl Unmatched {
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Unreadable => "unreadable",
            Self::UnknownMessage => "unknown_message",
            Self::NoRecipient => "no_recipient",
            Self::NotABounce => "not_a_bounce",
            Self::BadToken => "bad_token",
        }
    }
}

/// The return paths a report names.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// Valid tokens naming what the report is about.
    pub valid: Vec<TokenTarget>,
    /// Some address at the bounce domain in it was not a valid token.
    pub bad: bool,
}

/// The tokens naming what `report` is about: from the envelope recipients first, else from the
/// report's fields, else from its text.
pub fn tokens(
    return_path: &ReturnPath,
    recipients: &[String],
    report: &Report,
    raw: &[u8],
    now: u64,
) -> Tokens {
    let from_envelope: Vec<TokenTarget> = recipients
        .iter()
        .filter_map(|r| return_path.read_address(r, now).and_then(Result::ok))
        .collect();
    if !from_envelope.is_empty() {
        return Tokens {
            valid: from_envelope,
            bad: false,
        };
    }
    let mut bad = false;
    let mut valid = |address: &str| match return_path.read_address(address, now) {
        Some(Ok(target)) => Some(target),
        Some(Err(_)) => {
            bad = true;
            None
        }
        None => None,
    };
    let named = match report {
        Report::Complaint(c) => vec![
            c.original_mail_from.as_deref(),
            c.original.return_path.as_deref(),
        ],
        Report::Bounce(b) => vec![b.original.return_path.as_deref()],
        Report::Unreadable => Vec::new(),
    };
    let from_fields: Vec<TokenTarget> =
        named.into_iter().flatten().filter_map(&mut valid).collect();
    if !from_fields.is_empty() {
        return Tokens {
            valid: from_fields,
            bad: false,
        };
    }
    let from_text: Vec<TokenTarget> = candidates_in(raw, return_path.domain())
        .iter()
        .filter_map(|candidate| valid(candidate))
        .take(1)
        .collect();
    Tokens {
        bad: bad && from_text.is_empty(),
        valid: from_text,
    }
}

/// Addresses at `domain` in `raw` that look like return paths (`b-...@domain`).
fn candidates_in(raw: &[u8], domain: &str) -> Vec<String> {
    let domain_bytes = domain.as_bytes();
    let mut found = Vec::new();
    // Each `@` followed by the domain (any case); no lower-cased copy of a report that may be
    // tens of megabytes.
    for at in memchr::memchr_iter(b'@', raw) {
        let after = &raw[at + 1..];
        let at_domain = after.len() >= domain_bytes.len()
            && after[..domain_bytes.len()].eq_ignore_ascii_case(domain_bytes);
        if !at_domain {
            continue;
        }
        let start = raw[..at]
            .iter()
            .rposition(|b| !(b.is_ascii_alphanumeric() || *b == b'-'))
            .map_or(0, |p| p + 1);
        let local = &raw[start..at];
        if local.len() < 64
            && local
                .get(..2)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"b-"))
        {
            let local = String::from_utf8_lossy(local).to_ascii_lowercase();
            found.push(format!("{local}@{domain}"));
            if found.len() == MAX_CANDIDATES {
                break;
            }
        }
    }
    found
}

/// Blocking: finds the message and recipients `report` is about.
pub fn find(
    ledger: &Ledger,
    report: &Report,
    found: &Tokens,
) -> Result<Result<Matched, Unmatched>, LedgerError> {
    if found.bad {
        return Ok(Err(Unmatched::BadToken));
    }
    let tokens = &found.valid;
    if let Some(first) = tokens.first() {
        let Some(record) = ledger.sent(&first.message_id)? else {
            return Ok(Err(Unmatched::UnknownMessage));
        };
        let mut recipients: Vec<usize> = tokens
            .iter()
            .filter(|t| t.message_id == first.message_id && t.recipient < record.recipients.len())
            .map(|t| t.recipient)
            .collect();
        recipients.dedup();
        if recipients.is_empty() {
            return Ok(Err(Unmatched::NoRecipient));
        }
        return Ok(Ok(Matched { record, recipients }));
    }
    let (original, named): (&Original, Vec<&str>) = match report {
        Report::Complaint(c) => (
            &c.original,
            c.original_rcpt_to.iter().map(String::as_str).collect(),
        ),
        Report::Bounce(b) => (
            &b.original,
            b.recipients
                .iter()
                .filter_map(|r| r.final_recipient.as_deref())
                .collect(),
        ),
        Report::Unreadable => return Ok(Err(Unmatched::Unreadable)),
    };
    let Some(message_id) = &original.message_id else {
        return Ok(Err(Unmatched::UnknownMessage));
    };
    let Some(record) = ledger.sent_by_header(message_id)? else {
        return Ok(Err(Unmatched::UnknownMessage));
    };
    let mut recipients: Vec<usize> = record
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| named.iter().any(|n| n.eq_ignore_ascii_case(&r.address)))
        .map(|(i, _)| i)
        .collect();
    if recipients.is_empty() && named.is_empty() && record.recipients.len() == 1 {
        recipients.push(0);
    }
    if recipients.is_empty() {
        return Ok(Err(Unmatched::NoRecipient));
    }
    Ok(Ok(Matched { record, recipients }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_candidates_are_found_in_text_in_any_case() {
        let raw = b"Return-Path: <B-ABC123@Bounce.Example.Test>\r\nTo: x-b-no@bounce.example.test.evil\r\n\
                    other@bounce.example.test";
        let found = candidates_in(raw, "bounce.example.test");
        assert_eq!(found[0], "b-abc123@bounce.example.test");
        assert!(found.iter().all(|f| f.starts_with("b-")));
    }
}
