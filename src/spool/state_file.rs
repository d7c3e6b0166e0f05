//! Small JSON state files kept beside the spool (warm-up counts, site suspensions): loaded at
//! start, saved only when something changed, and replaced atomically and durably (temporary
//! file, fsync, rename, fsync of the folder), so a crash leaves the old state or the new one,
//! never a torn file.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// One state file; `None` as path keeps everything in memory (tests, tools).
#[derive(Debug)]
pub struct StateFile {
    path: Option<PathBuf>,
    /// Changed since the last successful save.
    dirty: AtomicBool,
}

impl StateFile {
    pub fn new(path: Option<PathBuf>) -> Self {
        Self {
            path,
            dirty: AtomicBool::new(false),
        }
    }

    /// What was saved last time; `None` when there is no file or it cannot be read (the state
    /// starts empty rather than stopping the relay).
    pub fn load<T: DeserializeOwned>(&self) -> Option<T> {
        let path = self.path.as_ref()?;
        let bytes = std::fs::read(path).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(state) => Some(state),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot read a saved state file; starting without it");
                None
            }
        }
    }

    /// The state changed: the next [`StateFile::save`] writes it.
    pub fn changed(&self) {
        self.dirty.store(true, Ordering::SeqCst);
    }

    /// Blocking: writes `snapshot()` if the state changed since the last save. On an error the
    /// state stays marked changed, so the next save tries again.
    pub fn save<T: Serialize>(&self, snapshot: impl FnOnce() -> T) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&snapshot())?;
        replace_durably(path, &bytes).inspect_err(|_| self.changed())
    }
}

/// Blocking: writes `bytes` to `path` (created 0600, truncated) and flushes them to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn replace_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    write_synced(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_only_when_changed_and_loads_what_was_saved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let state = StateFile::new(Some(path.clone()));
        assert_eq!(state.load::<Vec<u32>>(), None);
        state.save(|| vec![1u32]).unwrap();
        assert!(!path.exists(), "nothing changed, nothing written");
        state.changed();
        state.save(|| vec![1u32, 2]).unwrap();
        assert_eq!(state.load::<Vec<u32>>(), Some(vec![1, 2]));
        let mode = std::os::unix::fs::PermissionsExt::mode(&path.metadata().unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "readable by the relay's user only");
        state.save(|| vec![9u32]).unwrap();
        assert_eq!(
            StateFile::new(Some(path)).load::<Vec<u32>>(),
            Some(vec![1, 2]),
            "a save without a change writes nothing"
        );
        std::fs::write(dir.path().join("bad.json"), b"{not json").unwrap();
        let bad = StateFile::new(Some(dir.path().join("bad.json")));
        assert_eq!(bad.load::<Vec<u32>>(), None);
    }
}
