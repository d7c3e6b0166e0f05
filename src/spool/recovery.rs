//! Reading the spool back at start-up.
//!
//! Each segment is read on its own (everything about a message is in the segment that holds
//! it): its messages, then the newer envelopes and "done" records that follow them. What cannot
//! be trusted is copied to `quarantine/` and never delivered: a damaged record, or the tail
//! after the last whole record (a message that was being written when the relay stopped, never
//! acknowledged). The tail is then cut off the segment, so the records appended to it later can
//! be read. A segment with no message left is deleted; the others are handed to the log writer,
//! which deletes them once their messages are done.
//!
//! Spools written before the segment log (one `ID.msg` file per message, `ID.env` for its
//! newer envelope) are read as before and their messages moved into the log.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::envelope::{Envelope, Stored};
use super::held::HeldContent;
use super::log::{Log, segment_number};
use super::record::{self, Kind};
use super::trailer;
use std::sync::Arc;

/// What [`recover`] found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The queued messages, in order of arrival.
    pub envelopes: Vec<Envelope>,
    /// What was moved or copied to quarantine, with the reason.
    pub quarantined: Vec<(PathBuf, String)>,
}

struct Recovery<'a> {
    quarantine: &'a Path,
    log: &'a Log,
    found: Recovered,
}

/// Blocking: reads every queued message back. Anything that is not a complete message is
/// quarantined and reported, never deleted, never delivered, and never stops the start.
pub fn recover(queue: &Path, quarantine: &Path, log: &Log) -> io::Result<Recovered> {
    let mut recovery = Recovery {
        quarantine,
        log,
        found: Recovered::default(),
    };
    let mut segments = Vec::new();
    let mut legacy = Vec::new();
    let mut updates = Vec::new();
    for entry in fs::read_dir(queue)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let is_file = path.symlink_metadata().is_ok_and(|m| m.is_file());
        match (
            segment_number(name),
            path.extension().and_then(|e| e.to_str()),
        ) {
            (Some(number), _) if is_file => segments.push((number, path)),
            (_, Some("msg")) if is_file => legacy.push(path),
            (_, Some("env")) if is_file => updates.push(path),
            _ => recovery.quarantine_file(&path, "unexpected entry in the queue".into())?,
        }
    }
    segments.sort();
    let mut read: Vec<(u64, PathBuf, Vec<Envelope>)> = Vec::new();
    for (number, path) in segments {
        if let Some(live) = recovery.read_segment(number, &path)? {
            read.push((number, path, live));
        }
    }
    recovery.keep_latest_copies(read)?;
    recovery.migrate_legacy(legacy, updates)?;
    let mut found = recovery.found;
    found
        .envelopes
        .sort_by(|a, b| a.received_at.cmp(&b.received_at).then(a.id.cmp(&b.id)));
    Ok(found)
}

impl Recovery<'_> {
    /// Reads one segment: quarantines what cannot be trusted and returns the messages in it
    /// that are not done (`None`: the whole file went to quarantine).
    fn read_segment(&mut self, number: u64, path: &Path) -> io::Result<Option<Vec<Envelope>>> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) => {
                self.quarantine_file(path, format!("cannot be read: {error}"))?;
                return Ok(None);
            }
        };
        let scanned = record::scan(&bytes);
        if let Some((0, reason)) = &scanned.tail {
            self.quarantine_file(path, reason.clone())?;
            return Ok(None);
        }
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let (live, problems) = read_records(number, &bytes, &scanned);
        for (range, reason) in problems {
            let at = format!("{name}.at-{}", range.start);
            self.quarantine_bytes(&at, &bytes[range], reason)?;
        }
        for (range, reason) in &scanned.damaged {
            let at = format!("{name}.at-{}", range.start);
            self.quarantine_bytes(&at, &bytes[range.clone()], reason.clone())?;
        }
        if let Some((at, reason)) = &scanned.tail {
            self.quarantine_bytes(&format!("{name}.at-{at}"), &bytes[*at..], reason.clone())?;
            let file = fs::OpenOptions::new().write(true).open(path)?;
            file.set_len(*at as u64)?;
            file.sync_all()?;
        }
        Ok(Some(live.into_values().collect()))
    }

    /// A deferred message is moved to a segment of the deferred lane and then marked done where
    /// it was; a crash in between leaves two copies. The one with more attempts is kept (the
    /// later segment on a tie) and the other is marked done now. Then segments with messages
    /// left go to the log writer, and the others are deleted.
    fn keep_latest_copies(&mut self, read: Vec<(u64, PathBuf, Vec<Envelope>)>) -> io::Result<()> {
        // Only a message attempted before can have two copies (the newer one was written when
        // it was deferred), so only those are looked at: usually a few among many.
        let mut newest: HashMap<&str, (u32, u64)> = HashMap::new();
        for (number, _, live) in &read {
            for envelope in live.iter().filter(|e| e.attempts > 0) {
                let best = newest
                    .entry(envelope.id.as_str())
                    .or_insert((envelope.attempts, *number));
                *best = (*best).max((envelope.attempts, *number));
            }
        }
        let mut older: Vec<(u64, String, Stored)> = Vec::new();
        for (number, _, live) in &read {
            for envelope in live {
                let best = newest.get(envelope.id.as_str());
                if best.is_some_and(|&(attempts, segment)| {
                    (envelope.attempts, *number) != (attempts, segment)
                }) && let Some(place) = envelope.stored
                {
                    older.push((*number, envelope.id.clone(), place));
                }
            }
        }
        drop(newest);
        let mut older_in: HashMap<u64, std::collections::HashSet<String>> = HashMap::new();
        for (number, id, _) in &older {
            older_in.entry(*number).or_default().insert(id.clone());
        }
        for (number, path, live) in read {
            if live.is_empty() {
                fs::remove_file(&path)?;
                continue;
            }
            self.log.adopt(number, live.len());
            let superseded = older_in.get(&number);
            for envelope in live {
                if !superseded.is_some_and(|ids| ids.contains(&envelope.id)) {
                    self.found.envelopes.push(envelope);
                }
            }
        }
        for (_, id, place) in older {
            self.log.done(place, &id);
        }
        Ok(())
    }

    /// Moves one-file-per-message spool entries into the log, then removes them.
    fn migrate_legacy(&mut self, messages: Vec<PathBuf>, updates: Vec<PathBuf>) -> io::Result<()> {
        let stem = |path: &Path| {
            path.file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string()
        };
        let mut newer: HashMap<String, PathBuf> =
            updates.into_iter().map(|p| (stem(&p), p)).collect();
        for path in messages {
            let update = newer.remove(&stem(&path));
            let (content, envelope) = match read_legacy(&path) {
                Ok(found) => found,
                Err(reason) => {
                    self.quarantine_file(&path, reason)?;
                    continue;
                }
            };
            let envelope = match update.as_deref().map(read_legacy_update) {
                Some(Ok(newer)) if newer.id == envelope.id && newer.size == envelope.size => newer,
                Some(_) => {
                    let reason =
                        "envelope update unreadable or not its message's; the original is used";
                    self.quarantine_file(update.as_deref().unwrap_or(&path), reason.into())?;
                    envelope
                }
                None => envelope,
            };
            if !self.found.envelopes.iter().any(|e| e.id == envelope.id) {
                let stored = self.append(&content, &envelope)?;
                let mut envelope = envelope;
                envelope.stored = Some(stored);
                self.found.envelopes.push(envelope);
            }
            for done in [Some(path), update].into_iter().flatten() {
                match fs::remove_file(&done) {
                    Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                    _ => {}
                }
            }
        }
        // Updates whose message is gone (delivered, or quarantined above).
        for (_, path) in newer {
            let _ = fs::remove_file(path);
        }
        Ok(())
    }

    fn append(&self, content: &[u8], envelope: &Envelope) -> io::Result<Stored> {
        let footer =
            trailer::encode(envelope, crc32fast::hash(content)).map_err(io::Error::other)?;
        let mut payload = Vec::with_capacity(content.len() + footer.len());
        payload.extend_from_slice(content);
        payload.extend_from_slice(&footer);
        let header = record::header(
            Kind::Message,
            payload.len() as u64,
            crc32fast::hash(&payload),
        );
        let size = payload.len();
        self.log
            .append_blocking(header, Arc::new(HeldContent::new(payload, size)))
    }

    /// Moves `path` into `quarantine/`, under a name not taken yet.
    fn quarantine_file(&mut self, path: &Path, reason: String) -> io::Result<()> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let target = self.free_name(&name);
        fs::rename(path, &target)?;
        self.found.quarantined.push((target, reason));
        Ok(())
    }

    /// Writes `bytes` (a part of a segment) to a new file in `quarantine/`.
    fn quarantine_bytes(&mut self, name: &str, bytes: &[u8], reason: String) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let target = self.free_name(name);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&target)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        self.found.quarantined.push((target, reason));
        Ok(())
    }

    fn free_name(&self, name: &str) -> PathBuf {
        let mut target = self.quarantine.join(name);
        let mut n = 1;
        while target.symlink_metadata().is_ok() {
            target = self.quarantine.join(format!("{name}.{n}"));
            n += 1;
        }
        target
    }
}

/// Records that could not be used: their byte range in the segment, and why.
type Problems = Vec<(Range<usize>, String)>;

/// The messages of segment `number` that are not done, with their latest envelope, and the
/// records that could not be used (record range in `bytes`, reason).
fn read_records(
    number: u64,
    bytes: &[u8],
    scanned: &record::Scanned,
) -> (HashMap<String, Envelope>, Problems) {
    let mut live: HashMap<String, Envelope> = HashMap::new();
    let mut problems = Vec::new();
    for found in &scanned.records {
        let payload = &bytes[found.payload.clone()];
        let problem = match found.kind {
            Kind::Message => match trailer::decode(payload) {
                trailer::Decoded::Complete(mut envelope) => {
                    envelope.stored = Some(Stored {
                        segment: number,
                        offset: found.payload.start as u64,
                    });
                    live.insert(envelope.id.clone(), *envelope);
                    None
                }
                trailer::Decoded::Incomplete => Some("a message record without its footer".into()),
                trailer::Decoded::Corrupt(reason) => Some(reason),
            },
            Kind::Update => apply_update(&mut live, payload),
            Kind::Done => match record::parse_done(payload) {
                // Only the copy at that place: a message moved within one segment has a newer
                // copy after it.
                Some((offset, id)) => {
                    let at = live.get(&id).and_then(|e| e.stored).map(|s| s.offset);
                    if at == Some(offset) {
                        live.remove(&id);
                    }
                    None
                }
                None => Some("a done record that names no message".into()),
            },
        };
        if let Some(reason) = problem {
            problems.push((
                found.payload.start - record::HEADER_LEN..found.payload.end,
                reason,
            ));
        }
    }
    (live, problems)
}

/// Read-only: the messages queued in the spool folder `queue` (a relay may be running on it),
/// in order of arrival, each once. For operators and tests; start-up uses [`recover`].
///
/// A message deferred moments ago can be in two segments (its new copy written, the old one not
/// yet marked done): as at start-up, the copy with the most attempts, then in the newest
/// segment, is the message.
pub fn queued(queue: &Path) -> io::Result<Vec<Envelope>> {
    let mut latest: HashMap<String, (u32, u64, Envelope)> = HashMap::new();
    for entry in fs::read_dir(queue)? {
        let entry = entry?;
        let Some(number) = entry.file_name().to_str().and_then(segment_number) else {
            continue;
        };
        let bytes = match fs::read(entry.path()) {
            Ok(bytes) => bytes,
            // Deleted since the folder was listed: all its messages were done.
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        let scanned = record::scan(&bytes);
        for envelope in read_records(number, &bytes, &scanned).0.into_values() {
            let rank = (envelope.attempts, number);
            match latest.get(&envelope.id) {
                Some((attempts, segment, _)) if (*attempts, *segment) >= rank => {}
                _ => {
                    latest.insert(envelope.id.clone(), (rank.0, rank.1, envelope));
                }
            }
        }
    }
    let mut envelopes: Vec<Envelope> = latest.into_values().map(|(_, _, e)| e).collect();
    envelopes.sort_by(|a, b| a.received_at.cmp(&b.received_at).then(a.id.cmp(&b.id)));
    Ok(envelopes)
}

/// Replaces a message's envelope by a newer one from an update record, or says why not.
fn apply_update(live: &mut HashMap<String, Envelope>, payload: &[u8]) -> Option<String> {
    let update: Envelope = match serde_json::from_slice(payload) {
        Ok(update) => update,
        Err(error) => {
            return Some(format!(
                "envelope update unreadable ({error}); the original is used"
            ));
        }
    };
    match live.get_mut(&update.id) {
        Some(known) if known.size == update.size => {
            let stored = known.stored;
            *known = update;
            known.stored = stored;
            None
        }
        Some(_) => Some("envelope update does not match its message; the original is used".into()),
        // Its message was quarantined above.
        None => None,
    }
}

/// The content and envelope of a complete one-file message, or why it is not one.
fn read_legacy(path: &Path) -> Result<(Vec<u8>, Envelope), String> {
    let mut bytes = fs::read(path).map_err(|error| format!("cannot be read: {error}"))?;
    match trailer::decode(&bytes) {
        trailer::Decoded::Complete(envelope) => {
            if path.file_stem().and_then(|s| s.to_str()) != Some(envelope.id.as_str()) {
                return Err(format!(
                    "envelope id {:?} does not match the file name",
                    envelope.id
                ));
            }
            bytes.truncate(envelope.size as usize);
            Ok((bytes, *envelope))
        }
        // Most likely a message still arriving when the relay stopped (never acknowledged), but
        // a truncated file looks the same: keep it.
        trailer::Decoded::Incomplete => {
            Err("no footer: unfinished when the relay stopped, or truncated".to_string())
        }
        trailer::Decoded::Corrupt(reason) => Err(reason),
    }
}

fn read_legacy_update(path: &Path) -> Result<Envelope, String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    serde_json::from_slice::<Envelope>(&bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::log_thread::segment_name;
    use crate::spool::{Recipient, record::SEGMENT_MAGIC};

    fn message_record(id: &str, attempts: u32) -> Vec<u8> {
        let content = format!("Subject: {id}\r\n\r\nbody\r\n").into_bytes();
        let envelope = Envelope {
            id: id.into(),
            recipients: vec![Recipient::new("b@example.test".into())],
            size: content.len() as u64,
            attempts,
            ..Envelope::default()
        };
        let mut payload = content.clone();
        payload.extend(trailer::encode(&envelope, crc32fast::hash(&content)).unwrap());
        record::encode(Kind::Message, &payload)
    }

    /// A segment file's bytes: the magic, then `records`.
    fn segment(records: &[Vec<u8>]) -> Vec<u8> {
        let mut bytes = SEGMENT_MAGIC.to_vec();
        records.iter().for_each(|r| bytes.extend_from_slice(r));
        bytes
    }

    /// A crash between moving a deferred message and marking its old copy done leaves two
    /// copies: the one with more attempts is kept, the other is marked done in its segment.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn of_two_copies_of_a_message_the_later_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (queue, quarantine) = (dir.path().join("queue"), dir.path().join("quarantine"));
        fs::create_dir_all(&queue).unwrap();
        fs::create_dir_all(&quarantine).unwrap();
        let first = segment(&[message_record("moved", 0), message_record("other", 0)]);
        fs::write(queue.join(segment_name(1)), first).unwrap();
        fs::write(
            queue.join(segment_name(2)),
            segment(&[message_record("moved", 1)]),
        )
        .unwrap();
        let log = Log::start(&queue, 3).unwrap();
        let found = tokio::task::block_in_place(|| recover(&queue, &quarantine, &log)).unwrap();
        let mut kept: Vec<(String, u32, u64)> = found
            .envelopes
            .iter()
            .map(|e| (e.id.clone(), e.attempts, e.stored.unwrap().segment))
            .collect();
        kept.sort();
        assert_eq!(kept, [("moved".into(), 1, 2), ("other".into(), 0, 1)]);
        log.settle().await;
        let bytes = fs::read(queue.join(segment_name(1))).unwrap();
        let scanned = record::scan(&bytes);
        let done: Vec<(u64, String)> = scanned
            .records
            .iter()
            .filter(|r| r.kind == Kind::Done)
            .filter_map(|r| record::parse_done(&bytes[r.payload.clone()]))
            .collect();
        let first_payload = (SEGMENT_MAGIC.len() + record::HEADER_LEN) as u64;
        assert_eq!(
            done,
            [(first_payload, "moved".to_string())],
            "the older copy is marked done"
        );
    }

    /// Read while a relay moves a deferred message: both copies are on disk, `queued` lists the
    /// message once, as its later copy.
    #[test]
    fn queued_lists_a_message_in_two_segments_once() {
        let dir = tempfile::tempdir().unwrap();
        let queue = dir.path().join("queue");
        fs::create_dir_all(&queue).unwrap();
        let first = segment(&[message_record("moved", 0), message_record("other", 0)]);
        fs::write(queue.join(segment_name(1)), first).unwrap();
        fs::write(
            queue.join(segment_name(2)),
            segment(&[message_record("moved", 1)]),
        )
        .unwrap();
        let mut listed: Vec<(String, u32)> = queued(&queue)
            .unwrap()
            .into_iter()
            .map(|e| (e.id, e.attempts))
            .collect();
        listed.sort();
        assert_eq!(listed, [("moved".into(), 1), ("other".into(), 0)]);
    }
}
