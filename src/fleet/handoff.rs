//! Forwarded mail on the wire between nodes: the message as spooled, preceded by its sealed
//! envelope. Pure: no I/O.
//!
//! ```text
//! X-Poolrelay-Handoff: v1 <HMAC-SHA256, base64url>
//!  <the envelope as JSON, base64url, in lines of 76>
//!  ...
//! <the message as the sending node spooled it>
//! ```
//!
//! The MAC covers the envelope's JSON and the SHA-256 of the message under the fleet's shared
//! secret, so only a node holding the secret can hand mail over, and neither the envelope (pool,
//! configuration set, recipients, DSN parameters, tags, message id) nor the message can be
//! changed on the way. The secret itself never crosses the wire.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::{digest, hmac};

use crate::spool::Envelope;

const FIELD: &str = "X-Poolrelay-Handoff: v1 ";
const CONTEXT: &[u8] = b"poolrelay-handoff-v1\n";

/// Why a handoff was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoffError {
    #[error("not a poolrelay handoff")]
    NotAHandoff,
    #[error("the handoff's seal does not match (another fleet secret, or changed on the way)")]
    BadSeal,
    #[error("the handoff's envelope is unreadable: {0}")]
    BadEnvelope(String),
}

fn mac(secret: &[u8], json: &[u8], content: &[u8]) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut context = hmac::Context::with_key(&key);
    context.update(CONTEXT);
    context.update(json);
    context.update(b"\n");
    context.update(digest::digest(&digest::SHA256, content).as_ref());
    context.sign()
}

/// The bytes that go before the message: the handoff field with the sealed envelope.
pub fn seal(secret: &[u8], envelope: &Envelope, content: &[u8]) -> Vec<u8> {
    // Serializing an envelope cannot fail: every field is plain data with string keys.
    let json = serde_json::to_vec(envelope).unwrap_or_default();
    let tag = mac(secret, &json, content);
    let mut out = Vec::with_capacity(json.len() * 4 / 3 + 128);
    out.extend_from_slice(FIELD.as_bytes());
    out.extend_from_slice(URL_SAFE_NO_PAD.encode(tag.as_ref()).as_bytes());
    out.extend_from_slice(b"\r\n");
    let encoded = URL_SAFE_NO_PAD.encode(&json);
    for chunk in encoded.as_bytes().chunks(76) {
        out.push(b' ');
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Checks a received handoff; returns the envelope and where the message starts in `data`.
pub fn open(secret: &[u8], data: &[u8]) -> Result<(Envelope, usize), HandoffError> {
    let first_end = memchr::memmem::find(data, b"\r\n").ok_or(HandoffError::NotAHandoff)?;
    let first = data[..first_end]
        .strip_prefix(FIELD.as_bytes())
        .ok_or(HandoffError::NotAHandoff)?;
    let tag = URL_SAFE_NO_PAD
        .decode(first)
        .map_err(|_| HandoffError::BadSeal)?;
    let mut encoded = Vec::new();
    let mut at = first_end + 2;
    while data.get(at) == Some(&b' ') {
        let end = memchr::memmem::find(&data[at..], b"\r\n").ok_or(HandoffError::NotAHandoff)?;
        encoded.extend_from_slice(&data[at + 1..at + end]);
        at += end + 2;
    }
    let json = URL_SAFE_NO_PAD
        .decode(&encoded)
        .map_err(|_| HandoffError::BadEnvelope("not base64url".into()))?;
    let content = &data[at..];
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut context = Vec::with_capacity(CONTEXT.len() + json.len() + 33);
    context.extend_from_slice(CONTEXT);
    context.extend_from_slice(&json);
    context.push(b'\n');
    context.extend_from_slice(digest::digest(&digest::SHA256, content).as_ref());
    hmac::verify(&key, &context, &tag).map_err(|_| HandoffError::BadSeal)?;
    let envelope: Envelope = serde_json::from_slice(&json)
        .map_err(|error| HandoffError::BadEnvelope(error.to_string()))?;
    Ok((envelope, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            id: "0001".into(),
            sender: "app@example.test".into(),
            recipients: (0..50)
                .map(|i| crate::spool::Recipient::new(format!("user{i}@example.test")))
                .collect(),
            configuration_set: Some("reset".into()),
            pool: "transactional".into(),
            tags: vec![("campaign".into(), "x".into())],
            ..Envelope::default()
        }
    }

    #[test]
    fn a_sealed_envelope_opens_with_the_same_secret_only() {
        let content = b"Subject: hi\r\n\r\nbody\r\n";
        let mut data = seal(b"0123456789abcdef", &envelope(), content);
        assert!(data.split(|&b| b == b'\n').all(|line| line.len() <= 998));
        data.extend_from_slice(content);
        let (opened, at) = open(b"0123456789abcdef", &data).unwrap();
        assert_eq!(opened, envelope());
        assert_eq!(&data[at..], content);
        assert_eq!(open(b"another secret!!", &data), Err(HandoffError::BadSeal));
    }

    #[test]
    fn a_changed_message_or_envelope_is_refused() {
        let content = b"Subject: hi\r\n\r\nbody\r\n";
        let mut data = seal(b"0123456789abcdef", &envelope(), content);
        data.extend_from_slice(content);
        let mut changed_body = data.clone();
        let last = changed_body.len() - 3;
        changed_body[last] = b'X';
        assert_eq!(
            open(b"0123456789abcdef", &changed_body),
            Err(HandoffError::BadSeal)
        );
        let mut changed_envelope = data.clone();
        let second_line = memchr::memmem::find(&data, b"\r\n ").unwrap() + 5;
        changed_envelope[second_line] ^= 1;
        assert!(open(b"0123456789abcdef", &changed_envelope).is_err());
        assert_eq!(
            open(b"k", b"Subject: x\r\n\r\n"),
            Err(HandoffError::NotAHandoff)
        );
    }
}
