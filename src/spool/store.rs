//! The spool folder: opening it, handing out writers for new messages, recovery at start-up,
//! envelope updates and removal (see the module docs of `spool` for the layout).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::envelope::Envelope;
use super::group_sync::GroupSync;
use super::trailer;
use super::writer::MessageWriter;

#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
    sync: std::sync::Arc<GroupSync>,
}

impl Spool {
    /// Opens (creating if needed) a spool directory and clears its `tmp/`.
    pub fn open(root: &Path) -> io::Result<Self> {
        for sub in ["tmp", "queue", "quarantine"] {
            fs::create_dir_all(root.join(sub)).map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("cannot create {}: {error}", root.join(sub).display()),
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

    /// Returns once everything written to the spool before the call is on stable storage
    /// (group commit: one flush serves every caller waiting at the time).
    pub async fn sync(&self) -> io::Result<()> {
        self.sync.sync().await
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

    /// Blocking: reads every queued message back after a start. Files that are not a complete
    /// message (damaged, or still being received when the relay stopped) are moved to
    /// `quarantine/` and reported, never deleted and never delivered.
    pub fn recover(&self) -> io::Result<Recovered> {
        let mut recovered = Recovered::default();
        let mut updates = Vec::new();
        for entry in fs::read_dir(self.queue_dir())? {
            let path = entry?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("msg") => match trailer::decode(&fs::read(&path)?) {
                    trailer::Decoded::Complete(envelope) => {
                        if path.file_stem().and_then(|s| s.to_str()) == Some(envelope.id.as_str()) {
                            recovered.envelopes.push(*envelope);
                        } else {
                            let reason = format!(
                                "envelope id {:?} does not match the file name",
                                envelope.id
                            );
                            recovered
                                .quarantined
                                .push((self.quarantine(&path)?, reason));
                        }
                    }
                    trailer::Decoded::Incomplete => {
                        // Most likely a message still arriving when the relay stopped (never
                        // acknowledged), but a truncated file looks the same: keep it.
                        let reason = "no footer: unfinished when the relay stopped, or truncated"
                            .to_string();
                        recovered
                            .quarantined
                            .push((self.quarantine(&path)?, reason));
                    }
                    trailer::Decoded::Corrupt(reason) => {
                        recovered
                            .quarantined
                            .push((self.quarantine(&path)?, reason));
                    }
                },
                Some("env") => updates.push(path),
                _ => {
                    let reason = "unexpected file in the queue".to_string();
                    recovered
                        .quarantined
                        .push((self.quarantine(&path)?, reason));
                }
            }
        }
        // Envelope updates replace the envelope stored with the message.
        for path in updates {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            let Some(known) = recovered.envelopes.iter_mut().find(|e| e.id == stem) else {
                // The message itself is gone (delivered and removed, or quarantined).
                fs::remove_file(&path)?;
                continue;
            };
            match fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<Envelope>(&bytes).map_err(|e| e.to_string())
                }) {
                Ok(update) if update.id == known.id && update.size == known.size => *known = update,
                Ok(_) => {
                    let reason = "envelope update does not match its message; the original is used"
                        .to_string();
                    recovered
                        .quarantined
                        .push((self.quarantine(&path)?, reason));
                }
                Err(error) => {
                    let reason =
                        format!("envelope update unreadable ({error}); the original is used");
                    recovered
                        .quarantined
                        .push((self.quarantine(&path)?, reason));
                }
            }
        }
        recovered
            .envelopes
            .sort_by(|a, b| a.received_at.cmp(&b.received_at).then(a.id.cmp(&b.id)));
        Ok(recovered)
    }

    fn quarantine(&self, path: &Path) -> io::Result<PathBuf> {
        let name = path.file_name().unwrap_or_default();
        let target = self.quarantine_dir().join(name);
        fs::rename(path, &target)?;
        Ok(target)
    }
}

/// What [`Spool::recover`] found.
#[derive(Debug, Default)]
pub struct Recovered {
    pub envelopes: Vec<Envelope>,
    /// Files moved to quarantine, with the reason.
    pub quarantined: Vec<(PathBuf, String)>,
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
