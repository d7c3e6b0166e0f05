//! The `From:` address a message is signed for, read from its header block with mail-parser.
//!
//! Only a header block with exactly one `From:` field holding exactly one mailbox names an
//! identity; anything else is left unsigned, with the reason in the log.

use mail_parser::{HeaderName, MessageParser};

use crate::smtp::header_fields::fields;

/// Why a message's `From:` names no identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FromProblem {
    #[error("the message has no From: field")]
    Missing,
    #[error("the message has more than one From: field")]
    Repeated,
    #[error("the From: field holds no address that can be read")]
    Unparsable,
    #[error("the From: field holds more than one mailbox")]
    SeveralMailboxes,
}

/// The single `From:` address of a header block, lower-cased, its domain as an A-label.
pub fn from_address(head: &[u8]) -> Result<String, FromProblem> {
    // Only the From: fields are parsed: a message has dozens of others, and this runs for
    // every message.
    let mut from = fields(head).filter(|field| field.is("from"));
    let field = match (from.next(), from.next()) {
        (None, _) => return Err(FromProblem::Missing),
        (Some(field), None) => field.raw,
        (Some(_), Some(_)) => return Err(FromProblem::Repeated),
    };
    let mut alone = field.to_vec();
    if !alone.ends_with(b"\n") {
        alone.extend_from_slice(b"\r\n");
    }
    alone.extend_from_slice(b"\r\n");
    let message = MessageParser::new()
        .parse_headers(&alone)
        .ok_or(FromProblem::Unparsable)?;
    if !message.headers().iter().any(|h| h.name == HeaderName::From) {
        return Err(FromProblem::Unparsable);
    }
    let address = message.from().ok_or(FromProblem::Unparsable)?;
    let mut mailboxes = address.iter();
    let mailbox = mailboxes.next().ok_or(FromProblem::Unparsable)?;
    if mailboxes.next().is_some() {
        return Err(FromProblem::SeveralMailboxes);
    }
    let text = mailbox.address().ok_or(FromProblem::Unparsable)?;
    let (local, domain) = text.rsplit_once('@').ok_or(FromProblem::Unparsable)?;
    let bad = |s: &str| s.is_empty() || s.chars().any(|c| c.is_control() || c.is_whitespace());
    if bad(local) || bad(domain) {
        return Err(FromProblem::Unparsable);
    }
    Ok(format!(
        "{}@{}",
        local.to_lowercase(),
        crate::domain::to_ascii(domain)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mailbox_in_one_field() {
        let head = b"From: \"News\" <News@Example.COM>\r\nTo: a@b.test\r\n\r\n";
        assert_eq!(from_address(head).unwrap(), "news@example.com");
        let unicode = "From: x@bücher.test\r\n\r\n";
        assert_eq!(
            from_address(unicode.as_bytes()).unwrap(),
            "x@xn--bcher-kva.test"
        );
    }

    #[test]
    fn missing_repeated_and_unreadable_fields_say_why() {
        assert_eq!(
            from_address(b"To: a@b.test\r\n\r\n"),
            Err(FromProblem::Missing)
        );
        assert_eq!(
            from_address(b"From: a@b.test\r\nFrom: c@d.test\r\n\r\n"),
            Err(FromProblem::Repeated)
        );
        assert_eq!(
            from_address(b"From: a@b.test, c@d.test\r\n\r\n"),
            Err(FromProblem::SeveralMailboxes)
        );
        assert_eq!(
            from_address(b"From: nobody\r\n\r\n"),
            Err(FromProblem::Unparsable)
        );
        assert_eq!(
            from_address(b"Subject: x\r\n\r\nFrom: in the body <a@b.test>\r\n"),
            Err(FromProblem::Missing)
        );
        assert_eq!(
            from_address(b"FROM : \"A\"\r\n <a@Folded.test>\r\nX-From: b@c.test\r\n\r\n").unwrap(),
            "a@folded.test"
        );
    }

    proptest::proptest! {
        /// Any header block gives an address or a reason, never a panic.
        #[test]
        fn any_header_block_gives_an_answer(
            head in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        ) {
            let mut with_from = b"From: ".to_vec();
            with_from.extend_from_slice(&head);
            let _ = from_address(&head);
            let _ = from_address(&with_from);
        }
    }
}
