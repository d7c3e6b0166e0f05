//! Reading a file that holds a secret (a bounce-token key, an API secret): refused when other
//! users could read it, since anyone holding the secret can forge what it protects.

use std::io;
use std::os::unix::fs::PermissionsExt;
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
