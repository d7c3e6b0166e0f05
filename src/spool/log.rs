//! The log writer: one thread appends every record to the spool's segment files and makes them
//! durable with one `fdatasync` for everything that was waiting (group commit).
//!
//! A disk can only do so many flushes a second, and a flush costs about as much for one message
//! as for fifty. Sessions hand their finished message to this thread and wait; the thread takes
//! every request waiting at that moment, writes all new messages to the *active segment* with one
//! `writev`, flushes it once, and answers them all with where their message is. A request made
//! while a flush runs waits for the next one, so each message is still acknowledged only after
//! its own bytes are on stable storage.
//!
//! Records about a message (a newer envelope after an attempt, or "done") go to the segment that
//! holds it (see [`super::record`]). The thread counts the messages of each segment that are not
//! done; a segment with none left is deleted, which reclaims the space of all its messages at
//! once. The active segment is replaced when it reaches 64 MiB, and deleted once it has been
//! empty for a second, so an idle relay leaves an empty queue folder (see `log_thread`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

use super::envelope::Stored;
use super::held::HeldContent;
use super::log_thread::{Channel, Inbox, Request, Shared, Writer, segment_name};
use super::record::{self, HEADER_LEN, Kind};

pub use super::log_thread::{Lane, create_segment, segment_number};

/// Handle to the log writer thread; the thread ends when the last handle is dropped.
pub struct Log {
    channel: Arc<Channel>,
    dir: PathBuf,
    next_segment: Arc<AtomicU64>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Log")
    }
}

impl Log {
    /// Starts the writer for segments in `dir`; new segments are numbered from `first_segment`.
    pub fn start(dir: &Path, first_segment: u64) -> io::Result<Self> {
        let channel = Arc::new(Channel {
            inbox: Mutex::new(Inbox::default()),
            wake: Condvar::new(),
        });
        let next_segment = Arc::new(AtomicU64::new(first_segment));
        let mut writer = Writer::new(dir.to_path_buf(), next_segment.clone());
        let thread_channel = channel.clone();
        std::thread::Builder::new()
            .name("spool-log".into())
            .spawn(move || writer.run(&thread_channel))?;
        Ok(Self {
            channel,
            dir: dir.to_path_buf(),
            next_segment,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn segment_path(&self, segment: u64) -> PathBuf {
        self.dir.join(segment_name(segment))
    }

    /// A number for a new segment that nobody else uses.
    pub fn new_segment_number(&self) -> u64 {
        self.next_segment.fetch_add(1, Ordering::Relaxed)
    }

    fn send(&self, request: Request) {
        self.channel.inbox.lock().requests.push(request);
        self.channel.wake.notify_one();
    }

    /// Appends a message record to the active segment of `lane`; returns once it is durable,
    /// with where its payload is.
    pub async fn append(
        &self,
        lane: Lane,
        header: [u8; HEADER_LEN],
        payload: Arc<HeldContent>,
    ) -> io::Result<Stored> {
        own_result(self.ask_append(lane, header, payload).await)
    }

    /// [`Log::append`] for a thread that may block (start-up).
    pub fn append_blocking(
        &self,
        header: [u8; HEADER_LEN],
        payload: Arc<HeldContent>,
    ) -> io::Result<Stored> {
        own_result(
            self.ask_append(Lane::Fresh, header, payload)
                .blocking_recv(),
        )
    }

    fn ask_append(
        &self,
        lane: Lane,
        header: [u8; HEADER_LEN],
        payload: Arc<HeldContent>,
    ) -> oneshot::Receiver<Shared<Stored>> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Append {
            lane,
            header,
            payload,
            reply,
        });
        answer
    }

    /// Appends a newer envelope for a message of `segment`; returns once it is durable.
    pub async fn update(&self, segment: u64, envelope_json: &[u8]) -> io::Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Note {
            segment,
            kind: Kind::Update,
            record: record::encode(Kind::Update, envelope_json),
            reply: Some(reply),
        });
        own_result(answer.await)
    }

    /// Records that the copy of message `id` at `place` needs nothing more. Not waited for: if a crash
    /// loses it, the message is delivered again (a duplicate, never a loss).
    pub fn done(&self, place: Stored, id: &str) {
        self.send(Request::Note {
            segment: place.segment,
            kind: Kind::Done,
            record: record::encode(Kind::Done, &record::done_payload(place.offset, id)),
            reply: None,
        });
    }

    /// Returns once every request made before is carried out and every finished segment,
    /// the active one included, is deleted (at shutdown: nothing is left to the idle timer).
    pub async fn settle(&self) {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Settle { reply });
        let _ = answer.await;
    }

    /// Counts `live` messages of a segment written elsewhere, so it is deleted when they are done.
    pub fn adopt(&self, segment: u64, live: usize) {
        self.send(Request::Adopt { segment, live });
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.channel.inbox.lock().closed = true;
        self.channel.wake.notify_one();
    }
}

fn own_result<T, E>(answer: Result<Shared<T>, E>) -> io::Result<T> {
    match answer {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(copy_error(&error)),
        Err(_) => Err(io::Error::other("the spool log thread stopped")),
    }
}

/// One waiter's own copy of a shared error: the same OS error code (so ENOSPC stays ENOSPC), or
/// the same kind and text.
fn copy_error(error: &io::Error) -> io::Error {
    match error.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(error.kind(), error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::record::SEGMENT_MAGIC;
    use std::time::{Duration, Instant};

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_number(&segment_name(42)), Some(42));
        assert_eq!(segment_number("0000000000000001.seg"), Some(1));
        assert_eq!(segment_number("1.seg"), None);
        assert_eq!(segment_number("zzzzzzzzzzzzzzzz.seg"), None);
        assert_eq!(segment_number("0000000000000001.msg"), None);
    }

    #[test]
    fn an_error_keeps_its_os_error_code() {
        let full = copy_error(&io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(full.raw_os_error(), Some(libc::ENOSPC));
        let other = copy_error(&io::Error::other("odd"));
        assert_eq!(other.raw_os_error(), None);
        assert!(other.to_string().contains("odd"));
    }

    fn message(n: usize) -> ([u8; HEADER_LEN], Arc<HeldContent>) {
        let payload = format!("message {n}").into_bytes();
        let header = record::header(
            Kind::Message,
            payload.len() as u64,
            crc32fast::hash(&payload),
        );
        let size = payload.len();
        (header, Arc::new(HeldContent::new(payload, size)))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_land_whole_and_a_done_segment_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Log::start(dir.path(), 1).unwrap());
        let mut tasks = Vec::new();
        for n in 0..50 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let (header, payload) = message(n);
                (n, log.append(Lane::Fresh, header, payload).await.unwrap())
            }));
        }
        let mut places = Vec::new();
        for task in tasks {
            places.push(task.await.unwrap());
        }
        let bytes = std::fs::read(log.segment_path(1)).unwrap();
        let scanned = record::scan(&bytes);
        assert_eq!(scanned.records.len(), 50);
        assert_eq!(scanned.tail, None);
        for (n, place) in &places {
            let start = place.offset as usize;
            let expected = format!("message {n}");
            assert_eq!(&bytes[start..start + expected.len()], expected.as_bytes());
        }
        for (n, place) in &places {
            log.done(*place, &n.to_string());
        }
        let path = log.segment_path(1);
        let deadline = Instant::now() + Duration::from_secs(10);
        while path.exists() {
            assert!(Instant::now() < deadline, "the finished segment is deleted");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[tokio::test]
    async fn a_segment_that_cannot_be_created_fails_the_append_and_the_next_one_works() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone");
        let log = Log::start(&missing, 1).unwrap();
        let (header, payload) = message(1);
        assert!(
            log.append(Lane::Fresh, header, payload.clone())
                .await
                .is_err()
        );
        std::fs::create_dir(&missing).unwrap();
        let place = log.append(Lane::Fresh, header, payload).await.unwrap();
        assert_eq!(place.offset, (SEGMENT_MAGIC.len() + HEADER_LEN) as u64);
    }
}
