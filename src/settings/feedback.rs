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

/// `[feedback]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackSettings {
    /// The address registered with ISPs' feedback loops (complaints arrive there).
    pub address: Option<String>,
    /// SES email feedback forwarding: bounces and complaints go on to the original sender.
    pub forward: bool,
}

impl Default for FeedbackSettings {
    fn default() -> Self {
        Self {
            address: None,
            forward: true,
        }
    }
}
