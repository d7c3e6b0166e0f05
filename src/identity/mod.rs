//! Email identities and DKIM: who may sign mail for which `From:` address, with which key, and
//! which configuration set such mail uses by default.
//!
//! `model` is plain data carried by the registry; `key` reads and generates keys; `key_dir`
//! keeps the relay's own keys; `from` finds a message's `From:` address; `sign` makes the
//! `DKIM-Signature` field; `status` checks what DNS publishes.

pub mod from;
pub mod key;
pub mod key_dir;
pub mod model;
mod relaxed_body;
pub mod sign;
pub mod status;

pub use model::{DkimSetup, Identities, Identity, KeyOrigin, normalize_name, parse_identity_name};
