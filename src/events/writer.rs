//! The event log's writer: one thread that appends the lines handed to it, in batches.
//!
//! Handing a line over is a channel send, so sessions and deliveries never wait for the disk.
//! The thread takes every line waiting, writes them with one `write` and goes back to waiting;
//! it ends when the log is dropped, after writing what it was given.

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
}

pub(super) struct Writer {
    sender: mpsc::UnboundedSender<Entry>,
}

impl Writer {
    /// Opens (creating) the file at `path` for appending and starts the thread.
    pub(super) fn start(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Events name senders and recipients: readable by the relay's user only.
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
        let (sender, receiver) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("event-log".into())
            .spawn(move || run(file, receiver))?;
        Ok(Self { sender })
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

fn run(mut file: File, mut receiver: mpsc::UnboundedReceiver<Entry>) {
    let mut batch = Vec::with_capacity(64 * 1024);
    let mut flushes = Vec::new();
    while let Some(first) = receiver.blocking_recv() {
        let mut next = Some(first);
        let mut lines = 0;
        while let Some(entry) = next.take() {
            match entry {
                Entry::Line(line) => {
                    batch.extend_from_slice(line.as_bytes());
                    lines += 1;
                }
                Entry::Flush(done) => flushes.push(done),
            }
            if lines < MAX_BATCH {
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
}
