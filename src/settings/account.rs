//! `[account]`: what SES calls the account's sending controls — whether it may send at all,
//! and its sending quota (SES's `MaxSendRate` and `Max24HourSend`; 0 means unlimited).

/// The account-wide sending controls, swapped with the rest of the model on a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountSettings {
    /// `PUT /v2/email/account/sending`: `false` refuses new mail and holds queued mail.
    pub sending_enabled: bool,
    /// Recipients per second across every listener (0: unlimited).
    pub max_send_rate: u64,
    /// Recipients per rolling 24 hours (0: unlimited).
    pub max_24_hour_send: u64,
}

impl Default for AccountSettings {
    fn default() -> Self {
        Self {
            sending_enabled: true,
            max_send_rate: 0,
            max_24_hour_send: 0,
        }
    }
}

/// A resource's tags (SES `Tags`: key and value), in the order they were added.
pub type Tags = Vec<(String, String)>;
