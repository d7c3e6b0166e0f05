//! Signing one message: which fields are signed, and the `DKIM-Signature` field itself
//! (relaxed/relaxed, computed by mail-auth over the content as the spool hands it over).

use std::borrow::Cow;
use std::io;
use std::sync::Arc;

use mail_auth::common::crypto::{Algorithm, Sha256, SigningKey};
use mail_auth::common::headers::Writable;
use mail_auth::dkim::{Canonicalization, DkimSigner};

use super::key::DkimKey;
use super::relaxed_body::RelaxedBody;
use crate::smtp::header_fields::fields;

/// The fields signed when present (SES's list, plus the list and feedback fields receivers
/// look at). `From` is signed once more than it occurs, so a `From:` added on the way breaks
/// the signature.
pub const SIGNED_FIELDS: [&str; 15] = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
];

/// What signs one message: the identity's domain (`d=`), selector (`s=`) and key.
#[derive(Debug, Clone)]
pub struct Signer {
    /// The identity that covers the message's `From:` (for logs).
    pub identity: String,
    pub domain: String,
    pub selector: String,
    pub key: Arc<DkimKey>,
}

/// mail-auth signs through this: the key is shared by every message of the identity.
struct SharedKey(Arc<DkimKey>);

impl SigningKey for SharedKey {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

impl Signer {
    /// The fields of `head` to sign: those of [`SIGNED_FIELDS`] that are present, with `From`
    /// once more.
    pub fn fields_to_sign(head: &[u8]) -> Vec<&'static str> {
        let mut present = [false; SIGNED_FIELDS.len()];
        for field in fields(head) {
            if let Some(index) = SIGNED_FIELDS.iter().position(|signed| field.is(signed)) {
                present[index] = true;
            }
        }
        let mut fields: Vec<&'static str> = SIGNED_FIELDS
            .iter()
            .zip(present)
            .filter_map(|(field, present)| present.then_some(*field))
            .collect();
        fields.push("From");
        fields
    }

    /// The `DKIM-Signature` field (with its CRLF) over `fields` (from
    /// [`Signer::fields_to_sign`]) for the content `pieces` hands over, header block first.
    /// Runs the private-key operation: call it off the async I/O threads (the spool runs it on
    /// its stamp threads).
    pub fn sign<'a>(
        &self,
        fields: Vec<&'static str>,
        pieces: &mut dyn Iterator<Item = io::Result<Cow<'a, [u8]>>>,
    ) -> io::Result<Vec<u8>> {
        let signer = DkimSigner::from_key(SharedKey(self.key.clone()))
            .domain(self.domain.clone())
            .selector(self.selector.clone())
            .headers(fields)
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed);
        let mut stream = signer.sign_streaming();
        // The first piece is the header block; the body goes through RelaxedBody first.
        let mut body = RelaxedBody::default();
        let mut relaxed = Vec::new();
        for (index, piece) in pieces.enumerate() {
            let piece = piece?;
            if index == 0 {
                stream.write(&piece);
                continue;
            }
            relaxed.clear();
            body.feed(&piece, &mut relaxed);
            stream.write(&relaxed);
        }
        relaxed.clear();
        body.finish(&mut relaxed);
        stream.write(&relaxed);
        let signature = stream.finish().map_err(io::Error::other)?;
        let mut field = Vec::with_capacity(600);
        signature.write(&mut field, true);
        if !field.ends_with(b"\r\n") {
            field.extend_from_slice(b"\r\n");
        }
        Ok(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_fields_are_signed_and_from_once_more() {
        let head = b"Received: from x\r\nFROM: a@b.test\r\nSubject: hi\r\n folded\r\nX-Other: 1\r\nto : c@d.test\r\n\r\nDate: body, not a field\r\n";
        assert_eq!(
            Signer::fields_to_sign(head),
            vec!["From", "To", "Subject", "From"]
        );
    }
}

#[cfg(test)]
mod split_tests {
    use super::*;
    use crate::identity::key::{DkimKey, KeyAlgorithm};

    fn bh(field: &[u8]) -> String {
        let text = String::from_utf8_lossy(field)
            .replace("\r\n\t", "")
            .replace(' ', "");
        text.split(';')
            .find(|t| t.trim_start().starts_with("bh="))
            .unwrap()
            .to_string()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Whatever a client sends as header block and body, signing returns (a field or an
        /// error) and never panics.
        #[test]
        fn hostile_content_never_panics(
            head in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let signer = ed25519_signer();
            let mut with_from = b"From: a@x.test\r\n".to_vec();
            with_from.extend_from_slice(&head);
            for head in [&head, &with_from] {
                let pieces = [&head[..], &body[..]];
                let mut pieces = pieces.into_iter().map(|p| Ok(Cow::Borrowed(p)));
                let _ = signer.sign(Signer::fields_to_sign(head), &mut pieces);
            }
        }
    }

    fn ed25519_signer() -> Signer {
        static KEY: std::sync::LazyLock<Arc<DkimKey>> = std::sync::LazyLock::new(|| {
            let pem = DkimKey::generate(KeyAlgorithm::Ed25519).unwrap();
            Arc::new(DkimKey::from_pem(pem.as_bytes()).unwrap())
        });
        Signer {
            identity: "x.test".into(),
            domain: "x.test".into(),
            selector: "s".into(),
            key: KEY.clone(),
        }
    }

    #[test]
    fn the_body_hash_is_the_relaxed_body_wherever_the_body_is_cut() {
        use base64::Engine;
        let signer = ed25519_signer();
        let head: &[u8] = b"From: a@x.test\r\nSubject: s\r\n\r\n";
        let body: &[u8] = b" C \r\nD \t E\r\n\t\r\n\r\n";
        let digest = ring::digest::digest(&ring::digest::SHA256, b" C\r\nD E\r\n");
        let expected = format!(
            "bh={}",
            base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
        );
        for cut in 0..=body.len() {
            let pieces = [head, &body[..cut], &body[cut..]];
            let mut pieces = pieces.into_iter().map(|p| Ok(Cow::Borrowed(p)));
            let field = signer.sign(vec!["From"], &mut pieces).unwrap();
            assert_eq!(bh(&field), expected, "cut at {cut}");
        }
    }
}
