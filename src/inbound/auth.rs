//! SMTP AUTH (RFC 4954) with PLAIN and LOGIN, against `[[smtp.user]]` entries whose passwords
//! are stored as argon2 PHC strings (`poolrelay hash-password` makes them).
//!
//! The pieces here are pure: decoding the SASL exchanges and checking a password. The session
//! drives the exchange and offers AUTH only inside TLS.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::config::SmtpUser;

/// Why a SASL response was not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslError {
    /// The client sent `*`.
    Cancelled,
    /// Not base64, not UTF-8, or not the mechanism's shape.
    Malformed,
}

/// Decodes one base64 SASL line.
pub fn decode_line(line: &[u8]) -> Result<String, SaslError> {
    let line = line.trim_ascii();
    if line == b"*" {
        return Err(SaslError::Cancelled);
    }
    let bytes = STANDARD.decode(line).map_err(|_| SaslError::Malformed)?;
    String::from_utf8(bytes).map_err(|_| SaslError::Malformed)
}

/// `authzid NUL authcid NUL password` (RFC 4616) into (username, password). An authorization
/// identity other than the user itself is refused: nobody may act as someone else.
pub fn decode_plain(line: &[u8]) -> Result<(String, String), SaslError> {
    let text = decode_line(line)?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    if user.is_empty() || (!authzid.is_empty() && authzid != user) {
        return Err(SaslError::Malformed);
    }
    Ok((user.to_string(), password.to_string()))
}

/// Base64 of a server challenge (`Username:`, `Password:` for LOGIN).
pub fn challenge(text: &str) -> String {
    STANDARD.encode(text)
}

/// Blocking (argon2 is deliberately slow): the user, if the password is right.
pub fn verify<'a>(users: &'a [SmtpUser], username: &str, password: &str) -> Option<&'a SmtpUser> {
    let user = users.iter().find(|u| u.username == username);
    // Spend the same effort when the user does not exist, so timing does not reveal names.
    let hash = user.map_or(DUMMY_HASH, |u| u.password_hash.as_str());
    let parsed = PasswordHash::new(hash).ok()?;
    let ok = argon2::Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    if ok { user } else { None }
}

/// A valid hash of a random password, used to equalize timing for unknown users.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Vv7Kqv8bXlRqG1JmV9oC6n7n4a3o3D3q5z0z7n4z4bM";

/// An argon2id PHC string for `password`, with a random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| e.to_string())
}

/// Checks that a configured hash is a PHC string argon2 can verify against.
pub fn check_hash(hash: &str) -> Result<(), String> {
    PasswordHash::new(hash)
        .map(|_| ())
        .map_err(|e| format!("not a PHC password hash: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_line_decoding() {
        let line = STANDARD.encode("\0app1\0secret");
        assert_eq!(
            decode_plain(line.as_bytes()),
            Ok(("app1".into(), "secret".into()))
        );
        let as_other = STANDARD.encode("admin\0app1\0secret");
        assert_eq!(decode_plain(as_other.as_bytes()), Err(SaslError::Malformed));
        assert_eq!(decode_plain(b"not base64!"), Err(SaslError::Malformed));
        assert_eq!(decode_plain(b"*"), Err(SaslError::Cancelled));
        assert_eq!(
            decode_line(STANDARD.encode("user").as_bytes()),
            Ok("user".into())
        );
    }

    #[test]
    fn hashes_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        check_hash(&hash).unwrap();
        let users = [SmtpUser {
            username: "app1".into(),
            password_hash: hash,
            allowed_configuration_sets: None,
        }];
        assert!(verify(&users, "app1", "correct horse").is_some());
        assert!(verify(&users, "app1", "wrong").is_none());
        assert!(verify(&users, "nobody", "correct horse").is_none());
    }
}
