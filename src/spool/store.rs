//! The spool folder: opening it, handing out writers for new messages, recovery at start-up,
//! envelope updates and removal (see the module docs of `spool` for the layout).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::envelope::Envelope;
use super::group_sync::GroupSync;
use super::state_file::write_synced;
use super::trailer;
use super::writer::MessageWriter;

#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
    sync: std::sync::Arc<GroupSync>,
}

impl Spool {
    /// Opens (creating if needed) a spool directory and clears its `tmp/`. The spool and its
    /// folders are private to the relay's user (0700, files 0600): queued mail is nobody else's
    /// to read. An existing spool with looser modes is tightened.
    pub fn open(root: &Path) -> io::Result<Self> {
        for folder in [root.to_path_buf()]
            .into_iter()
            .chain(["tmp", "queue", "quarantine"].map(|sub| root.join(sub)))
        {
            private_folder(&folder).map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("cannot create {}: {error}", folder.display()),
                )
            })?;
        }
        let spool = Self {
            root: root.to_path_buf(),
            sync: std::sync::Arc::new(GroupSync::start(root)?),
        };
        for entry in fs::read_dir(spool.tmp_dir())? {
            let _ = fs::remove_file(entry?.path());
        }
        Ok(spool)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn queue_dir(&self) -> PathBuf {
        self.root.join("queue")
    }

    pub fn quarantine_dir(&self) -> PathBuf {
        self.root.join("quarantine")
    }

    /// Where a queued message is: its first `size` bytes are the content.
    pub fn content_path(&self, id: &str) -> PathBuf {
        self.queue_dir().join(format!("{id}.msg"))
    }

    /// Where a message's updated envelope is, once it has one.
    fn envelope_path(&self, id: &str) -> PathBuf {
        self.queue_dir().join(format!("{id}.env"))
    }

    /// Starts receiving a new message.
    pub fn writer(&self, id: &str) -> MessageWriter {
        MessageWriter::new(self.sync.clone(), self.content_path(id))
    }

    /// Blocking: replaces a queued message's envelope atomically.
    pub fn update(&self, envelope: &Envelope) -> io::Result<()> {
        let tmp = self.tmp_dir().join(format!("{}.env.update", envelope.id));
        write_synced(&tmp, &serde_json::to_vec(envelope)?)?;
        fs::rename(&tmp, self.envelope_path(&envelope.id))
    }

    /// Blocking: removes a message whose recipients are all done. The envelope update goes first,
    /// so a crash in between leaves the message with its first envelope: it is delivered again
    /// (a duplicate, which the no-loss promise allows). Nothing is flushed here for the same
    /// reason, which keeps the common path to one unlink.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        match fs::remove_file(self.envelope_path(id)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        fs::remove_file(self.content_path(id))
    }

    /// Blocking: reads every queued message back after a start. Anything that is not a complete
    /// message (damaged, still being received when the relay stopped, unreadable, not a file) is
    /// moved to `quarantine/` and reported, never deleted, never delivered, and never stops the
    /// start.
    pub fn recover(&self) -> io::Result<Recovered> {
        let mut recovered = Recovered::default();
        let mut updates = Vec::new();
        for entry in fs::read_dir(self.queue_dir())? {
            let path = entry?.path();
            let found = match path.extension().and_then(|e| e.to_str()) {
                Some("msg") => read_message(&path),
                Some("env") => {
                    updates.push(path);
                    continue;
                }
                _ => Err("unexpected file in the queue".to_string()),
            };
            match found {
                Ok(envelope) => recovered.envelopes.push(envelope),
                Err(reason) => recovered
                    .quarantined
                    .push((self.quarantine(&path)?, reason)),
            }
        }
        // Envelope updates replace the envelope stored with the message.
        for path in updates {
            self.apply_update(&path, &mut recovered)?;
        }
        recovered
            .envelopes
            .sort_by(|a, b| a.received_at.cmp(&b.received_at).then(a.id.cmp(&b.id)));
        Ok(recovered)
    }

    /// Applies the envelope update at `path` to its message, or quarantines it.
    fn apply_update(&self, path: &Path, recovered: &mut Recovered) -> io::Result<()> {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let known = recovered.envelopes.iter_mut().find(|e| e.id == stem);
        let reason = match (known, read_update(path)) {
            (Some(known), Ok(update)) if update.id == known.id && update.size == known.size => {
                *known = update;
                return Ok(());
            }
            (Some(_), Ok(_)) => {
                "envelope update does not match its message; the original is used".to_string()
            }
            (Some(_), Err(error)) => {
                format!("envelope update unreadable ({error}); the original is used")
            }
            // The message itself is gone (delivered and removed, or quarantined).
            (None, _) => match fs::remove_file(path) {
                Ok(()) => return Ok(()),
                Err(error) => format!("envelope update without a message, not removable: {error}"),
            },
        };
        recovered.quarantined.push((self.quarantine(path)?, reason));
        Ok(())
    }

    /// Moves `path` into `quarantine/`, under a name not taken yet.
    fn quarantine(&self, path: &Path) -> io::Result<PathBuf> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let mut target = self.quarantine_dir().join(name.as_ref());
        let mut n = 1;
        while target.symlink_metadata().is_ok() {
            target = self.quarantine_dir().join(format!("{name}.{n}"));
            n += 1;
        }
        fs::rename(path, &target)?;
        Ok(target)
    }
}

/// The envelope of the complete message at `path`, or why it is not one.
fn read_message(path: &Path) -> Result<Envelope, String> {
    let bytes = fs::read(path).map_err(|error| format!("cannot be read: {error}"))?;
    match trailer::decode(&bytes) {
        trailer::Decoded::Complete(envelope) => {
            if path.file_stem().and_then(|s| s.to_str()) == Some(envelope.id.as_str()) {
                Ok(*envelope)
            } else {
                Err(format!(
                    "envelope id {:?} does not match the file name",
                    envelope.id
                ))
            }
        }
        // Most likely a message still arriving when the relay stopped (never acknowledged), but
        // a truncated file looks the same: keep it.
        trailer::Decoded::Incomplete => {
            Err("no footer: unfinished when the relay stopped, or truncated".to_string())
        }
        trailer::Decoded::Corrupt(reason) => Err(reason),
    }
}

fn read_update(path: &Path) -> Result<Envelope, String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    serde_json::from_slice::<Envelope>(&bytes).map_err(|e| e.to_string())
}

/// What [`Spool::recover`] found.
#[derive(Debug, Default)]
pub struct Recovered {
    pub envelopes: Vec<Envelope>,
    /// Files moved to quarantine, with the reason.
    pub quarantined: Vec<(PathBuf, String)>,
}

/// Creates `folder` (and its parents) if needed and makes it 0700.
fn private_folder(folder: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(folder)?;
    fs::set_permissions(folder, fs::Permissions::from_mode(0o700))
}
