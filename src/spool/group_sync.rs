//! Group commit: one disk flush for many messages.
//!
//! A disk can only do so many flushes a second (a few thousand here), and a flush takes about as
//! long for one file as for fifty. So instead of every session fsyncing its own files, sessions
//! write their files, then ask the syncer thread for a flush and wait. The thread takes every
//! request waiting at that moment, calls `syncfs(2)` on the spool's file system once, and wakes
//! them all. A request made while a flush is running waits for the next one, because its data may
//! have been written after that flush began. Each message is therefore still acknowledged only
//! after its own data is durable; under load, many share the cost.
//!
//! `syncfs` flushes the whole file system the spool is on, so the spool is best on a file system
//! of its own (or one without other heavy writers).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use tokio::sync::oneshot;

/// A flush's result as every waiter sees it: the OS error itself, shared, so its kind (ENOSPC,
/// EDQUOT) reaches the session that decides between 452 and 451.
type Flushed = Result<(), Arc<io::Error>>;
type Waiter = oneshot::Sender<Flushed>;

#[derive(Default)]
struct State {
    waiting: Vec<Waiter>,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// Handle to the syncer thread; the thread ends when the last handle is dropped.
pub struct GroupSync {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for GroupSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupSync")
    }
}

impl GroupSync {
    /// Starts the syncer thread for the file system holding `dir`.
    pub fn start(dir: &Path) -> io::Result<Self> {
        let handle = File::open(dir)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("spool-sync".into())
            .spawn(move || run(handle, thread_shared))?;
        Ok(Self { shared })
    }

    /// Returns once everything written before this call is on stable storage.
    pub async fn sync(&self) -> io::Result<()> {
        let (sender, receiver) = oneshot::channel();
        {
            let mut state = self.shared.state.lock();
            state.waiting.push(sender);
        }
        self.shared.wake.notify_one();
        match receiver.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(copy_error(&error)),
            Err(_) => Err(io::Error::other("the spool sync thread stopped")),
        }
    }
}

impl Drop for GroupSync {
    fn drop(&mut self) {
        self.shared.state.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

/// One waiter's own copy of a shared flush error: the same OS error code (so ENOSPC stays
/// ENOSPC), or the same kind and text.
fn copy_error(error: &io::Error) -> io::Error {
    match error.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(error.kind(), format!("syncfs failed: {error}")),
    }
}

fn run(handle: File, shared: Arc<Shared>) {
    loop {
        let batch = {
            let mut state = shared.state.lock();
            while state.waiting.is_empty() && !state.closed {
                shared.wake.wait(&mut state);
            }
            if state.waiting.is_empty() {
                return;
            }
            std::mem::take(&mut state.waiting)
        };
        // SAFETY: syncfs on a descriptor this thread owns for its whole life.
        let result: Flushed = if unsafe { libc::syncfs(handle.as_raw_fd()) } == 0 {
            Ok(())
        } else {
            Err(Arc::new(io::Error::last_os_error()))
        };
        for waiter in batch {
            let _ = waiter.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_error_keeps_its_os_error_code() {
        let full = copy_error(&io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(full.raw_os_error(), Some(libc::ENOSPC));
        let other = copy_error(&io::Error::other("odd"));
        assert_eq!(other.raw_os_error(), None);
        assert!(other.to_string().contains("odd"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_waiters_are_all_answered() {
        let dir = tempfile::tempdir().unwrap();
        let sync = Arc::new(GroupSync::start(dir.path()).unwrap());
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let sync = sync.clone();
            tasks.push(tokio::spawn(async move { sync.sync().await }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    }
}
