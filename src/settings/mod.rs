//! Settings types shared by the config and the stages that apply them: plain data with their
//! parsing and matching rules, importing nothing else of the relay but `domain` (names are
//! compared as A-labels). The config file is parsed
//! into these; `registry`, `smtp` and `outbound` read them. Keeping them here is what lets the
//! config depend on no stage of the flow.

pub mod account;
pub mod api;
pub mod cluster;
pub mod console;
pub mod feedback;
pub mod health;
pub mod route;
pub mod shaping;
pub mod suppression;
pub mod warmup;

pub use warmup::{WarmupSettings, default_warmup_schedule};

/// What to do with a bare LF or bare CR inside DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareNewline {
    /// Refuse the message with 554 5.6.0 (Postfix `smtpd_forbid_bare_newline = reject`).
    Reject,
    /// Accept it as a line end, written out as CRLF; never as part of the end-of-data marker.
    Normalize,
}
