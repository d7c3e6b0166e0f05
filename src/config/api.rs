//! `[api]` and `[[api.key]]`: listeners, region, TLS and the access keys, each secret read from
//! its file (refused when other users can read it) or given inline.

use std::path::PathBuf;

use toml::Spanned;

use super::problems::Problems;
use super::raw::{RawApi, RawApiKey, RawConfig};
use crate::settings::api::{ApiKey, ApiSettings};

pub(super) fn api(
    raw: &RawConfig,
    relative_to_config: &dyn Fn(&str) -> PathBuf,
    problems: &mut Problems<'_>,
) -> Option<ApiSettings> {
    let api: &RawApi = raw.api.as_ref()?;
    let listen = api
        .listen
        .iter()
        .filter_map(|l| {
            problems.check(l, |t| {
                t.parse().map_err(|_| format!("{t:?} is not ip:port"))
            })
        })
        .collect();
    let tls = api.tls.as_ref().is_some_and(|t| *t.get_ref());
    if let Some(flag) = api.tls.as_ref().filter(|t| *t.get_ref())
        && raw.smtp.tls.is_none()
    {
        problems.at(flag.span(), "api.tls needs the certificate of [smtp.tls]");
    }
    let mut keys: Vec<ApiKey> = Vec::new();
    for entry in &api.key {
        if let Some(key) = key(entry, relative_to_config, problems) {
            if keys.iter().any(|k| k.access_key_id == key.access_key_id) {
                problems.at(
                    entry.get_ref().access_key_id.span(),
                    "this access_key_id is given twice",
                );
            }
            keys.push(key);
        }
    }
    let region = api
        .region
        .as_ref()
        .map_or("us-east-1".to_string(), |r| r.get_ref().clone());
    Some(ApiSettings {
        listen,
        region,
        tls,
        keys,
    })
}

fn key(
    entry: &Spanned<RawApiKey>,
    relative_to_config: &dyn Fn(&str) -> PathBuf,
    problems: &mut Problems<'_>,
) -> Option<ApiKey> {
    let raw = entry.get_ref();
    let id = raw.access_key_id.get_ref();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        problems.at(
            raw.access_key_id.span(),
            "access_key_id is letters and digits",
        );
    }
    let secret = match (&raw.secret_access_key_file, &raw.secret_access_key) {
        (Some(file), None) => problems.check(file, |f| read_secret(&relative_to_config(f))),
        (None, Some(inline)) => Some(inline.get_ref().clone()),
        _ => {
            problems.at(
                entry.span(),
                "give one of secret_access_key_file and secret_access_key",
            );
            None
        }
    };
    let (mut send, mut admin) = (false, false);
    for allow in &raw.allow {
        match allow.get_ref().as_str() {
            "send" => send = true,
            "admin" => admin = true,
            other => problems.at(
                allow.span(),
                format!("allow holds \"send\" and \"admin\", not {other:?}"),
            ),
        }
    }
    let list = |values: &Option<Vec<toml::Spanned<String>>>| {
        values
            .as_ref()
            .map(|v| v.iter().map(|s| s.get_ref().clone()).collect())
    };
    Some(ApiKey {
        access_key_id: id.clone(),
        secret: secret?.trim().to_string(),
        send,
        admin,
        allowed_configuration_sets: list(&raw.allowed_configuration_sets),
        allowed_from_domains: list(&raw.allowed_from_domains),
    })
}

fn read_secret(path: &std::path::Path) -> Result<String, String> {
    let bytes = crate::secret_file::read_private(path).map_err(|e| e.to_string())?;
    let secret =
        String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8", path.display()))?;
    if secret.trim().is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(secret)
}
