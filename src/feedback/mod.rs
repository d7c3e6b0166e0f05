//! The feedback loop: bounces and abuse reports that arrive for the relay itself (at its
//! return-path domain or its feedback-loop address) become SES events, suppression-list
//! entries and forwarded copies for the original sender.
//!
//! `intake` is what the SMTP listeners ask; `inbox` keeps reports durably; `report` and
//! `fields` read them; `matching` finds the message and recipient; `processor` applies the
//! result; `forward` sends it on.

pub mod fields;
mod forward;
pub mod inbox;
pub mod intake;
pub mod matching;
pub mod processor;
pub mod report;
pub mod setup;
