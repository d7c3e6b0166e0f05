//! SES suppression reasons: which kinds of feedback put an address on the suppression list and
//! keep later mail from it (`[suppression] reasons`, `[[configuration_set]] suppressed_reasons`).

use std::fmt;
use std::str::FromStr;

/// Why an address is on the suppression list (SES `Reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SuppressionReason {
    Bounce,
    Complaint,
}

impl SuppressionReason {
    pub fn as_ses(self) -> &'static str {
        match self {
            Self::Bounce => "BOUNCE",
            Self::Complaint => "COMPLAINT",
        }
    }
}

impl fmt::Display for SuppressionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_ses())
    }
}

impl FromStr for SuppressionReason {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "BOUNCE" => Ok(Self::Bounce),
            "COMPLAINT" => Ok(Self::Complaint),
            other => Err(format!(
                "a suppression reason is \"BOUNCE\" or \"COMPLAINT\", not {other:?}"
            )),
        }
    }
}

/// A set of reasons; the empty set turns suppression off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuppressedReasons {
    pub bounce: bool,
    pub complaint: bool,
}

impl Default for SuppressedReasons {
    /// SES's default for an account: both.
    fn default() -> Self {
        Self {
            bounce: true,
            complaint: true,
        }
    }
}

impl SuppressedReasons {
    pub const NONE: Self = Self {
        bounce: false,
        complaint: false,
    };

    pub fn from_reasons(reasons: impl IntoIterator<Item = SuppressionReason>) -> Self {
        let mut set = Self::NONE;
        for reason in reasons {
            match reason {
                SuppressionReason::Bounce => set.bounce = true,
                SuppressionReason::Complaint => set.complaint = true,
            }
        }
        set
    }

    pub fn contains(self, reason: SuppressionReason) -> bool {
        match reason {
            SuppressionReason::Bounce => self.bounce,
            SuppressionReason::Complaint => self.complaint,
        }
    }

    pub fn is_empty(self) -> bool {
        !self.bounce && !self.complaint
    }

    /// The SES names, in SES's order.
    pub fn names(self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.bounce {
            names.push("BOUNCE");
        }
        if self.complaint {
            names.push("COMPLAINT");
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_parse_and_collect() {
        let reasons: Vec<SuppressionReason> = ["COMPLAINT", "BOUNCE"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        let set = SuppressedReasons::from_reasons(reasons);
        assert_eq!(set, SuppressedReasons::default());
        assert_eq!(set.names(), ["BOUNCE", "COMPLAINT"]);
        assert!("bounce".parse::<SuppressionReason>().is_err());
        assert!(SuppressedReasons::from_reasons([]).is_empty());
        let complaints = SuppressedReasons::from_reasons([SuppressionReason::Complaint]);
        assert!(!complaints.contains(SuppressionReason::Bounce));
    }
}
