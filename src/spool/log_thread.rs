//! The log writer thread's side (see [`super::log`]): what it is asked, the segments it
//! knows, and how a batch is written, flushed and answered.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

use super::envelope::Stored;
use super::held::HeldContent;
use super::record::{HEADER_LEN, Kind, SEGMENT_MAGIC};

/// Size at which the active segment is replaced by a new one.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// How long an active segment with no message left is kept for the next one.
const IDLE_SEGMENT: Duration = Duration::from_secs(1);
/// At most this many buffers per `writev` (Linux's IOV_MAX is 1024).
const MAX_SLICES: usize = 1024;

/// A flush's result as every waiter sees it: the OS error itself, shared, so its kind (ENOSPC,
/// EDQUOT) reaches the session that decides between 452 and 451.
pub type Shared<T> = Result<T, Arc<io::Error>>;

pub enum Request {
    /// A new message for the active segment of `lane`: its record header and payload.
    Append {
        lane: Lane,
        header: [u8; HEADER_LEN],
        payload: Arc<HeldContent>,
        reply: oneshot::Sender<Shared<Stored>>,
    },
    /// A record about a message of `segment`; `reply` waits for its flush.
    Note {
        segment: u64,
        kind: Kind,
        record: Vec<u8>,
        reply: Option<oneshot::Sender<Shared<()>>>,
    },
    /// A segment written elsewhere (found at start-up, or a large message's own) that holds
    /// `live` messages not done yet.
    Adopt { segment: u64, live: usize },
    /// Answered once everything asked before is written and finished segments are deleted.
    Settle { reply: oneshot::Sender<()> },
}

#[derive(Default)]
pub struct Inbox {
    pub requests: Vec<Request>,
    pub closed: bool,
}

pub struct Channel {
    pub inbox: Mutex<Inbox>,
    pub wake: Condvar,
}

/// The file name of segment `number`.
pub fn segment_name(number: u64) -> String {
    format!("{number:016x}.seg")
}

/// The segment number of a file name, if it is a segment's.
pub fn segment_number(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".seg")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

/// Which active segment a new message goes to. Mail is mostly delivered within seconds, but a
/// deferred message may wait for hours: moved into segments of their own (see
/// `Spool::defer`), waiting messages do not keep the segments of fresh mail on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Fresh = 0,
    Deferred = 1,
}

/// A segment the writer knows: how many of its messages are not done, and for the active one
/// its open file and length.
struct Segment {
    live: usize,
    open: Option<(File, u64)>,
    empty_since: Option<Instant>,
}

/// The thread's own state.
pub struct Writer {
    dir: PathBuf,
    segments: HashMap<u64, Segment>,
    /// The active segment of each lane.
    active: [Option<u64>; 2],
    next_segment: Arc<AtomicU64>,
}

impl Writer {
    /// A writer for segments in `dir`, numbering new ones from `next_segment`.
    pub fn new(dir: PathBuf, next_segment: Arc<AtomicU64>) -> Self {
        Self {
            dir,
            segments: HashMap::new(),
            active: [None; 2],
            next_segment,
        }
    }
}

/// A new message: record header, payload, and who waits for its place.
type Append = (
    [u8; HEADER_LEN],
    Arc<HeldContent>,
    oneshot::Sender<Shared<Stored>>,
);

/// Answers every append of a batch that could not be written with the error.
fn fail_appends(appends: Vec<Append>, error: impl Into<Arc<io::Error>>) {
    let error = error.into();
    for (_, _, reply) in appends {
        let _ = reply.send(Err(error.clone()));
    }
}

/// The records of one batch about the messages of one segment.
#[derive(Default)]
struct Notes {
    bytes: Vec<u8>,
    /// Who waits for their flush (updates).
    waiters: Vec<oneshot::Sender<Shared<()>>>,
    /// How many are "done".
    done: usize,
}

/// What one batch asks for, sorted out.
#[derive(Default)]
struct Batch {
    /// New messages, per lane.
    appends: [Vec<Append>; 2],
    settled: Vec<oneshot::Sender<()>>,
    /// Per segment: the bytes of its notes, who waits for their flush, how many are "done".
    notes: BTreeMap<u64, Notes>,
}

impl Writer {
    pub fn run(&mut self, channel: &Channel) {
        loop {
            let requests = {
                let mut inbox = channel.inbox.lock();
                while inbox.requests.is_empty() && !inbox.closed {
                    match self.idle_deadline() {
                        Some(deadline) => {
                            if channel.wake.wait_until(&mut inbox, deadline).timed_out() {
                                break;
                            }
                        }
                        None => channel.wake.wait(&mut inbox),
                    }
                }
                if inbox.requests.is_empty() && inbox.closed {
                    return;
                }
                std::mem::take(&mut inbox.requests)
            };
            let mut batch = sort(requests, &mut self.segments);
            let settled = std::mem::take(&mut batch.settled);
            self.apply(batch);
            self.reclaim(!settled.is_empty());
            for reply in settled {
                let _ = reply.send(());
            }
        }
    }

    /// When the first empty active segment should go, if one is empty.
    fn idle_deadline(&self) -> Option<Instant> {
        self.active
            .iter()
            .flatten()
            .filter_map(|number| self.segments.get(number)?.empty_since)
            .min()
            .map(|since| since + IDLE_SEGMENT)
    }

    fn apply(&mut self, mut batch: Batch) {
        for lane in [Lane::Fresh, Lane::Deferred] {
            let appends = std::mem::take(&mut batch.appends[lane as usize]);
            if !appends.is_empty() {
                self.append_all(lane, appends, &mut batch);
            }
        }
        for (
            segment,
            Notes {
                bytes,
                waiters,
                done,
            },
        ) in batch.notes
        {
            let result = self.write_notes(segment, &bytes, !waiters.is_empty());
            if let Err(error) = &result {
                tracing::error!(segment = %segment_name(segment), %error, "cannot write to a spool segment");
            }
            let shared = result.map_err(Arc::new);
            for waiter in waiters {
                let _ = waiter.send(shared.clone());
            }
            if let Some(known) = self.segments.get_mut(&segment) {
                // A "done" that could not be written still counts: once the whole segment is
                // deleted the message is done all the same.
                known.live = known.live.saturating_sub(done);
            }
        }
    }

    /// Writes every new message (and the notes for the active segment) with one `writev` and
    /// one flush, then answers each with its place or the error.
    fn append_all(&mut self, lane: Lane, appends: Vec<Append>, batch: &mut Batch) {
        let (segment, known) = match self.active_segment(lane) {
            Ok(active) => active,
            Err(error) => return fail_appends(appends, error),
        };
        let Some((file, length)) = known.open.as_mut() else {
            return fail_appends(appends, io::Error::other("the active segment is not open"));
        };
        let notes = batch.notes.remove(&segment);
        let mut slices = Vec::with_capacity(appends.len() * 2 + 1);
        let mut places = Vec::with_capacity(appends.len());
        let mut end = *length;
        for (header, payload, _) in &appends {
            slices.push(IoSlice::new(header));
            slices.push(IoSlice::new(payload.payload()));
            places.push(Stored {
                segment,
                offset: end + HEADER_LEN as u64,
            });
            end += (HEADER_LEN + payload.payload().len()) as u64;
        }
        if let Some(notes) = &notes {
            slices.push(IoSlice::new(&notes.bytes));
            end += notes.bytes.len() as u64;
        }
        let written = write_all_vectored(file, &mut slices).and_then(|()| file.sync_data());
        drop(slices);
        let Notes { waiters, done, .. } = notes.unwrap_or_default();
        known.live = known.live.saturating_sub(done);
        // A "done" that could not be written still counts (see `apply`).
        let shared = match written {
            Ok(()) => {
                *length = end;
                known.live += appends.len();
                known.empty_since = None;
                for ((_, _, reply), place) in appends.into_iter().zip(places) {
                    let _ = reply.send(Ok(place));
                }
                Ok(())
            }
            Err(error) => {
                // Leave the segment as it was, so what follows a failed batch can be read.
                let _ = file.set_len(*length);
                let _ = file.seek(io::SeekFrom::Start(*length));
                let error = Arc::new(error);
                tracing::error!(%error, "cannot append to the spool");
                fail_appends(appends, error.clone());
                Err(error)
            }
        };
        for waiter in waiters {
            let _ = waiter.send(shared.clone());
        }
    }

    /// The active segment (created if there is none or it is full), with its number.
    fn active_segment(&mut self, lane: Lane) -> io::Result<(u64, &mut Segment)> {
        let active = &mut self.active[lane as usize];
        let full = active
            .and_then(|a| self.segments.get(&a))
            .and_then(|s| s.open.as_ref())
            .is_none_or(|(_, length)| *length >= SEGMENT_BYTES);
        if full {
            if let Some(old) = active.take().and_then(|a| self.segments.get_mut(&a)) {
                old.open = None;
            }
            let number = self.next_segment.fetch_add(1, Ordering::Relaxed);
            let file = create_segment(&self.dir.join(segment_name(number)))?;
            self.segments.insert(
                number,
                Segment {
                    live: 0,
                    open: Some((file, SEGMENT_MAGIC.len() as u64)),
                    empty_since: None,
                },
            );
            *active = Some(number);
        }
        let number = active.ok_or_else(|| io::Error::other("no active segment"))?;
        let known = self
            .segments
            .get_mut(&number)
            .ok_or_else(|| io::Error::other("the active segment is not known"))?;
        Ok((number, known))
    }

    /// Appends notes to `segment` (opening it if it is not the active one) and flushes them if
    /// someone waits for that.
    fn write_notes(&mut self, segment: u64, bytes: &[u8], flush: bool) -> io::Result<()> {
        let path = self.dir.join(segment_name(segment));
        match self
            .segments
            .get_mut(&segment)
            .and_then(|s| s.open.as_mut())
        {
            Some((file, length)) => {
                file.write_all(bytes)?;
                *length += bytes.len() as u64;
                if flush {
                    file.sync_data()?;
                }
            }
            None => {
                let mut file = OpenOptions::new().append(true).open(path)?;
                file.write_all(bytes)?;
                if flush {
                    file.sync_data()?;
                }
            }
        }
        Ok(())
    }

    /// Deletes the segments with no message left: at once when sealed, after [`IDLE_SEGMENT`]
    /// when it is the active one (at once too when `now`).
    fn reclaim(&mut self, now_too: bool) {
        let now = Instant::now();
        let active = self.active;
        let mut gone = Vec::new();
        for (&number, segment) in &mut self.segments {
            if segment.live > 0 {
                continue;
            }
            if active.contains(&Some(number)) {
                let since = *segment.empty_since.get_or_insert(now);
                if now < since + IDLE_SEGMENT && !now_too {
                    continue;
                }
            }
            gone.push(number);
        }
        for number in gone {
            for slot in &mut self.active {
                if *slot == Some(number) {
                    *slot = None;
                }
            }
            self.segments.remove(&number);
            let path = self.dir.join(segment_name(number));
            if let Err(error) = std::fs::remove_file(&path)
                && error.kind() != io::ErrorKind::NotFound
            {
                tracing::error!(path = %path.display(), %error, "cannot delete a finished spool segment");
            }
        }
    }
}

/// Sorts a batch of requests; adoptions take effect at once.
fn sort(requests: Vec<Request>, segments: &mut HashMap<u64, Segment>) -> Batch {
    let mut batch = Batch::default();
    for request in requests {
        match request {
            Request::Append {
                lane,
                header,
                payload,
                reply,
            } => batch.appends[lane as usize].push((header, payload, reply)),
            Request::Note {
                segment,
                kind,
                record,
                reply,
            } => {
                let notes = batch.notes.entry(segment).or_default();
                notes.bytes.extend_from_slice(&record);
                notes.waiters.extend(reply);
                notes.done += usize::from(kind == Kind::Done);
            }
            Request::Settle { reply } => batch.settled.push(reply),
            Request::Adopt { segment, live } => {
                segments
                    .entry(segment)
                    .or_insert(Segment {
                        live: 0,
                        open: None,
                        empty_since: None,
                    })
                    .live += live;
            }
        }
    }
    batch
}

/// Creates a new segment file (0600) with its header, and makes its name durable.
pub fn create_segment(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // Not O_APPEND: a large message's own segment gets its record header with `pwrite`, which
    // Linux would turn into an append.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(SEGMENT_MAGIC)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(file)
}

/// `writev` until every slice is written, at most [`MAX_SLICES`] at a time.
fn write_all_vectored(file: &mut File, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        let take = slices.len().min(MAX_SLICES);
        match file.write_vectored(&slices[..take]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut slices, written),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
