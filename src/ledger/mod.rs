//! The ledger: what the relay must remember about mail after it has left the spool, in one
//! embedded database (redb, fsync on commit).
//!
//! * `suppression`: the account-level suppression list (SES), keyed by address;
//! * `sent`: for each message delivered while feedback is on, what a later bounce or complaint
//!   needs to become an SES event and to be forwarded (the `mail` object and the original
//!   sender), and an index from its `Message-ID` header.

pub mod sent;
pub mod store;
pub mod suppression;

pub use store::{Ledger, LedgerError};
