//! The durable spool: a message is acknowledged only once it is here.
//!
//! Layout under the spool directory:
//!
//! ```text
//! queue/N.seg   segment files: an append-only log of messages and what happened to them
//! tmp/          cleared at start-up
//! quarantine/   what could not be read back, kept for an operator to inspect
//! ```
//!
//! Committing a message: its content, envelope and checksums become one record appended to the
//! active segment by the log writer thread, which serves every session waiting at that moment
//! with one `writev` and one `fdatasync` (group commit, see `log`). Only then does the client get
//! `250`. No file is created or removed per message: a delivered message gets a "done" record in
//! its segment (see `record`), and a segment is deleted as a whole once every message in it is
//! done. A deferred message is moved to the deferred lane (its content and newer envelope
//! appended there, its old copy marked done; see `Spool::defer`), so mail that waits does not
//! keep the segments of fresh mail on disk. A message larger than 256 KiB is streamed into a
//! segment of its own while it arrives, and updated in place.
//!
//! A crash leaves whole records (delivered after restart) and at most a torn tail that was never
//! acknowledged: recovery (see `recovery`) copies what it cannot trust to quarantine, never
//! delivers a message in part and never silently deletes one. Losing a "done" or an envelope
//! update in a crash can only cause a recipient to be delivered twice, never to be lost.

mod envelope;
mod held;
mod id;
mod log;
mod log_thread;
mod record;
mod recovery;
mod stamp_threads;
pub mod state_file;
mod store;
pub mod trailer;
mod writer;

pub use envelope::{Envelope, Notify, Recipient, RecipientState, Stored};
pub use held::HeldContent;
pub use id::{new_message_id, unix_now};
pub use recovery::{Recovered, queued};
pub use store::Spool;
pub use writer::{MessageWriter, Pieces, Stamp};
