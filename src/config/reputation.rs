//! `[health]` and `[[shaping]]`: when a source IP is suspended, and how hard it may send to a site.

use toml::Spanned;

use super::problems::{Problems, number_in, parse_duration};
use super::raw::{RawHealth, RawShaping};
use crate::settings::health::HealthSettings;
use crate::settings::health::ReplyRule;
use crate::settings::shaping::{Rate, ShapingRule};

pub(super) fn health(raw: &RawHealth, problems: &mut Problems<'_>) -> HealthSettings {
    let defaults = HealthSettings::default();
    let mut duration = |value: &Option<super::raw::Text>, default| {
        value
            .as_ref()
            .and_then(|v| problems.check(v, parse_duration))
            .unwrap_or(default)
    };
    let suspension = duration(&raw.suspension, defaults.suspension);
    let max_suspension = duration(&raw.max_suspension, defaults.max_suspension);
    let bind_recheck = duration(&raw.bind_recheck, defaults.bind_recheck);
    if let Some(value) = &raw.max_suspension
        && max_suspension < suspension
    {
        problems.at(
            value.span(),
            "health.max_suspension must not be shorter than health.suspension",
        );
    }
    if let Some(value) = &raw.bind_recheck
        && bind_recheck.is_zero()
    {
        problems.at(value.span(), "health.bind_recheck must be above 0");
    }
    let rules = match &raw.rule {
        None => defaults.rules,
        Some(list) => list
            .iter()
            .map(|rule| {
                let rule = rule.get_ref();
                if rule.contains.is_empty() || rule.contains.iter().any(|c| c.get_ref().is_empty())
                {
                    problems.at(
                        rule.name.span(),
                        "a health rule needs at least one non-empty phrase in `contains`",
                    );
                }
                for code in rule.codes.iter().flatten() {
                    let valid = !code.get_ref().is_empty()
                        && code
                            .get_ref()
                            .bytes()
                            .all(|b| b.is_ascii_digit() || b == b'.');
                    if !valid {
                        problems.at(
                            code.span(),
                            format!(
                                "{:?} is not a reply code prefix (write \"421\", \"5.7\" or \"4\")",
                                code.get_ref()
                            ),
                        );
                    }
                }
                let contains: Vec<&str> =
                    rule.contains.iter().map(|c| c.get_ref().as_str()).collect();
                let codes: Vec<&str> = rule
                    .codes
                    .iter()
                    .flatten()
                    .map(|c| c.get_ref().as_str())
                    .collect();
                ReplyRule::new(rule.name.get_ref(), &contains, &codes)
            })
            .collect(),
    };
    HealthSettings {
        suspension,
        max_suspension,
        bind_recheck,
        rules,
    }
}

pub(super) fn shaping(
    raw: &[Spanned<RawShaping>],
    problems: &mut Problems<'_>,
) -> Vec<ShapingRule> {
    let mut rules: Vec<ShapingRule> = Vec::new();
    for entry in raw {
        let entry = entry.get_ref();
        let site = entry.site.get_ref().to_ascii_lowercase();
        let valid_site = site == "*"
            || site
                .strip_prefix("*.")
                .unwrap_or(&site)
                .split('.')
                .all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
        if !valid_site {
            problems.at(
                entry.site.span(),
                format!(
                    "{site:?} is not a site pattern (write \"*\", \"*.google.com\" or a host name)"
                ),
            );
        }
        if rules.iter().any(|r| r.site == site) {
            problems.at(
                entry.site.span(),
                format!("shaping for {site:?} is defined twice"),
            );
        }
        let mut count = |value: &Option<Spanned<u64>>, what: &str| {
            value
                .as_ref()
                .map(|v| number_in(v, 1..1_000_001, what, problems) as u32)
        };
        let max_connections = count(&entry.max_connections, "max_connections");
        let max_messages_per_connection = count(
            &entry.max_messages_per_connection,
            "max_messages_per_connection",
        );
        let mut rate = |value: &Option<super::raw::Text>| {
            value.as_ref().and_then(|v| problems.check(v, Rate::parse))
        };
        let max_message_rate = rate(&entry.max_message_rate);
        let max_connection_rate = rate(&entry.max_connection_rate);
        let site_max_message_rate = rate(&entry.site_max_message_rate);
        let site_max_connections = entry
            .site_max_connections
            .as_ref()
            .map(|v| number_in(v, 1..1_000_001, "site_max_connections", problems) as u32);
        rules.push(ShapingRule {
            site_max_connections,
            site_max_message_rate,
            site,
            max_connections,
            max_messages_per_connection,
            max_message_rate,
            max_connection_rate,
        });
    }
    rules
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    const MINIMAL: &str =
        "[smtp]\nlisten = [\"127.0.0.1:2525\"]\nhostname = \"relay.example.test\"\n";

    fn errors(extra: &str) -> Vec<String> {
        match crate::config::parse(
            Path::new("/etc/poolrelay/t.toml"),
            &format!("{MINIMAL}{extra}"),
        ) {
            Ok(_) => vec![],
            Err(errors) => errors.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn defaults_apply_without_sections() {
        let config = crate::config::parse(Path::new("/t.toml"), MINIMAL).unwrap();
        assert_eq!(config.health.suspension, Duration::from_secs(300));
        assert!(!config.health.rules.is_empty());
        assert!(config.shaping.is_empty());
    }

    #[test]
    fn sections_are_read() {
        let config = crate::config::parse(
            Path::new("/t.toml"),
            &format!(
                "{MINIMAL}[health]\nsuspension = \"1m\"\nmax_suspension = \"1h\"\nbind_recheck = \"5s\"\n[[health.rule]]\nname = \"mine\"\ncontains = [\"Go Away\"]\ncodes = [\"5.7\"]\n[[shaping]]\nsite = \"*.Google.com\"\nmax_connections = 3\nmax_message_rate = \"100/min\"\n"
            ),
        )
        .unwrap();
        assert_eq!(config.health.bind_recheck, Duration::from_secs(5));
        assert_eq!(config.health.rules.len(), 1);
        assert_eq!(config.health.rules[0].contains, ["go away"]);
        assert_eq!(config.shaping[0].site, "*.google.com");
        assert_eq!(config.shaping[0].max_connections, Some(3));
    }

    #[test]
    fn bad_values_are_refused_with_their_line() {
        let found = errors(
            "[health]\nsuspension = \"2h\"\nmax_suspension = \"1h\"\n[[health.rule]]\nname = \"x\"\ncontains = []\ncodes = [\"5x\"]\n[[shaping]]\nsite = \"bad site\"\nmax_connections = 0\nmax_message_rate = \"fast\"\n[[shaping]]\nsite = \"bad site\"\n",
        );
        assert_eq!(found.len(), 8, "{found:#?}");
        assert!(
            found[0].contains(":6:18:") && found[0].contains("max_suspension"),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|e| e.contains(":14:20:") && e.contains("not a rate")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|e| e.contains("defined twice")),
            "{found:?}"
        );
    }
}
