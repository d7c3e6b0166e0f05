//! The feedback inbox: bounces and reports the relay received for itself, kept as files until
//! they are processed, so a `250` for one is as durable as for relayed mail.
//!
//! `spool/feedback/<id>.eml` holds the message as it arrived behind one added field,
//! `X-Poolrelay-Envelope:` (the SMTP envelope as JSON on one line), so each file is still a
//! message any mail tool can open. Written to a temporary name, fsynced, renamed, and the folder
//! fsynced before the client hears `250`. Processed files are deleted; those that cannot be read
//! or matched move to `spool/feedback-unmatched/`, where they stay for an operator, for
//! `[feedback] keep_unmatched` and up to `max_unmatched` of them.

use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

const ENVELOPE_FIELD: &[u8] = b"X-Poolrelay-Envelope: ";

/// The SMTP envelope of a received report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxEnvelope {
    pub id: String,
    pub sender: String,
    pub recipients: Vec<String>,
    pub client_ip: IpAddr,
    pub helo: String,
    pub received_at: u64,
}

/// Reports stored and not yet processed beyond which new ones are refused with `452 4.3.1`
/// (try later): reports are internet input, and a flood must not fill the disk faster than the
/// processor empties the inbox.
pub const MAX_WAITING: usize = 1_000;

#[derive(Debug, Clone)]
pub struct Inbox {
    dir: PathBuf,
    unmatched: PathBuf,
    /// Reports stored (or found at start) and not yet processed; shared by every clone.
    pending: Arc<AtomicUsize>,
    /// [`MAX_WAITING`], lower in tests.
    max_waiting: usize,
}

impl Inbox {
    /// The inbox under `spool_root` (folders created when missing).
    pub fn open(spool_root: &Path) -> io::Result<Self> {
        let dir = spool_root.join("feedback");
        let unmatched = spool_root.join("feedback-unmatched");
        fs::create_dir_all(&dir)?;
        fs::create_dir_all(&unmatched)?;
        Ok(Self {
            dir,
            unmatched,
            pending: Arc::default(),
            max_waiting: MAX_WAITING,
        })
    }

    pub fn unmatched_dir(&self) -> &Path {
        &self.unmatched
    }

    /// Whether the inbox holds its limit ([`MAX_WAITING`]) of reports waiting to be processed.
    pub fn is_full(&self) -> bool {
        self.pending.load(Ordering::Acquire) >= self.max_waiting
    }

    #[cfg(test)]
    pub fn with_max_waiting(self, max_waiting: usize) -> Self {
        Self {
            max_waiting,
            ..self
        }
    }

    /// The processor is done with one report listed by [`Inbox::waiting`] or announced after
    /// [`Inbox::store`].
    pub fn processed(&self) {
        let _ = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Blocking: stores a report durably and returns its path.
    pub fn store(&self, envelope: &InboxEnvelope, content: &[u8]) -> io::Result<PathBuf> {
        let path = self.dir.join(format!("{}.eml", envelope.id));
        let temporary = self.dir.join(format!(".{}.tmp", envelope.id));
        let json = serde_json::to_vec(envelope).map_err(io::Error::other)?;
        let mut file = fs::File::create(&temporary)?;
        file.write_all(ENVELOPE_FIELD)?;
        file.write_all(&json)?;
        file.write_all(b"\r\n")?;
        file.write_all(content)?;
        file.sync_data()?;
        fs::rename(&temporary, &path)?;
        fs::File::open(&self.dir)?.sync_all()?;
        self.pending.fetch_add(1, Ordering::AcqRel);
        Ok(path)
    }

    /// Reports waiting to be processed (after a restart), oldest first; each counts as waiting
    /// until [`Inbox::processed`].
    pub fn waiting(&self) -> io::Result<Vec<PathBuf>> {
        let mut paths: Vec<PathBuf> = fs::read_dir(&self.dir)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "eml"))
            .collect();
        paths.sort();
        self.pending.fetch_add(paths.len(), Ordering::AcqRel);
        Ok(paths)
    }

    /// Blocking: a stored report's envelope and content.
    pub fn read(path: &Path) -> io::Result<(InboxEnvelope, Vec<u8>)> {
        let mut bytes = fs::read(path)?;
        let invalid = || io::Error::new(io::ErrorKind::InvalidData, "not an inbox file");
        let rest = bytes.strip_prefix(ENVELOPE_FIELD).ok_or_else(invalid)?;
        let end = memchr::memmem::find(rest, b"\r\n").ok_or_else(invalid)?;
        let envelope = serde_json::from_slice(&rest[..end]).map_err(|_| invalid())?;
        // The content is what follows the envelope line: moved to the front, not copied.
        bytes.drain(..ENVELOPE_FIELD.len() + end + 2);
        Ok((envelope, bytes))
    }

    /// Blocking: moves a report that cannot be used to the unmatched folder.
    pub fn set_aside(&self, path: &Path) -> io::Result<PathBuf> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::other("no file name"))?;
        let target = self.unmatched.join(name);
        fs::rename(path, &target)?;
        fs::File::open(&self.unmatched)?.sync_all()?;
        Ok(target)
    }

    /// Blocking: a processed report is deleted.
    pub fn done(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    /// Blocking: deletes the unmatched reports older than `keep` (by the time they arrived)
    /// and then the oldest beyond the `max` newest; returns how many were deleted.
    pub fn prune_unmatched(
        &self,
        keep: Duration,
        max: usize,
        now: SystemTime,
    ) -> io::Result<usize> {
        let mut kept: Vec<(SystemTime, PathBuf)> = Vec::new();
        let mut deleted = 0;
        for entry in fs::read_dir(&self.unmatched)? {
            let entry = entry?;
            let Ok(modified) = entry.metadata().and_then(|m| m.modified()) else {
                continue;
            };
            let age = now.duration_since(modified).unwrap_or_default();
            if age > keep {
                fs::remove_file(entry.path())?;
                deleted += 1;
            } else {
                kept.push((modified, entry.path()));
            }
        }
        if kept.len() > max {
            kept.sort();
            for (_, path) in &kept[..kept.len() - max] {
                fs::remove_file(path)?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_reports_read_back_and_move_aside() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(dir.path()).unwrap();
        let envelope = InboxEnvelope {
            id: "0006421c8f3e1a2b-00000c".into(),
            sender: String::new(),
            recipients: vec!["b-x@bounce.example.test".into()],
            client_ip: [192, 0, 2, 1].into(),
            helo: "mx\r\nInjected: yes".into(),
            received_at: 7,
        };
        let path = inbox
            .store(&envelope, b"Subject: x\r\n\r\nbody\r\n")
            .unwrap();
        assert_eq!(inbox.waiting().unwrap(), vec![path.clone()]);
        let (read, content) = Inbox::read(&path).unwrap();
        assert_eq!(read, envelope);
        assert_eq!(content, b"Subject: x\r\n\r\nbody\r\n");
        let aside = inbox.set_aside(&path).unwrap();
        assert!(inbox.waiting().unwrap().is_empty());
        assert!(aside.starts_with(inbox.unmatched_dir()));
        fs::write(&path, b"garbage").unwrap();
        assert!(Inbox::read(&path).is_err());
    }

    #[test]
    fn unmatched_reports_are_pruned_by_age_then_by_count() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(dir.path()).unwrap();
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        for (name, age_days) in [("a", 40), ("b", 20), ("c", 10), ("d", 5), ("e", 1)] {
            let path = inbox.unmatched_dir().join(format!("{name}.eml"));
            let file = fs::File::create(&path).unwrap();
            file.set_modified(now - day * age_days).unwrap();
        }
        let names = || {
            let mut names: Vec<String> = fs::read_dir(inbox.unmatched_dir())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(inbox.prune_unmatched(day * 30, 10, now).unwrap(), 1);
        assert_eq!(names(), ["b.eml", "c.eml", "d.eml", "e.eml"]);
        assert_eq!(inbox.prune_unmatched(day * 30, 2, now).unwrap(), 2);
        assert_eq!(names(), ["d.eml", "e.eml"]);
        assert_eq!(inbox.prune_unmatched(day * 30, 2, now).unwrap(), 0);
    }
}
