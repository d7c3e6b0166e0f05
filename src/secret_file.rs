//! Reading a file that holds a secret (a bounce-token key, an API secret): refused when other
//! users could read it, since anyone holding the secret can forge what it protects.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The file's bytes, or an error naming the file (and `chmod 600` when its mode lets others in).
pub fn read_private(path: &Path) -> io::Result<Vec<u8>> {
    let named = |error: io::Error| {
        io::Error::new(
            error.kind(),
            format!("cannot read {}: {error}", path.display()),
        )
    };
    let mode = std::fs::metadata(path).map_err(named)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(io::Error::other(format!(
            "{} is readable by other users (mode {mode:o}); chmod 600 it",
            path.display()
        )));
    }
    std::fs::read(path).map_err(named)
}

/// The secret in `path`, created (32 random bytes, mode 0600) when the file is absent.
pub fn read_or_create(path: &Path, what: &str) -> io::Result<Vec<u8>> {
    if !path.exists() {
        create_secret(path, what)?;
    }
    read_private(path)
}

/// Writes 32 random bytes to a new file `path`, mode 0600, durably.
fn create_secret(path: &Path, what: &str) -> io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    let mut secret = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut secret[..]);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    // Set outright: the umask must not decide who can read the secret.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(&secret)?;
    file.sync_all()?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::File::open(parent)?.sync_all()?;
    }
    tracing::info!(path = %path.display(), "generated the {what}");
    Ok(())
}
