//! `[dkim]` and `[[identity]]`: email identities with their DKIM keys, read (or, for Easy DKIM,
//! generated) while the config is checked, so a key that cannot be used is an error with its
//! line — at `check-config`, start and reload — and never a failure at DATA time.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Spanned;

use super::DkimSettings;
use super::problems::Problems;
use super::raw::{RawConfig, RawDkim, RawIdentity};
use crate::identity::key::{DkimKey, KeyAlgorithm};
use crate::identity::{DkimSetup, Identities, Identity, KeyOrigin, key_dir, parse_identity_name};
use crate::registry::Registry;

fn dkim(
    raw: &RawDkim,
    relative_to_config: &dyn Fn(&str) -> PathBuf,
    problems: &mut Problems<'_>,
) -> DkimSettings {
    let key_dir_as_written = raw
        .key_dir
        .as_ref()
        .map_or("var/dkim", |d| d.get_ref())
        .to_string();
    DkimSettings {
        key_dir: relative_to_config(&key_dir_as_written),
        key_dir_as_written,
        algorithm: raw
            .algorithm
            .as_ref()
            .and_then(|a| problems.check(a, KeyAlgorithm::parse))
            .unwrap_or_default(),
    }
}

/// `[dkim]` and every `[[identity]]`, put into `registry`. Easy DKIM keys are generated only
/// when everything before is valid.
pub(super) fn with_identities(
    raw: &RawConfig,
    registry: &mut Registry,
    relative_to_config: &dyn Fn(&str) -> PathBuf,
    problems: &mut Problems<'_>,
) -> DkimSettings {
    let dkim = dkim(&raw.dkim, relative_to_config, problems);
    let generate = problems.is_empty();
    let found = identities(
        &raw.identity,
        &dkim,
        registry,
        relative_to_config,
        generate,
        problems,
    );
    registry.set_identities(found);
    dkim
}

/// Every `[[identity]]`, checked against the registry's configuration sets. Easy DKIM keys
/// are generated only when `generate` (the rest of the file is valid), so a typo does not
/// leave keys behind.
fn identities(
    raw: &[Spanned<RawIdentity>],
    dkim: &DkimSettings,
    registry: &Registry,
    relative_to_config: &dyn Fn(&str) -> PathBuf,
    generate: bool,
    problems: &mut Problems<'_>,
) -> Identities {
    let mut identities = Identities::default();
    for entry in raw {
        let entry = entry.get_ref();
        let Some(name) = problems.check(&entry.name, parse_identity_name) else {
            continue;
        };
        if let Some(set) = &entry.configuration_set
            && registry.configuration_set(set.get_ref()).is_none()
        {
            problems.at(
                set.span(),
                format!("configuration set {:?} does not exist", set.get_ref()),
            );
        }
        let dkim = key_of(entry, &name, dkim, relative_to_config, generate, problems);
        let identity = Identity {
            signing_enabled: entry.dkim_signing.unwrap_or(true),
            dkim,
            configuration_set: entry
                .configuration_set
                .as_ref()
                .map(|s| s.get_ref().clone()),
            name,
        };
        let name = identity.name.clone();
        if !identities.insert(identity) {
            problems.at(
                entry.name.span(),
                format!("identity {name:?} is defined twice"),
            );
        }
    }
    identities
}

/// The identity's key: the file `dkim_key` names, else (a domain) the generated one.
fn key_of(
    entry: &RawIdentity,
    name: &str,
    dkim: &DkimSettings,
    relative_to_config: &dyn Fn(&str) -> PathBuf,
    generate: bool,
    problems: &mut Problems<'_>,
) -> Option<DkimSetup> {
    let selector = entry
        .dkim_selector
        .as_ref()
        .and_then(|s| problems.check(s, selector));
    match (&entry.dkim_key, &entry.dkim_selector) {
        (Some(file), _) => {
            let Some(selector) = selector else {
                if entry.dkim_selector.is_none() {
                    problems.at(file.span(), "dkim_key needs dkim_selector");
                }
                return None;
            };
            let path = relative_to_config(file.get_ref());
            let key = problems.check(file, |_| read_key(&path))?;
            let created = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64);
            Some(DkimSetup {
                selector,
                key: Arc::new(key),
                origin: KeyOrigin::External,
                created,
            })
        }
        (None, Some(written)) => {
            problems.at(
                written.span(),
                "dkim_selector needs dkim_key (a generated key has a selector of its own)",
            );
            None
        }
        (None, None) if name.contains('@') => None,
        (None, None) if !generate => None,
        (None, None) => match key_dir::load_or_generate(&dkim.key_dir, name, dkim.algorithm) {
            Ok((stored, key)) => Some(DkimSetup {
                selector: stored.selector,
                key: Arc::new(key),
                origin: KeyOrigin::Generated,
                created: stored.created,
            }),
            Err(error) => {
                problems.at(entry.name.span(), format!("Easy DKIM key: {error}"));
                None
            }
        },
    }
}

fn read_key(path: &Path) -> Result<DkimKey, String> {
    let bytes =
        std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    DkimKey::from_pem(&bytes).map_err(|error| format!("{}: {error}", path.display()))
}

/// A selector is one or more DNS labels.
fn selector(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 63
        && text.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
        });
    if ok {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!("dkim_selector {text:?} is not a DNS label"))
    }
}
