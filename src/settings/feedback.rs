//! `[bounce]` and `[feedback]`: where bounces and reports come back, and what happens to them.

use std::path::PathBuf;
use std::time::Duration;

/// `[bounce]`: the custom MAIL FROM domain whose addresses name message and recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceSettings {
    pub domain: String,
    /// The HMAC key for return-path tokens (created, mode 0600, when absent).
    pub secret_file: PathBuf,
    /// How long after acceptance a bounce is still matched (and sent records kept).
    pub token_lifetime: Duration,
}

/// `[feedback] keep_unmatched` when not set: 30 days.
pub const DEFAULT_KEEP_UNMATCHED: Duration = Duration::from_secs(30 * 86_400);
/// `[feedback] max_unmatched` when not set.
pub const DEFAULT_MAX_UNMATCHED: usize = 10_000;

/// `[feedback]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackSettings {
    /// The address registered with ISPs' feedback loops (complaints arrive there).
    pub address: Option<String>,
    /// SES email feedback forwarding: bounces and complaints go on to the original sender.
    pub forward: bool,
    /// Reports that could not be read or matched stay in `spool/feedback-unmatched/` this long...
    pub keep_unmatched: Duration,
    /// ...and at most this many of them (the newest): anyone may send mail to the feedback
    /// address, so what is kept must not grow without bound.
    pub max_unmatched: usize,
}

impl Default for FeedbackSettings {
    fn default() -> Self {
        Self {
            address: None,
            forward: true,
            keep_unmatched: DEFAULT_KEEP_UNMATCHED,
            max_unmatched: DEFAULT_MAX_UNMATCHED,
        }
    }
}
