//! Return paths that name the message and recipient they were sent for (SES's custom MAIL FROM
//! domain, with VERP).
//!
//! With `[bounce] domain`, each recipient of a relayed message gets its own envelope sender,
//! `b-<token>@<domain>`. The token is the message id (its microsecond time and sequence number,
//! see `spool::id`), the recipient's index in the envelope, and an HMAC-SHA256 of both under the
//! relay's secret, cut to 80 bits, in lower-case base32 (DNSSEC alphabet, read
//! case-insensitively: some servers upper-case local parts). A bounce sent to it names exactly
//! one message and recipient without any lookup, and nobody without the secret can make one.
//!
//! Pure apart from [`ReturnPath::load`], which reads (or creates) the secret.

use std::io;
use std::path::Path;

use data_encoding::BASE32_DNSSEC;
use ring::hmac;

/// Bytes of HMAC kept in a token.
const MAC_BYTES: usize = 10;
/// micros (8) + sequence (3) + recipient (2).
const NAMED_BYTES: usize = 13;
const PREFIX: &str = "b-";

/// What a valid token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenTarget {
    /// The spool id of the message (`spool::new_message_id`'s form).
    pub message_id: String,
    /// The recipient's index in the message's envelope.
    pub recipient: usize,
    /// When the message was accepted (Unix seconds).
    pub accepted_at: u64,
}

/// Why an address at the bounce domain names nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadToken {
    #[error("not a return-path address")]
    Malformed,
    #[error("the return-path signature does not match")]
    Forged,
    #[error("the message is older than the bounce token lifetime")]
    Expired,
}

/// The bounce domain and the key that signs its addresses.
pub struct ReturnPath {
    domain: String,
    key: hmac::Key,
    /// How long after acceptance a token is still honoured.
    lifetime_seconds: u64,
}

impl std::fmt::Debug for ReturnPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReturnPath")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl ReturnPath {
    pub fn new(domain: &str, secret: &[u8], lifetime_seconds: u64) -> Self {
        Self {
            domain: domain.to_ascii_lowercase(),
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            lifetime_seconds,
        }
    }

    /// Reads the secret from `secret_file`, creating it (32 random bytes, mode 0600) when it is
    /// absent. A secret that others can read is refused: anyone holding it can forge bounces.
    pub fn load(domain: &str, secret_file: &Path, lifetime_seconds: u64) -> io::Result<Self> {
        let secret = crate::secret_file::read_or_create(secret_file, "bounce secret")?;
        if secret.len() < 16 {
            return Err(io::Error::other(format!(
                "{} holds {} bytes; a bounce secret needs at least 16",
                secret_file.display(),
                secret.len()
            )));
        }
        Ok(Self::new(domain, &secret, lifetime_seconds))
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Whether `domain` (any case) is the bounce domain.
    pub fn is_bounce_domain(&self, domain: &str) -> bool {
        domain.eq_ignore_ascii_case(&self.domain)
    }

    /// The envelope sender for recipient `recipient` of message `message_id`; `None` when the
    /// id is not in the spool's form or the index does not fit (the original sender is used).
    pub fn sender_for(&self, message_id: &str, recipient: usize) -> Option<String> {
        let (micros, sequence) = parse_message_id(message_id)?;
        let recipient = u16::try_from(recipient).ok()?;
        let mut bytes = Vec::with_capacity(NAMED_BYTES + MAC_BYTES);
        bytes.extend_from_slice(&micros.to_be_bytes());
        bytes.extend_from_slice(&sequence.to_be_bytes()[1..]);
        bytes.extend_from_slice(&recipient.to_be_bytes());
        let tag = hmac::sign(&self.key, &bytes);
        bytes.extend_from_slice(&tag.as_ref()[..MAC_BYTES]);
        Some(format!(
            "{PREFIX}{}@{}",
            BASE32_DNSSEC.encode(&bytes),
            self.domain
        ))
    }

    /// What the local part of an address at the bounce domain names, checked at `now` (Unix
    /// seconds).
    pub fn read(&self, local_part: &str, now: u64) -> Result<TokenTarget, BadToken> {
        let token = local_part
            .get(..PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(PREFIX))
            .map(|_| &local_part[PREFIX.len()..])
            .ok_or(BadToken::Malformed)?;
        let bytes = BASE32_DNSSEC
            .decode(token.as_bytes())
            .map_err(|_| BadToken::Malformed)?;
        if bytes.len() != NAMED_BYTES + MAC_BYTES {
            return Err(BadToken::Malformed);
        }
        let (named, mac) = bytes.split_at(NAMED_BYTES);
        let expected = hmac::sign(&self.key, named);
        // Constant time: a timing difference must not let anyone guess the tag byte by byte.
        let expected = &expected.as_ref()[..MAC_BYTES];
        if !constant_time_eq(expected, mac) {
            return Err(BadToken::Forged);
        }
        let micros = u64::from_be_bytes(named[..8].try_into().map_err(|_| BadToken::Malformed)?);
        let sequence = u32::from_be_bytes([0, named[8], named[9], named[10]]);
        let recipient = u16::from_be_bytes([named[11], named[12]]) as usize;
        let accepted_at = micros / 1_000_000;
        if now > accepted_at.saturating_add(self.lifetime_seconds) {
            return Err(BadToken::Expired);
        }
        Ok(TokenTarget {
            message_id: format!("{micros:016x}-{sequence:06x}"),
            recipient,
            accepted_at,
        })
    }

    /// Reads a whole address (`b-…@domain`), `None` when it is not at the bounce domain.
    pub fn read_address(&self, address: &str, now: u64) -> Option<Result<TokenTarget, BadToken>> {
        let (local, domain) = address.rsplit_once('@')?;
        self.is_bounce_domain(domain).then(|| self.read(local, now))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `0006421c8f3e1a2b-00000c` → (micros, sequence).
fn parse_message_id(id: &str) -> Option<(u64, u32)> {
    let (micros, sequence) = id.split_once('-')?;
    if micros.len() != 16 || sequence.len() != 6 {
        return None;
    }
    Some((
        u64::from_str_radix(micros, 16).ok()?,
        u32::from_str_radix(sequence, 16).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    const DAY: u64 = 86_400;

    fn return_path() -> ReturnPath {
        ReturnPath::new(
            "Bounce.Example.Test",
            b"0123456789abcdef0123456789abcdef",
            30 * DAY,
        )
    }

    #[test]
    fn a_token_round_trips_in_any_case() {
        let rp = return_path();
        let id = "0006421c8f3e1a2b-00000c";
        let sender = rp.sender_for(id, 3).unwrap();
        let (local, domain) = sender.rsplit_once('@').unwrap();
        assert_eq!(domain, "bounce.example.test");
        assert!(local.len() <= 64, "{local}");
        let now = 0x0006421c8f3e1a2b / 1_000_000 + 10;
        let target = rp.read(local, now).unwrap();
        assert_eq!(target.message_id, id);
        assert_eq!(target.recipient, 3);
        let upper = rp.read_address(&sender.to_ascii_uppercase(), now).unwrap();
        assert_eq!(upper.unwrap(), target);
        assert!(rp.read_address("someone@example.test", now).is_none());
    }

    #[test]
    fn forged_malformed_and_expired_tokens_are_refused() {
        let rp = return_path();
        let id = "0006421c8f3e1a2b-00000c";
        let now = 0x0006421c8f3e1a2b / 1_000_000;
        let sender = rp.sender_for(id, 0).unwrap();
        let local = sender.split('@').next().unwrap();
        // Another recipient index with the same tag.
        let other = rp.sender_for(id, 1).unwrap();
        let other_local = other.split('@').next().unwrap();
        let spliced = format!("{}{}", &other_local[..26], &local[26..]);
        assert_eq!(rp.read(&spliced, now), Err(BadToken::Forged));
        let other_key = ReturnPath::new(
            "bounce.example.test",
            b"another secret, 32 bytes long!!!",
            DAY,
        );
        assert_eq!(other_key.read(local, now), Err(BadToken::Forged));
        assert_eq!(rp.read("b-", now), Err(BadToken::Malformed));
        assert_eq!(rp.read("postmaster", now), Err(BadToken::Malformed));
        assert_eq!(rp.read("b-!!!!", now), Err(BadToken::Malformed));
        assert_eq!(rp.read(&local[..30], now), Err(BadToken::Malformed));
        assert_eq!(rp.read(local, now + 31 * DAY), Err(BadToken::Expired));
        assert!(rp.sender_for("not-an-id", 0).is_none());
        assert!(rp.sender_for(id, 70_000).is_none());
    }

    #[test]
    fn the_secret_is_created_private_and_a_readable_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/bounce.key");
        let first = ReturnPath::load("b.example.test", &path, DAY).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = ReturnPath::load("b.example.test", &path, DAY).unwrap();
        let id = "0006421c8f3e1a2b-00000c";
        assert_eq!(first.sender_for(id, 0), again.sender_for(id, 0));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let error = ReturnPath::load("b.example.test", &path, DAY).unwrap_err();
        assert!(error.to_string().contains("chmod 600"), "{error}");
    }
}
