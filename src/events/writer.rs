//! The event log's writer: one thread that appends the lines handed to it, in batches.
//!
//! Handing a line over is a channel send, so sessions and deliveries never wait for the disk.
//! The thread takes every line waiting, writes them with one `write` and goes back to waiting;
//! it ends when the log is dropped, after writing what it was given. On a reload it opens the
//! path again, so a log rotated away (renamed by logrotate) is followed by a new file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use tokio::sync::{mpsc, oneshot};

/// At most this many lines go into one write.
const MAX_BATCH: usize = 1024;

enum Entry {
    Line(String),
    /// Answered once every line sent before it is written.
    Flush(oneshot::Sender<()>),
    /// Lines before it go to the file open now, lines after it to the file at the path now.
    Reopen(oneshot::Sender<io::Result<()>>),
}

pub(super) struct Writer {
    sender: mpsc::UnboundedSender<Entry>,
}

/// Opens (creating) the log for appending, readable by the relay's user only (events name
/// senders and recipients).
fn open_log(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?
    };
    // A log created by an earlier version may be readable by others.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(file)
}

impl Writer {
    /// Opens (creating) the file at `path` for appending and starts the thread.
    pub(super) fn start(path: &Path) -> io::Result<Self> {
        let file = open_log(path)?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("event-log".into())
            .spawn(move || run(&path, file, receiver))?;
        Ok(Self { sender })
    }

    /// Writes what was handed over so far, then opens the path again (after log rotation).
    /// On an error the old file stays in use.
    pub(super) async fn reopen(&self) -> io::Result<()> {
        let (done, reopened) = oneshot::channel();
        self.sender
            .send(Entry::Reopen(done))
            .map_err(|_| io::Error::other("the event log's thread has stopped"))?;
        reopened
            .await
            .map_err(|_| io::Error::other("the event log's thread has stopped"))?
    }

    pub(super) fn append(&self, line: String) {
        // Fails only if the thread is gone (it never stops while the log exists).
        let _ = self.sender.send(Entry::Line(line));
    }

    pub(super) async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.sender.send(Entry::Flush(done)).is_ok() {
            let _ = written.await;
        }
    }
}

fn run(path: &Path, mut file: File, mut receiver: mpsc::UnboundedReceiver<Entry>) {
    let mut batch = Vec::with_capacity(64 * 1024);
    let mut flushes = Vec::new();
    while let Some(first) = receiver.blocking_recv() {
        let mut next = Some(first);
        let mut lines = 0;
        let mut reopen = None;
        while let Some(entry) = next.take() {
            match entry {
                Entry::Line(line) => {
                    batch.extend_from_slice(line.as_bytes());
                    lines += 1;
                }
                Entry::Flush(done) => flushes.push(done),
                // The batch so far belongs to the old file: write it before reopening.
                Entry::Reopen(done) => reopen = Some(done),
            }
            if lines < MAX_BATCH && reopen.is_none() {
                next = receiver.try_recv().ok();
            }
        }
        if let Err(error) = file.write_all(&batch) {
            tracing::error!(%error, lines, "cannot write to the event log");
        }
        batch.clear();
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
        if let Some(done) = reopen {
            let reopened = open_log(path).map(|new| file = new);
            let _ = done.send(reopened);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_line_is_written_once_in_order_before_flush_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events/log.jsonl");
        let writer = Writer::start(&path).unwrap();
        for n in 0..5000 {
            writer.append(format!("{n}\n"));
        }
        writer.flush().await;
        let text = std::fs::read_to_string(&path).unwrap();
        let numbers: Vec<usize> = text.lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(numbers, (0..5000).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_a_rotation_reopen_writes_to_a_new_file_at_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let rotated = dir.path().join("events.jsonl.1");
        let writer = Writer::start(&path).unwrap();
        writer.append("before\n".into());
        writer.flush().await;
        std::fs::rename(&path, &rotated).unwrap();
        writer.append("between\n".into());
        writer.reopen().await.unwrap();
        writer.append("after\n".into());
        writer.flush().await;
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            "before\nbetween\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
    }
}
