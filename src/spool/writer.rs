//! Receiving one message into the spool without holding it all in memory.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use super::envelope::Envelope;
use super::group_sync::GroupSync;
use super::trailer;

/// Content is written to disk in pieces of about this size; a message smaller than this is
/// written in one go at commit time.
const FLUSH_THRESHOLD: usize = 256 * 1024;

/// A message being received into `queue/ID.msg`. Until [`MessageWriter::commit`] appends the
/// footer, the file is not a message (start-up removes it); dropping the writer without
/// committing removes it at once.
pub struct MessageWriter {
    /// The group commit that makes the file durable.
    sync: Arc<GroupSync>,
    path: PathBuf,
    file: Option<File>,
    buffer: Vec<u8>,
    written: u64,
    checksum: crc32fast::Hasher,
    committed: bool,
}

impl MessageWriter {
    pub(super) fn new(sync: Arc<GroupSync>, path: PathBuf) -> Self {
        Self {
            sync,
            path,
            file: None,
            buffer: Vec::with_capacity(8 * 1024),
            written: 0,
            checksum: crc32fast::Hasher::new(),
            committed: false,
        }
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
        self.checksum.update(&self.buffer);
        let length = self.buffer.len() as u64;
        let file = self.file.take();
        let path = self.path.clone();
        let mut buffer = std::mem::take(&mut self.buffer);
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
    /// caller may acknowledge it once this returns `Ok`. `envelope.size` must be
    /// [`MessageWriter::size`].
    pub async fn commit(mut self, envelope: Envelope) -> io::Result<()> {
        if envelope.size != self.size() {
            return Err(io::Error::other(format!(
                "envelope size {} does not match the {} bytes written",
                envelope.size,
                self.size()
            )));
        }
        self.checksum.update(&self.buffer);
        let footer = trailer::encode(&envelope, self.checksum.clone().finalize())
            .map_err(io::Error::other)?;
        let file = self.file.take();
        let path = self.path.clone();
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.extend_from_slice(&footer);
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            let mut file = match file {
                Some(file) => file,
                None => create_new(&path)?,
            };
            file.write_all(&buffer)
        })
        .await
        .map_err(io::Error::other)??;
        self.sync.sync().await?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for MessageWriter {
    fn drop(&mut self) {
        // Not committed (refused, aborted, or the commit failed): remove what exists. A file
        // whose footer was written but whose flush failed is removed too: it was not acknowledged.
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn create_new(path: &PathBuf) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}
