//! The durable spool: a message is acknowledged only once it is here.
//!
//! Layout under the spool directory:
//!
//! ```text
//! queue/ID.msg  one file per message: content, then envelope and footer (see `trailer`)
//! queue/ID.env  the envelope as updated after delivery attempts (JSON), when there is one
//! tmp/          envelope updates being written (cleared at start-up)
//! quarantine/   files that could not be read back, kept for an operator to inspect
//! ```
//!
//! Committing a message: the content is written to `queue/ID.msg` (in pieces while it arrives if
//! it is large), the envelope and a checksummed footer are appended, and the file system is
//! flushed by the group commit thread (see `group_sync`), which serves every session waiting at
//! that moment with one `syncfs`. Only then does the client get `250`. One file per message means
//! one create and one unlink per message, which is what the file system can do fastest.
//!
//! A crash leaves each file complete (delivered after restart) or not (without a footer: it was
//! being received and never acknowledged; or damaged): those are quarantined, never delivered in
//! part and never silently deleted.
//!
//! Envelope updates after delivery attempts go to `queue/ID.env`, written to `tmp/`, fsynced and
//! renamed, so it is always either the old or the new version. Losing an update in a crash can
//! only cause a recipient to be delivered twice, never to be lost.

mod envelope;
mod group_sync;
mod id;
pub mod state_file;
mod store;
pub mod trailer;
mod writer;

pub use envelope::{Envelope, Notify, Recipient, RecipientState};
pub use id::{new_message_id, unix_now};
pub use store::{Recovered, Spool};
pub use writer::MessageWriter;
