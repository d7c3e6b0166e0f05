//! SMTP AUTH (RFC 4954) with PLAIN and LOGIN, against `[[smtp.user]]` entries whose passwords
//! are stored as argon2 PHC strings (`poolrelay hash-password` makes them).
//!
//! The pieces here are pure: decoding the SASL exchanges and checking a password. The session
//! drives the exchange and offers AUTH only inside TLS.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::config::SmtpUser;
use crate::password;

/// Why a SASL response was not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslError {
    /// The client sent `*`.
    Cancelled,
    /// Not base64, not UTF-8, or not the mechanism's shape.
    Malformed,
}

/// Where a SASL exchange stands, waiting for the client's next line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslStep {
    PlainResponse,
    LoginUsername,
    LoginPassword { username: String },
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
    // An unknown user costs the same effort, so timing does not reveal names.
    let matches = password::verify(user.map(|u| u.password_hash.as_str()), password);
    if matches { user } else { None }
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
        let hash = password::hash("correct horse").unwrap();
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
