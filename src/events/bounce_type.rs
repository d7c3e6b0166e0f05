//! SES's bounce types and subtypes, and how a status code and DSN action map onto them.

/// SES `bounceType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceType {
    /// The address will not work: stop mailing it (hard bounce).
    Permanent,
    /// Worth trying again later (soft bounce).
    Transient,
    /// The report could not be read well enough to say.
    Undetermined,
}

/// SES `bounceSubType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceSubType {
    General,
    NoEmail,
    OnAccountSuppressionList,
    MailboxFull,
    MessageTooLarge,
    ContentRejected,
    Undetermined,
}

/// A bounce's type and subtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BounceKind {
    pub bounce_type: BounceType,
    pub sub_type: BounceSubType,
}

impl BounceType {
    pub fn as_ses(self) -> &'static str {
        match self {
            Self::Permanent => "Permanent",
            Self::Transient => "Transient",
            Self::Undetermined => "Undetermined",
        }
    }
}

impl BounceSubType {
    pub fn as_ses(self) -> &'static str {
        match self {
            Self::General => "General",
            Self::NoEmail => "NoEmail",
            Self::OnAccountSuppressionList => "OnAccountSuppressionList",
            Self::MailboxFull => "MailboxFull",
            Self::MessageTooLarge => "MessageTooLarge",
            Self::ContentRejected => "ContentRejected",
            Self::Undetermined => "Undetermined",
        }
    }
}

impl BounceKind {
    pub const UNDETERMINED: Self = Self {
        bounce_type: BounceType::Undetermined,
        sub_type: BounceSubType::Undetermined,
    };
    pub const SUPPRESSED: Self = Self {
        bounce_type: BounceType::Permanent,
        sub_type: BounceSubType::OnAccountSuppressionList,
    };

    /// What an enhanced status code (`5.1.1`) says, with the DSN `Action` if there is one.
    /// `None`: not a bounce at all (`delivered`, `relayed`, `expanded`, or a 2.x.x status).
    pub fn from_status(action: Option<&str>, status: Option<&str>) -> Option<Self> {
        let action = action.map(|a| a.trim().to_ascii_lowercase());
        if matches!(
            action.as_deref(),
            Some("delivered" | "relayed" | "expanded")
        ) {
            return None;
        }
        let parts: Option<Vec<u16>> = status.map(|s| {
            s.trim()
                .split('.')
                .map(|p| p.parse::<u16>().unwrap_or(u16::MAX))
                .collect()
        });
        let (class, subject, detail) = match parts.as_deref() {
            Some([class @ (2 | 4 | 5), subject, detail]) => (*class, *subject, *detail),
            _ => {
                return Some(match action.as_deref() {
                    Some("delayed") => Self::transient(BounceSubType::General),
                    _ => Self::UNDETERMINED,
                });
            }
        };
        let kind = match (class, subject, detail) {
            (2, _, _) => return None,
            (_, 2, 2) => Self::transient(BounceSubType::MailboxFull),
            (_, 2, 3) | (_, 3, 4) => Self::transient(BounceSubType::MessageTooLarge),
            (_, 6, _) => Self::transient(BounceSubType::ContentRejected),
            _ if class == 4 || action.as_deref() == Some("delayed") => {
                Self::transient(BounceSubType::General)
            }
            (5, 1, 0..=3 | 6 | 10) => Self::permanent(BounceSubType::NoEmail),
            _ => Self::permanent(BounceSubType::General),
        };
        Some(kind)
    }

    fn transient(sub_type: BounceSubType) -> Self {
        Self {
            bounce_type: BounceType::Transient,
            sub_type,
        }
    }

    fn permanent(sub_type: BounceSubType) -> Self {
        Self {
            bounce_type: BounceType::Permanent,
            sub_type,
        }
    }

    /// A hard bounce: the address goes on the suppression list (reason `BOUNCE`).
    pub fn is_permanent(self) -> bool {
        self.bounce_type == BounceType::Permanent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(action: Option<&str>, status: Option<&str>) -> Option<(&'static str, &'static str)> {
        BounceKind::from_status(action, status)
            .map(|k| (k.bounce_type.as_ses(), k.sub_type.as_ses()))
    }

    #[test]
    fn statuses_map_to_ses_types() {
        assert_eq!(
            kind(Some("failed"), Some("5.1.1")),
            Some(("Permanent", "NoEmail"))
        );
        assert_eq!(
            kind(Some("failed"), Some("5.1.10")),
            Some(("Permanent", "NoEmail"))
        );
        assert_eq!(
            kind(Some("failed"), Some("5.7.1")),
            Some(("Permanent", "General"))
        );
        assert_eq!(
            kind(Some("failed"), Some("5.2.2")),
            Some(("Transient", "MailboxFull"))
        );
        assert_eq!(
            kind(Some("failed"), Some("5.3.4")),
            Some(("Transient", "MessageTooLarge"))
        );
        assert_eq!(
            kind(Some("failed"), Some("4.4.1")),
            Some(("Transient", "General"))
        );
        assert_eq!(
            kind(Some("delayed"), Some("4.4.7")),
            Some(("Transient", "General"))
        );
        assert_eq!(kind(Some("delayed"), None), Some(("Transient", "General")));
        assert_eq!(
            kind(Some("Failed"), Some("garbage")),
            Some(("Undetermined", "Undetermined"))
        );
        assert_eq!(kind(None, None), Some(("Undetermined", "Undetermined")));
        assert_eq!(kind(Some("delivered"), Some("2.0.0")), None);
        assert_eq!(kind(None, Some("2.1.5")), None);
        assert_eq!(
            kind(Some("failed"), Some("5.99999999.1")),
            Some(("Permanent", "General"))
        );
    }
}
