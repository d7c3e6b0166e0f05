//! The threads that compute stamps (DKIM signatures): a few long-lived threads, one per core,
//! taking jobs from one queue. Private-key operations run here, never on the threads that serve
//! sessions. A fixed set of warm threads costs less per message than tokio's blocking pool
//! (which grows a thread per concurrent job): Ed25519-signed 2 KB mail went from ~5,600 to
//! ~6,650 msg/s on the 2-core bench VM, alternating four times (`block_in_place` was slower).

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, LazyLock, Mutex};

type Job = Box<dyn FnOnce() + Send>;

struct StampThreads {
    jobs: Mutex<Sender<Job>>,
}

static THREADS: LazyLock<StampThreads> = LazyLock::new(|| {
    let (jobs, queue) = channel::<Job>();
    let queue = Arc::new(Mutex::new(queue));
    let count = std::thread::available_parallelism().map_or(2, |n| n.get());
    for index in 0..count {
        let queue: Arc<Mutex<Receiver<Job>>> = queue.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("stamp-{index}"))
            .spawn(move || {
                loop {
                    // The lock is held only while taking a job.
                    let job = match queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    match job {
                        // A job that panics drops its result sender (its message gets a
                        // temporary failure); the thread lives on for the next one.
                        Ok(job) => {
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                        Err(_) => return,
                    }
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start a stamp thread");
        }
    }
    StampThreads {
        jobs: Mutex::new(jobs),
    }
});

/// Runs `work` on a stamp thread and waits for its result without blocking the caller's thread.
pub async fn run<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done.send(work());
    });
    let sent = THREADS
        .jobs
        .lock()
        .map_err(|_| std::io::Error::other("stamp threads poisoned"))?
        .send(job);
    sent.map_err(|_| std::io::Error::other("stamp threads stopped"))?;
    result
        .await
        .map_err(|_| std::io::Error::other("a stamp thread failed"))
}
