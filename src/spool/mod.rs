//! The durable spool: a message is acknowledged only once it is here.
//!
//! Layout under the spool directory:
//!
//! ```text
//! tmp/         messages being received (removed at start-up: none of them was acknowledged)
//! queue/ID.msg the content as it will be relayed (Received header added, X-SES-* removed)
//! queue/ID.env the envelope, JSON; its presence is what makes the message exist
//! quarantine/  files that could not be read back, kept for an operator to inspect
//! ```
//!
//! Committing a message: content written to `tmp/ID.msg`, envelope to `tmp/ID.env`, content
//! renamed into `queue/`, envelope renamed after it, then the file system flushed by the group
//! commit thread (see `group_sync`), which serves every session waiting at that moment with one
//! `syncfs`. Only then does the client get `250`. A crash at any point leaves either nothing in
//! `queue/`, a `.msg` without `.env` (never acknowledged: removed at start-up), a pair that was
//! never acknowledged (delivered anyway, or quarantined if its data did not reach the disk: it is
//! checked against the size in the envelope), or the complete, acknowledged pair.
//!
//! Envelope updates after delivery attempts are written to a temporary file, fsynced and renamed
//! over the old one, so the envelope is always either the old or the new version. Losing an update
//! in a crash can only cause a recipient to be delivered twice, never to be lost.

mod envelope;
mod group_sync;
mod id;
mod writer;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use envelope::{Envelope, Recipient, RecipientState};
pub use id::{new_message_id, unix_now};
pub use writer::MessageWriter;

#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
    sync: std::sync::Arc<group_sync::GroupSync>,
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
            sync: std::sync::Arc::new(group_sync::GroupSync::start(root)?),
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

    /// Where a queued message's content is.
    pub fn content_path(&self, id: &str) -> PathBuf {
        self.queue_dir().join(format!("{id}.msg"))
    }

    fn envelope_path(&self, id: &str) -> PathBuf {
        self.queue_dir().join(format!("{id}.env"))
    }

    /// Starts receiving a new message.
    pub fn writer(&self, id: &str) -> MessageWriter {
        MessageWriter::new(self.clone(), id.to_string())
    }

    /// Blocking: moves a fully written content file and its envelope into `queue/`. They are
    /// durable only after [`Spool::sync`].
    fn commit_blocking(&self, content_tmp: &Path, envelope: &Envelope) -> io::Result<()> {
        let envelope_tmp = self.tmp_dir().join(format!("{}.env", envelope.id));
        fs::write(&envelope_tmp, serde_json::to_vec(envelope)?)?;
        fs::rename(content_tmp, self.content_path(&envelope.id))?;
        fs::rename(&envelope_tmp, self.envelope_path(&envelope.id))
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

    /// Blocking: removes a message whose recipients are all done. The envelope goes first, so a
    /// crash in between leaves an unreferenced content file, which start-up removes. The
    /// directory is not fsynced: if a crash undoes the removal, the message is delivered again
    /// (a duplicate, which the no-loss promise allows), and the common path saves a disk flush.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        fs::remove_file(self.envelope_path(id))?;
        fs::remove_file(self.content_path(id))
    }

    /// Blocking: reads every queued message back after a start. Envelopes that cannot be read
    /// or whose content is missing are moved to `quarantine/` and reported; content files without
    /// an envelope were never acknowledged and are removed.
    pub fn recover(&self) -> io::Result<Recovered> {
        let mut recovered = Recovered::default();
        let mut contents = Vec::new();
        for entry in fs::read_dir(self.queue_dir())? {
            let path = entry?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("env") => match self.read_envelope(&path) {
                    Ok(envelope) => recovered.envelopes.push(envelope),
                    Err(reason) => {
                        let moved = self.quarantine(&path);
                        if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                            let content = self.content_path(stem);
                            if content.exists() {
                                let _ = self.quarantine(&content);
                            }
                        }
                        recovered.quarantined.push((moved.unwrap_or(path), reason));
                    }
                },
                Some("msg") => contents.push(path),
                _ => {
                    let reason = "unexpected file in the queue".to_string();
                    let moved = self.quarantine(&path);
                    recovered.quarantined.push((moved.unwrap_or(path), reason));
                }
            }
        }
        for content in contents {
            if content.exists() && !content.with_extension("env").exists() {
                fs::remove_file(&content)?;
                recovered.unacknowledged_removed += 1;
            }
        }
        recovered
            .envelopes
            .sort_by(|a, b| a.received_at.cmp(&b.received_at).then(a.id.cmp(&b.id)));
        Ok(recovered)
    }

    fn read_envelope(&self, path: &Path) -> Result<Envelope, String> {
        let bytes = fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
        let envelope: Envelope =
            serde_json::from_slice(&bytes).map_err(|e| format!("not a valid envelope: {e}"))?;
        let expected = path.file_stem().and_then(|s| s.to_str());
        if expected != Some(envelope.id.as_str()) {
            return Err(format!(
                "envelope id {:?} does not match its file name",
                envelope.id
            ));
        }
        let content = self.content_path(&envelope.id);
        let size = fs::metadata(&content)
            .map_err(|e| format!("content file {} is missing: {e}", content.display()))?
            .len();
        if size != envelope.size {
            return Err(format!(
                "content file has {size} bytes, the envelope says {}",
                envelope.size
            ));
        }
        Ok(envelope)
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
    pub unacknowledged_removed: usize,
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

