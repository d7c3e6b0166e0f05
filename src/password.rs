//! Password hashes: argon2id PHC strings, as `poolrelay hash-password` makes them and
//! `[[smtp.user]] password_hash` stores them. Checked by config validation and by SMTP AUTH.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// A valid hash of a random password, used to equalize timing for unknown users.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Vv7Kqv8bXlRqG1JmV9oC6n7n4a3o3D3q5z0z7n4z4bM";

/// An argon2id PHC string for `password`, with a random salt.
pub fn hash(password: &str) -> Result<String, String> {
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

/// Blocking (argon2 is deliberately slow): whether `password` matches `hash`. With no hash (an
/// unknown user) the same work is done against a dummy hash and the answer is false.
pub fn verify(hash: Option<&str>, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash.unwrap_or(DUMMY_HASH)) else {
        return false;
    };
    let matches = argon2::Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    matches && hash.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hashed = hash("correct horse").unwrap();
        assert!(hashed.starts_with("$argon2id$"));
        check_hash(&hashed).unwrap();
        assert!(verify(Some(&hashed), "correct horse"));
        assert!(!verify(Some(&hashed), "wrong"));
        assert!(!verify(None, "correct horse"));
        assert!(check_hash("plain text").is_err());
    }
}
