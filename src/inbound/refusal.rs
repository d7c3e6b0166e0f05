//! Why a message was refused after DATA: each reason gives the SMTP reply the client sees and
//! the label `poolrelay_messages_rejected_total` counts it under.

use super::quota::QuotaExceeded;
use crate::registry::SendingPaused;
use crate::smtp::Reply;
use crate::smtp::data::Violation;

/// More `Received:` fields than this and a message is refused as looping (Postfix's
/// `hopcount_limit`).
pub(super) const MAX_HOPS: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `X-SES-CONFIGURATION-SET` names a set that does not exist (the name made printable).
    UnknownConfigurationSet(String),
    /// The authenticated user may not use that configuration set.
    ConfigurationSetNotAllowed { set: String, user: String },
    /// Bare CR or LF, a line over 998 octets, or more than the size limit.
    Content(Violation, u64),
    /// More `Received:` fields than `MAX_HOPS`: the message is going round in a loop.
    TooManyHops(usize),
    /// The spool could not take the message; `full`: no space or quota left.
    SpoolUnavailable { full: bool },
    /// The account or the message's configuration set is paused.
    SendingPaused(SendingPaused),
    /// The account's sending quota (`[account]`) is used up.
    Quota(QuotaExceeded),
    /// An API key's `allowed_from_domains` does not include the From: address's domain.
    FromNotAllowed(String),
}

impl Refusal {
    /// The reply to the client.
    pub fn reply(&self) -> Reply {
        match self {
            Self::UnknownConfigurationSet(set) => Reply::new(
                554,
                "5.3.0",
                format!("Configuration set \"{set}\" does not exist"),
            ),
            Self::ConfigurationSetNotAllowed { set, user } => Reply::new(
                554,
                "5.7.1",
                format!("Configuration set \"{set}\" is not allowed for user {user}"),
            ),
            Self::Content(Violation::BareNewline, _) => Reply::new(
                554,
                "5.6.0",
                "Message refused: bare CR or LF found; lines must end with CRLF",
            ),
            Self::Content(Violation::LineTooLong, _) => Reply::new(
                554,
                "5.6.0",
                "Message refused: a line is longer than 998 octets",
            ),
            Self::Content(Violation::TooBig, limit) => Reply::new(
                552,
                "5.3.4",
                format!("Message size exceeds the limit of {limit} bytes"),
            ),
            Self::TooManyHops(hops) => Reply::new(
                554,
                "5.4.6",
                format!("Too many hops ({hops} Received headers): mail loop?"),
            ),
            Self::SpoolUnavailable { full: true } => {
                Reply::new(452, "4.3.1", "Insufficient system storage, try again later")
            }
            Self::SpoolUnavailable { full: false } => Reply::new(
                451,
                "4.3.0",
                "Local error writing the message, try again later",
            ),
            Self::SendingPaused(SendingPaused::ConfigurationSet) => {
                Reply::new(554, "5.7.1", "Sending paused for this configuration set")
            }
            Self::SendingPaused(SendingPaused::Account) => {
                Reply::new(554, "5.7.1", "Sending paused for this account")
            }
            Self::Quota(QuotaExceeded::Rate) => Reply::new(
                454,
                "4.7.0",
                "Throttling failure: Maximum sending rate exceeded",
            ),
            Self::Quota(QuotaExceeded::Daily) => Reply::new(
                554,
                "5.7.0",
                "Throttling failure: Daily message quota exceeded",
            ),
            Self::FromNotAllowed(domain) => Reply::new(
                554,
                "5.7.1",
                format!("Sending as {domain} is not allowed for this key"),
            ),
        }
    }

    /// The `reason` label of the rejected-messages counter.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::UnknownConfigurationSet(_) => "unknown_configuration_set",
            Self::ConfigurationSetNotAllowed { .. } => "configuration_set_not_allowed",
            Self::Content(Violation::TooBig, _) => "too_big",
            Self::Content(..) => "malformed_content",
            Self::TooManyHops(_) => "too_many_hops",
            Self::SpoolUnavailable { .. } => "spool_unavailable",
            Self::SendingPaused(_) => "sending_paused",
            Self::Quota(QuotaExceeded::Rate) => "rate_exceeded",
            Self::Quota(QuotaExceeded::Daily) => "daily_quota_exceeded",
            Self::FromNotAllowed(_) => "from_not_allowed",
        }
    }

    /// A spool write error: 452 when the disk or quota is full, 451 otherwise.
    pub(super) fn spool(id: &str, error: &std::io::Error) -> Self {
        tracing::error!(id, %error, "cannot write the message to the spool");
        let code = error.raw_os_error();
        Self::SpoolUnavailable {
            full: code == Some(libc::ENOSPC) || code == Some(libc::EDQUOT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_code_and_label() {
        let cases = [
            (
                Refusal::UnknownConfigurationSet("x".into()),
                "554 5.3.0",
                "unknown_configuration_set",
            ),
            (
                Refusal::Content(Violation::TooBig, 1024),
                "552 5.3.4",
                "too_big",
            ),
            (
                Refusal::Content(Violation::BareNewline, 1024),
                "554 5.6.0",
                "malformed_content",
            ),
            (
                Refusal::spool("id", &std::io::Error::from_raw_os_error(libc::ENOSPC)),
                "452 4.3.1",
                "spool_unavailable",
            ),
            (
                Refusal::spool("id", &std::io::Error::other("broken")),
                "451 4.3.0",
                "spool_unavailable",
            ),
            (
                Refusal::SendingPaused(SendingPaused::ConfigurationSet),
                "554 5.7.1 Sending paused for this configuration set",
                "sending_paused",
            ),
            (
                Refusal::Quota(QuotaExceeded::Rate),
                "454 4.7.0 Throttling failure: Maximum sending rate exceeded",
                "rate_exceeded",
            ),
            (
                Refusal::Quota(QuotaExceeded::Daily),
                "554 5.7.0 Throttling failure: Daily message quota exceeded",
                "daily_quota_exceeded",
            ),
        ];
        for (refusal, reply, label) in cases {
            let text = refusal.reply().to_string();
            assert!(text.starts_with(reply), "{text}");
            assert_eq!(refusal.metric_label(), label);
        }
    }
}
