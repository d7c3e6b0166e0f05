//! `[bounce]`, `[feedback]`, `[suppression]` and each set's `suppressed_reasons`: the feedback
//! loop (return paths, reports, the suppression list).

use std::path::{Path, PathBuf};

use super::problems::{Problems, number_in, parse_hostname};
use super::raw::{RawConfig, Text};
use crate::settings::feedback::{
    BounceSettings, DEFAULT_KEEP_UNMATCHED, DEFAULT_MAX_UNMATCHED, FeedbackSettings,
};
use crate::settings::suppression::{SuppressedReasons, SuppressionReason};

/// Thirty days: SES keeps message details for bounces and complaints about as long.
const DEFAULT_TOKEN_LIFETIME: u64 = 30 * 86_400;

pub(super) fn bounce(
    raw: &RawConfig,
    relative_to_config: &dyn Fn(&str) -> PathBuf,
    problems: &mut Problems<'_>,
) -> Option<BounceSettings> {
    let bounce = raw.bounce.as_ref()?;
    let domain = problems.check(&bounce.domain, |d| parse_hostname(&d.to_ascii_lowercase()))?;
    let secret_file = relative_to_config(
        bounce
            .secret_file
            .as_ref()
            .map_or("var/bounce.key", |f| f.get_ref()),
    );
    let token_lifetime = problems.duration_or(&bounce.token_lifetime, DEFAULT_TOKEN_LIFETIME);
    Some(BounceSettings {
        domain,
        secret_file,
        token_lifetime,
    })
}

pub(super) fn feedback(raw: &RawConfig, problems: &mut Problems<'_>) -> FeedbackSettings {
    let address = raw.feedback.address.as_ref().and_then(|address| {
        problems.check(address, |text| match text.rsplit_once('@') {
            Some((local, domain)) if !local.is_empty() && parse_hostname(domain).is_ok() => {
                Ok(format!("{local}@{}", domain.to_ascii_lowercase()))
            }
            _ => Err(format!("feedback.address {text:?} is not an email address")),
        })
    });
    let keep_unmatched = problems.duration_or(
        &raw.feedback.keep_unmatched,
        DEFAULT_KEEP_UNMATCHED.as_secs(),
    );
    let max_unmatched = raw
        .feedback
        .max_unmatched
        .as_ref()
        .map_or(DEFAULT_MAX_UNMATCHED, |value| {
            number_in(value, 0..100_000_001, "feedback.max_unmatched", problems) as usize
        });
    FeedbackSettings {
        address,
        forward: raw.feedback.forward.unwrap_or(true),
        keep_unmatched,
        max_unmatched,
    }
}

/// A list of SES reason names.
pub(super) fn reasons(list: &[Text], problems: &mut Problems<'_>) -> SuppressedReasons {
    let reasons: Vec<SuppressionReason> = list
        .iter()
        .filter_map(|reason| problems.check(reason, |r| r.parse()))
        .collect();
    SuppressedReasons::from_reasons(reasons)
}

/// `[suppression] reasons` (SES's default, both, when absent).
pub(super) fn account_reasons(raw: &RawConfig, problems: &mut Problems<'_>) -> SuppressedReasons {
    match &raw.suppression.reasons {
        None => SuppressedReasons::default(),
        Some(list) => reasons(list, problems),
    }
}

/// Where the ledger (suppression list, sent records) lives.
pub fn ledger_path(spool_dir: &Path) -> PathBuf {
    spool_dir.join("ledger.redb")
}
