//! Where log lines go: a buffer that a writer thread empties into stderr a few dozen times a
//! second, so a per-message line costs a session a memory copy instead of a system call.
//!
//! A session formats its line (tracing does that) and appends it to the shared buffer under a
//! short lock. The writer thread sleeps until there is something to write, then waits up to
//! [`GATHER`] for more to pile up, takes the whole buffer and writes it with one `write`. Only the
//! first line into an empty buffer wakes the thread. No line is dropped: if the buffer grows past
//! [`BACKLOG`] (stderr is blocked), writers wait for the thread. Lines written within the last
//! [`GATHER`] before a crash can be lost; [`LogGuard`] flushes everything on an orderly exit.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// How long the thread lets lines pile up before writing them.
const GATHER: Duration = Duration::from_millis(20);
/// Written at once, without waiting for [`GATHER`], past this many bytes.
const EAGER: usize = 256 * 1024;
/// Writers wait for the thread past this many bytes.
const BACKLOG: usize = 16 * 1024 * 1024;

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    closed: bool,
}

struct Shared {
    buffer: Mutex<Buffer>,
    /// Wakes the thread (something to write) and waiting writers (room again).
    wake: Condvar,
}

/// The `MakeWriter` for tracing's fmt layer.
#[derive(Clone)]
pub struct BatchedLog {
    shared: Arc<Shared>,
}

/// Flushes and stops the writer thread when dropped.
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts the writer thread for `out` (stderr in the relay).
pub fn start(out: impl Write + Send + 'static) -> io::Result<(BatchedLog, LogGuard)> {
    let shared = Arc::new(Shared {
        buffer: Mutex::new(Buffer::default()),
        wake: Condvar::new(),
    });
    let thread_shared = shared.clone();
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || run(&thread_shared, out))?;
    Ok((
        BatchedLog {
            shared: shared.clone(),
        },
        LogGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

fn run(shared: &Shared, mut out: impl Write) {
    let mut spare = Vec::new();
    loop {
        {
            let mut buffer = shared.buffer.lock();
            while buffer.bytes.is_empty() && !buffer.closed {
                shared.wake.wait(&mut buffer);
            }
            if buffer.bytes.is_empty() {
                return;
            }
            if !buffer.closed && buffer.bytes.len() < EAGER {
                let _ = shared.wake.wait_for(&mut buffer, GATHER);
            }
            std::mem::swap(&mut buffer.bytes, &mut spare);
        }
        // Writers waiting for room may go on.
        shared.wake.notify_all();
        // Nowhere to report a failed write to stderr; the lines are gone either way.
        let _ = out.write_all(&spare).and_then(|()| out.flush());
        spare.clear();
    }
}

impl Write for &BatchedLog {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut buffer = self.shared.buffer.lock();
        while buffer.bytes.len() > BACKLOG && !buffer.closed {
            self.shared.wake.wait(&mut buffer);
        }
        let was_empty = buffer.bytes.is_empty();
        buffer.bytes.extend_from_slice(line);
        let eager = buffer.bytes.len() >= EAGER;
        drop(buffer);
        if was_empty || eager {
            self.shared.wake.notify_all();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedLog {
    type Writer = &'a BatchedLog;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.buffer.lock().closed = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` that keeps what it gets and counts the calls.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Recorder {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let mut inner = self.0.lock();
            inner.0.extend_from_slice(bytes);
            inner.1 += 1;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_arrives_in_order_in_fewer_writes_and_the_guard_flushes() {
        let out = Recorder::default();
        let (log, guard) = start(out.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for n in 0..500 {
                        (&log).write_all(format!("{t} {n}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(guard);
        let (bytes, writes) = out.0.lock().clone();
        let text = String::from_utf8(bytes).unwrap();
        for t in 0..4 {
            let mine: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("{t} ")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..500).collect::<Vec<_>>(), "writer {t}");
        }
        assert!(writes < 2000, "lines are written together: {writes} writes");
    }
}
