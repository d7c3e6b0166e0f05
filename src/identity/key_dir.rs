//! `[dkim] key_dir`: the keys the relay keeps for identities.
//!
//! * Easy DKIM: `<identity>.json` holds the generated key (PKCS#8 PEM), its selector and when it
//!   was made. It is written once (mode 0600, atomically) and read on every start, so the
//!   published record stays valid; a rotation replaces it with a new key under a new selector.
//! * Keys given through the API: `<identity>.<selector>.pem` (0600); the config file names it
//!   in `dkim_key`, so the private key never enters the TOML file.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::key::{DkimKey, KeyAlgorithm};

/// A generated key as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GeneratedKey {
    pub selector: String,
    pub algorithm: String,
    /// Unix seconds.
    pub created: i64,
    pub private_key: String,
}

fn state_path(key_dir: &Path, identity: &str) -> PathBuf {
    key_dir.join(format!("{identity}.json"))
}

/// A fresh selector: `pr` and 12 random hex digits (a DNS label, unique per key).
pub fn new_selector() -> String {
    let bytes: [u8; 6] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("pr{hex}")
}

/// The identity's generated key, made (and saved) first if there is none yet.
pub fn load_or_generate(
    key_dir: &Path,
    identity: &str,
    algorithm: KeyAlgorithm,
) -> Result<(GeneratedKey, DkimKey), String> {
    let path = state_path(key_dir, identity);
    match fs::read(&path) {
        Ok(bytes) => {
            let stored: GeneratedKey = serde_json::from_slice(&bytes)
                .map_err(|error| format!("{}: {error}", path.display()))?;
            let key = DkimKey::from_pem(stored.private_key.as_bytes())
                .map_err(|error| format!("{}: {error}", path.display()))?;
            Ok((stored, key))
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            generate(key_dir, identity, algorithm)
        }
        Err(error) => Err(format!("cannot read {}: {error}", path.display())),
    }
}

/// A new generated key under a new selector, replacing the identity's generated key (a
/// rotation, or the first key).
pub fn generate(
    key_dir: &Path,
    identity: &str,
    algorithm: KeyAlgorithm,
) -> Result<(GeneratedKey, DkimKey), String> {
    let pem = DkimKey::generate(algorithm).map_err(|error| error.to_string())?;
    let key = DkimKey::from_pem(pem.as_bytes()).map_err(|error| error.to_string())?;
    let stored = GeneratedKey {
        selector: new_selector(),
        algorithm: algorithm.as_str().to_string(),
        created: chrono::Utc::now().timestamp(),
        private_key: pem,
    };
    let json = serde_json::to_vec_pretty(&stored).map_err(|error| error.to_string())?;
    write_private(key_dir, &format!("{identity}.json"), &json)
        .map_err(|error| format!("cannot write a key to {}: {error}", key_dir.display()))?;
    tracing::info!(identity, selector = %stored.selector, algorithm = algorithm.as_str(), "generated a DKIM key");
    Ok((stored, key))
}

/// Forgets the identity's generated key (the identity was deleted).
pub fn remove_generated(key_dir: &Path, identity: &str) {
    let _ = fs::remove_file(state_path(key_dir, identity));
}

/// Writes `bytes` to `key_dir/name` with mode 0600: a temporary file, synced, renamed over
/// the old one, and the folder synced, so a crash leaves the old file or the new one.
pub fn write_private(key_dir: &Path, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(key_dir)?;
    // Modes are set outright: the process umask (changed for a moment while the admin socket
    // is created) must not loosen or break them.
    fs::set_permissions(key_dir, fs::Permissions::from_mode(0o700))?;
    let path = key_dir.join(name);
    let temporary = key_dir.join(format!(".{name}.tmp"));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temporary, &path)?;
    fs::File::open(key_dir)?.sync_all()?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let key_dir = dir.path().join("dkim");
        let (first, key) =
            load_or_generate(&key_dir, "example.com", KeyAlgorithm::Ed25519).unwrap();
        let mode = fs::metadata(key_dir.join("example.com.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, same) =
            load_or_generate(&key_dir, "example.com", KeyAlgorithm::Rsa2048).unwrap();
        assert_eq!(first.selector, again.selector);
        assert_eq!(key.dns_record_value(), same.dns_record_value());
        let (rotated, new) = generate(&key_dir, "example.com", KeyAlgorithm::Ed25519).unwrap();
        assert_ne!(rotated.selector, first.selector);
        assert_ne!(new.dns_record_value(), key.dns_record_value());
    }
}
