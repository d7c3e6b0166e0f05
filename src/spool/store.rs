//! The spool folder: opening it, handing out writers for new messages, recovery at start-up,
//! envelope updates and "done" (see the module docs of `spool` for the layout).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::envelope::{Envelope, Stored};
use super::held::HeldContent;
use super::log::{Lane, Log, segment_number};
use super::record::{self, Kind};
use super::recovery::{self, Recovered};
use super::trailer;
use super::writer::MessageWriter;
use super::writer::OWN_SEGMENT_THRESHOLD;

#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
    log: Arc<Log>,
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
        let queue = root.join("queue");
        // New segments are numbered after every one already there.
        let mut first_segment = 1;
        for entry in fs::read_dir(&queue)? {
            if let Some(number) = entry?.file_name().to_str().and_then(segment_number) {
                first_segment = first_segment.max(number.saturating_add(1));
            }
        }
        for entry in fs::read_dir(root.join("tmp"))? {
            let _ = fs::remove_file(entry?.path());
        }
        Ok(Self {
            root: root.to_path_buf(),
            log: Arc::new(Log::start(&queue, first_segment)?),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn quarantine_dir(&self) -> PathBuf {
        self.root.join("quarantine")
    }

    /// Starts receiving a new message.
    pub fn writer(&self) -> MessageWriter {
        MessageWriter::new(self.log.clone())
    }

    /// Where a queued message's content is: the segment file and the offset of its first byte
    /// (it has `envelope.size` bytes).
    pub fn content(&self, envelope: &Envelope) -> io::Result<(PathBuf, u64)> {
        let Stored { segment, offset } = stored(envelope)?;
        Ok((self.log.segment_path(segment), offset))
    }

    /// Records a queued message's newer envelope; returns once it is durable.
    pub async fn update(&self, envelope: &Envelope) -> io::Result<()> {
        let Stored { segment, .. } = stored(envelope)?;
        let json = serde_json::to_vec(envelope)?;
        self.log.update(segment, &json).await
    }

    /// Records a deferred message's newer envelope; returns once it is durable. A message of a
    /// shared segment is moved: its content and the new envelope are appended to the deferred
    /// lane and its old place is marked done, so the segment of fresh mail it arrived in is not
    /// kept on disk while it waits (a crash in between leaves two copies; recovery keeps the one
    /// with more attempts). A large message has a segment of its own and is updated in place.
    pub async fn defer(&self, envelope: &mut Envelope) -> io::Result<()> {
        let old = stored(envelope)?;
        if envelope.size > OWN_SEGMENT_THRESHOLD as u64 {
            return self.update(envelope).await;
        }
        let content = match envelope.in_memory.take() {
            Some(held) => held.content().to_vec(),
            None => {
                let path = self.log.segment_path(old.segment);
                let size = envelope.size as usize;
                tokio::task::spawn_blocking(move || -> io::Result<Vec<u8>> {
                    use std::os::unix::fs::FileExt;
                    let mut content = vec![0; size];
                    fs::File::open(path)?.read_exact_at(&mut content, old.offset)?;
                    Ok(content)
                })
                .await
                .map_err(io::Error::other)??
            }
        };
        let footer =
            trailer::encode(envelope, crc32fast::hash(&content)).map_err(io::Error::other)?;
        let size = content.len();
        let mut payload = content;
        payload.extend_from_slice(&footer);
        let header = record::header(
            Kind::Message,
            payload.len() as u64,
            crc32fast::hash(&payload),
        );
        let moved = Arc::new(HeldContent::new(payload, size));
        let stored = self.log.append(Lane::Deferred, header, moved).await?;
        self.log.done(old, &envelope.id);
        envelope.stored = Some(stored);
        Ok(())
    }

    /// Records that a message needs nothing more (all recipients done, or deleted by an
    /// operator). Not flushed: a crash before it reaches the disk makes the message go out
    /// again (a duplicate, which the no-loss promise allows), never lost.
    pub fn remove(&self, envelope: &Envelope) {
        if let Ok(place) = stored(envelope) {
            self.log.done(place, &envelope.id);
        }
    }

    /// Returns once every "done" and update asked for so far is written and finished segments
    /// are deleted; for shutdown.
    pub async fn settle(&self) {
        self.log.settle().await
    }

    /// Blocking: reads every queued message back after a start (see [`recovery`]).
    pub fn recover(&self) -> io::Result<Recovered> {
        recovery::recover(self.log.dir(), &self.quarantine_dir(), &self.log)
    }
}

fn stored(envelope: &Envelope) -> io::Result<Stored> {
    envelope.stored.ok_or_else(|| {
        io::Error::other(format!("message {} has no place in the spool", envelope.id))
    })
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
