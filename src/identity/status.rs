//! Whether each identity's DKIM record is published (SES's `DkimAttributes.Status`).
//!
//! The relay looks up `<selector>._domainkey.<domain>` TXT at start, after every change to the
//! identities and every hour, and compares its `p=` with the key it signs with. It signs
//! whatever the answer: the status is for the operator, and a warning is logged while it is
//! not `SUCCESS`.

use std::collections::HashMap;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::model::Identities;
use crate::dns::{self, LookupError};

/// How often published records are checked again.
pub const RECHECK: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DkimStatus {
    /// Not checked yet.
    NotStarted,
    /// No record published at the name.
    Pending,
    /// The published key is the one the relay signs with.
    Success,
    /// A record is published with another key (or none that can be read).
    Failed,
    /// DNS could not answer.
    TemporaryFailure,
}

impl DkimStatus {
    pub fn as_ses(self) -> &'static str {
        match self {
            Self::NotStarted => "NOT_STARTED",
            Self::Pending => "PENDING",
            Self::Success => "SUCCESS",
            Self::Failed => "FAILED",
            Self::TemporaryFailure => "TEMPORARY_FAILURE",
        }
    }
}

/// The status of what DNS answered for a record that should carry `public_key` (base64).
pub fn judge(answer: &Result<Vec<String>, LookupError>, public_key: &str) -> DkimStatus {
    let records = match answer {
        Err(LookupError::NotFound) => return DkimStatus::Pending,
        Err(LookupError::Temporary(_)) => return DkimStatus::TemporaryFailure,
        Ok(records) => records,
    };
    let keys: Vec<String> = records
        .iter()
        .filter_map(|record| {
            record.split(';').find_map(|tag| {
                let (name, value) = tag.split_once('=')?;
                (name.trim() == "p").then(|| value.chars().filter(|c| !c.is_whitespace()).collect())
            })
        })
        .collect();
    if keys.is_empty() && records.iter().all(|r| !r.contains("DKIM1")) {
        // Some other TXT record at the name: nothing for DKIM published yet.
        return DkimStatus::Pending;
    }
    if keys.iter().any(|key| key == public_key) {
        DkimStatus::Success
    } else {
        DkimStatus::Failed
    }
}

/// The last status of each identity (by name, with the selector it was checked for), and a
/// bell that asks for a check now.
#[derive(Default)]
pub struct StatusBoard {
    statuses: Mutex<HashMap<String, (String, DkimStatus)>>,
    pub wake: Notify,
}

impl StatusBoard {
    /// The status of `identity` for `selector`; a selector not checked yet is `NotStarted`.
    pub fn status(&self, identity: &str, selector: &str) -> DkimStatus {
        match self.statuses.lock().get(identity) {
            Some((checked, status)) if checked == selector => *status,
            _ => DkimStatus::NotStarted,
        }
    }

    /// Looks up every identity's record and keeps the result.
    pub async fn check_all(&self, resolver: &TokioResolver, identities: &Identities) {
        let mut fresh = HashMap::new();
        for identity in identities.iter() {
            let (Some(dkim), Some(name)) = (&identity.dkim, identity.dns_record_name()) else {
                continue;
            };
            let answer = dns::txt(resolver, &name).await;
            let status = judge(&answer, &dkim.key.public_key_base64());
            if status != DkimStatus::Success {
                let detail = match &answer {
                    Err(LookupError::Temporary(error)) => error.clone(),
                    _ => format!("publish TXT {name} \"{}\"", dkim.key.dns_record_value()),
                };
                tracing::warn!(identity = %identity.name, record = %name, status = status.as_ses(), %detail, "DKIM record not verified (mail is signed anyway)");
            }
            fresh.insert(identity.name.clone(), (dkim.selector.clone(), status));
        }
        *self.statuses.lock() = fresh;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_states_from_what_dns_says() {
        let key = "MIIBIjANBg+/=";
        let ok = Ok(vec![format!("v=DKIM1; k=rsa; p={key}")]);
        assert_eq!(judge(&ok, key), DkimStatus::Success);
        let split = Ok(vec!["v=DKIM1; k=rsa; p=MIIB IjANBg+/=".to_string()]);
        assert_eq!(judge(&split, key), DkimStatus::Success);
        let other = Ok(vec!["v=DKIM1; k=rsa; p=AAAA".to_string()]);
        assert_eq!(judge(&other, key), DkimStatus::Failed);
        let revoked = Ok(vec!["v=DKIM1; p=".to_string()]);
        assert_eq!(judge(&revoked, key), DkimStatus::Failed);
        assert_eq!(judge(&Err(LookupError::NotFound), key), DkimStatus::Pending);
        let unrelated = Ok(vec!["google-site-verification=x".to_string()]);
        assert_eq!(judge(&unrelated, key), DkimStatus::Pending);
        let failed = Err(LookupError::Temporary("timeout".into()));
        assert_eq!(judge(&failed, key), DkimStatus::TemporaryFailure);
    }
}
