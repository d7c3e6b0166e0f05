//! Receiving one message into the spool without holding a large one all in memory.
//!
//! A message is built in memory and, at commit, handed whole to the log writer, which appends it
//! to the shared active segment with the others waiting at that moment (see [`super::log`]).
//! A message that grows past [`OWN_SEGMENT_THRESHOLD`] is streamed instead into a segment of its
//! own while it arrives, so memory per session stays bounded; its record header is written last,
//! so until the commit the file holds no record at all.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::sync::Arc;

use super::envelope::{Envelope, Stored};
use super::held::HeldContent;
use super::log::{Lane, Log, create_segment};
use super::record::{self, HEADER_LEN, Kind, SEGMENT_MAGIC};
use super::trailer;
use crate::smtp::dot_stuff::AsIsCheck;

/// Content beyond this size goes to a segment of its own, written in pieces of about this size.
pub(super) const OWN_SEGMENT_THRESHOLD: usize = 256 * 1024;

/// The content of a message in pieces, its header block first.
pub type Pieces<'a> = dyn Iterator<Item = io::Result<Cow<'a, [u8]>>> + 'a;

/// Computes what goes on top of a message once its whole content is known (a DKIM
/// signature). Runs on the stamp threads (large messages: the blocking pool, with the copy);
/// gets the content in pieces.
pub type Stamp = Box<dyn for<'a> FnOnce(&mut Pieces<'a>) -> io::Result<Vec<u8>> + Send>;

/// A large message's own segment while it is written.
struct OwnSegment {
    number: u64,
    file: File,
}

/// A message being received. Nothing is in the spool until [`MessageWriter::commit`] returns;
/// dropping the writer without committing removes whatever was written.
pub struct MessageWriter {
    log: Arc<Log>,
    own: Option<OwnSegment>,
    buffer: Vec<u8>,
    written: u64,
    checksum: crc32fast::Hasher,
    /// Whether the content could be sent as it is (only followed for a large message).
    as_is: AsIsCheck,
    /// Whether the stamp and header block put in front of a large message's body can be sent
    /// as they are.
    front_as_is: bool,
    committed: bool,
}

impl MessageWriter {
    pub(super) fn new(log: Arc<Log>) -> Self {
        Self {
            log,
            own: None,
            buffer: Vec::with_capacity(8 * 1024),
            written: 0,
            checksum: crc32fast::Hasher::new(),
            as_is: AsIsCheck::default(),
            front_as_is: true,
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

    /// Writes the buffer to the message's own segment once it is large, on the blocking pool.
    pub async fn flush_if_large(&mut self) -> io::Result<()> {
        if self.buffer.len() < OWN_SEGMENT_THRESHOLD {
            return Ok(());
        }
        self.checksum.update(&self.buffer);
        self.as_is.feed(&self.buffer);
        let length = self.buffer.len() as u64;
        let own = self.own.take();
        let number = own
            .as_ref()
            .map_or_else(|| self.log.new_segment_number(), |o| o.number);
        let path = self.log.segment_path(number);
        let mut buffer = std::mem::take(&mut self.buffer);
        let result = tokio::task::spawn_blocking(move || -> io::Result<_> {
            let mut file = match own {
                Some(own) => own.file,
                None => {
                    let mut file = create_segment(&path)?;
                    // The record header is written at commit; zeros until then are no record.
                    file.write_all(&[0u8; HEADER_LEN])?;
                    file
                }
            };
            file.write_all(&buffer)?;
            buffer.clear();
            Ok((file, buffer))
        })
        .await
        .map_err(io::Error::other)?;
        match result {
            Ok((file, buffer)) => {
                self.own = Some(OwnSegment { number, file });
                self.buffer = buffer;
                self.written += length;
                Ok(())
            }
            Err(error) => {
                // Whatever was created goes with the writer.
                let _ = std::fs::remove_file(self.log.segment_path(number));
                Err(error)
            }
        }
    }

    /// Makes the message durable with its envelope; the caller may acknowledge it once this
    /// returns. `envelope.size` must be [`MessageWriter::size`]. Returns the envelope with
    /// [`Envelope::stored`] set.
    pub async fn commit(mut self, mut envelope: Envelope) -> io::Result<Envelope> {
        if envelope.size != self.size() {
            return Err(io::Error::other(format!(
                "envelope size {} does not match the {} bytes written",
                envelope.size,
                self.size()
            )));
        }
        self.checksum.update(&self.buffer);
        if self.own.is_some() {
            // Stored with the envelope, so it holds after a restart too.
            self.as_is.feed(&self.buffer);
            envelope.sends_as_is = self.front_as_is && self.as_is.as_is();
        }
        let footer = trailer::encode(&envelope, self.checksum.clone().finalize())
            .map_err(io::Error::other)?;
        let mut payload_crc = self.checksum.clone();
        payload_crc.update(&footer);
        let payload_len = self.size() + footer.len() as u64;
        let header = record::header(Kind::Message, payload_len, payload_crc.finalize());
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.extend_from_slice(&footer);
        let stored = match self.own.take() {
            None => {
                let held = Arc::new(HeldContent::new(buffer, envelope.size as usize));
                let stored = self.log.append(Lane::Fresh, header, held.clone()).await?;
                if held.within_budget() {
                    envelope.in_memory = Some(held);
                }
                stored
            }
            Some(own) => {
                let number = own.number;
                let stored = finish_own_segment(own, header, buffer).await;
                if stored.is_err() {
                    let _ = std::fs::remove_file(self.log.segment_path(number));
                }
                let stored = stored?;
                self.log.adopt(number, 1);
                stored
            }
        };
        self.committed = true;
        envelope.stored = Some(stored);
        Ok(envelope)
    }
}

impl MessageWriter {
    /// Commits a message whose header block `head` was held back while the rest (written to
    /// [`MessageWriter::buffer`]) arrived: `stamp` sees the whole content and what it returns
    /// goes on top, then the header block, then the rest. `envelope.size` is set here.
    pub async fn commit_stamped(
        mut self,
        mut envelope: Envelope,
        head: Vec<u8>,
        stamp: Stamp,
    ) -> io::Result<Envelope> {
        if self.own.is_none() {
            let body = std::mem::take(&mut self.buffer);
            let content = super::stamp_threads::run(move || -> io::Result<Vec<u8>> {
                let mut pieces = [Cow::Borrowed(&head[..]), Cow::Borrowed(&body[..])]
                    .into_iter()
                    .map(Ok);
                let top = stamp(&mut pieces)?;
                let mut content = Vec::with_capacity(top.len() + head.len() + body.len());
                for piece in [&top, &head, &body] {
                    content.extend_from_slice(piece);
                }
                Ok(content)
            })
            .await??;
            self.buffer = content;
        } else {
            self.restamp_own_segment(head, stamp).await?;
        }
        envelope.size = self.size();
        self.commit(envelope).await
    }

    /// A large message's own segment holds its body only: a new segment gets the stamp, the
    /// header block and a copy of the body (`copy_file_range` under `io::copy`), then replaces it.
    async fn restamp_own_segment(&mut self, head: Vec<u8>, stamp: Stamp) -> io::Result<()> {
        self.checksum.update(&self.buffer);
        self.as_is.feed(&self.buffer);
        let rest = std::mem::take(&mut self.buffer);
        let Some(old) = self.own.take() else {
            return Ok(());
        };
        let number = self.log.new_segment_number();
        let path = self.log.segment_path(number);
        let old_path = self.log.segment_path(old.number);
        let body_len = self.written + rest.len() as u64;
        let result = tokio::task::spawn_blocking(move || -> io::Result<(File, Vec<u8>)> {
            let mut body = old.file;
            body.write_all(&rest)?;
            let start = (SEGMENT_MAGIC.len() + HEADER_LEN) as u64;
            let top = {
                let mut reader = File::open(&old_path)?;
                reader.seek(io::SeekFrom::Start(start))?;
                let mut pieces = std::iter::once(Ok(Cow::Borrowed(&head[..])))
                    .chain(file_pieces(reader.take(body_len)));
                stamp(&mut pieces)?
            };
            let mut file = create_segment(&path)?;
            file.write_all(&[0u8; HEADER_LEN])?;
            file.write_all(&top)?;
            file.write_all(&head)?;
            let mut reader = File::open(&old_path)?;
            reader.seek(io::SeekFrom::Start(start))?;
            let copied = io::copy(&mut reader.take(body_len), &mut file)?;
            if copied != body_len {
                return Err(io::Error::other(
                    "the message body shrank while it was copied",
                ));
            }
            let mut front = top;
            front.extend_from_slice(&head);
            Ok((file, front))
        })
        .await
        .map_err(io::Error::other)?;
        // The body-only segment goes either way; the new one stays only if complete.
        let _ = std::fs::remove_file(self.log.segment_path(old.number));
        let (file, front) = match result {
            Ok(done) => done,
            Err(error) => {
                let _ = std::fs::remove_file(self.log.segment_path(number));
                return Err(error);
            }
        };
        let mut checksum = crc32fast::Hasher::new();
        checksum.update(&front);
        checksum.combine(&self.checksum);
        self.checksum = checksum;
        let mut front_check = AsIsCheck::default();
        front_check.feed(&front);
        self.front_as_is = front_check.as_is();
        self.written = front.len() as u64 + body_len;
        self.own = Some(OwnSegment { number, file });
        Ok(())
    }
}

/// A file's bytes in pieces of [`OWN_SEGMENT_THRESHOLD`].
fn file_pieces<'a>(
    mut reader: impl Read + 'a,
) -> impl Iterator<Item = io::Result<Cow<'a, [u8]>>> + 'a {
    std::iter::from_fn(move || {
        let mut piece = Vec::with_capacity(OWN_SEGMENT_THRESHOLD);
        match reader
            .by_ref()
            .take(OWN_SEGMENT_THRESHOLD as u64)
            .read_to_end(&mut piece)
        {
            Ok(0) => None,
            Ok(_) => Some(Ok(Cow::Owned(piece))),
            Err(error) => Some(Err(error)),
        }
    })
}

/// Writes the rest of a large message and its record header, and makes it durable.
async fn finish_own_segment(
    own: OwnSegment,
    header: [u8; HEADER_LEN],
    rest: Vec<u8>,
) -> io::Result<Stored> {
    use std::os::unix::fs::FileExt;
    let OwnSegment { number, mut file } = own;
    tokio::task::spawn_blocking(move || -> io::Result<Stored> {
        file.write_all(&rest)?;
        file.write_all_at(&header, SEGMENT_MAGIC.len() as u64)?;
        file.sync_data()?;
        Ok(Stored {
            segment: number,
            offset: (SEGMENT_MAGIC.len() + HEADER_LEN) as u64,
        })
    })
    .await
    .map_err(io::Error::other)?
}

impl Drop for MessageWriter {
    fn drop(&mut self) {
        // Not committed (refused, aborted, or the commit failed): remove the message's own
        // segment if it has one. A message in the shared segment never reached it.
        if !self.committed
            && let Some(own) = self.own.take()
        {
            let _ = std::fs::remove_file(self.log.segment_path(own.number));
        }
    }
}
