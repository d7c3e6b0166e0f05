//! Receiving one message into the spool without holding it all in memory.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

use super::{Envelope, Spool};

/// Content is written to disk in pieces of about this size; a message smaller than this is
/// written in one go at commit time.
const FLUSH_THRESHOLD: usize = 256 * 1024;

/// A message being received. Dropping it without [`MessageWriter::commit`] removes its
/// temporary file: nothing of an unacknowledged message stays behind.
pub struct MessageWriter {
    spool: Spool,
    id: String,
    tmp_path: PathBuf,
    file: Option<File>,
    buffer: Vec<u8>,
    written: u64,
}

impl MessageWriter {
    pub(super) fn new(spool: Spool, id: String) -> Self {
        let tmp_path = spool.tmp_dir().join(format!("{id}.msg"));
        Self {
            spool,
            id,
            tmp_path,
            file: None,
            buffer: Vec::with_capacity(8 * 1024),
            written: 0,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Bytes of content so far.
    pub fn size(&self) -> u64 {
        self.written + self.buffer.len() as u64
    }

    /// The buffer to append content to; call [`MessageWriter::flush_if_large`] afterwards.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buffer
    }

    /// Writes the buffer out once it is large, on the blocking pool.
    pub async fn flush_if_large(&mut self) -> io::Result<()> {
        if self.buffer.len() < FLUSH_THRESHOLD {
            return Ok(());
        }
        let file = self.file.take();
        let path = self.tmp_path.clone();
        let mut buffer = std::mem::take(&mut self.buffer);
        let length = buffer.len() as u64;
        let (file, buffer) = tokio::task::spawn_blocking(move || -> io::Result<_> {
            let mut file = match file {
                Some(file) => file,
                None => create_new(&path)?,
            };
            file.write_all(&buffer)?;
            buffer.clear();
            Ok((file, buffer))
        })
        .await
        .map_err(io::Error::other)??;
        self.written += length;
        self.file = Some(file);
        self.buffer = buffer;
        Ok(())
    }

    /// Makes the message durable with its envelope (see the module docs for the order); the
    /// caller may acknowledge it once this returns `Ok`.
    /// `envelope.size` must be [`MessageWriter::size`]: start-up checks the two agree.
    pub async fn commit(mut self, envelope: Envelope) -> io::Result<()> {
        if envelope.size != self.size() {
            return Err(io::Error::other(format!(
                "envelope size {} does not match the {} bytes written",
                envelope.size,
                self.size()
            )));
        }
        let file = self.file.take();
        let buffer = std::mem::take(&mut self.buffer);
        let path = self.tmp_path.clone();
        let spool = self.spool.clone();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            let mut file = match file {
                Some(file) => file,
                None => create_new(&path)?,
            };
            file.write_all(&buffer)?;
            drop(file);
            spool.commit_blocking(&path, &envelope)
        })
        .await
        .map_err(io::Error::other)??;
        // Renamed into the queue: the temporary file is gone, nothing to clean up.
        self.tmp_path = PathBuf::new();
        self.spool.sync().await
    }
}

impl Drop for MessageWriter {
    fn drop(&mut self) {
        // Not committed (refused, aborted, or the commit failed part-way): remove what exists.
        if !self.tmp_path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

fn create_new(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}
