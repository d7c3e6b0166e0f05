//! `[[shaping]]`: limits per (source IP, site), as configured. The limits are enforced by
//! `outbound::shaping`; here they are plain data with their parsing and matching rules.

use std::time::Duration;

/// `count` per `per`, e.g. "100/min".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    /// Parses "100/min", "10/s", "5000/hour", "20000/day" (s, sec, second, m, min, minute, h,
    /// hour, d, day).
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid =
            || format!("{text:?} is not a rate (write \"100/min\", \"10/s\" or \"5000/h\")");
        let (count, unit) = text.split_once('/').ok_or_else(invalid)?;
        let count: u32 = count.trim().parse().map_err(|_| invalid())?;
        let seconds = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            "d" | "day" => 86_400,
            _ => return Err(invalid()),
        };
        if count == 0 {
            return Err(format!("{text:?}: the count must be above 0"));
        }
        Ok(Self {
            count,
            per: Duration::from_secs(seconds),
        })
    }
}

/// The limits for one (IP, site) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: u32,
    pub max_messages_per_connection: u32,
    pub max_message_rate: Option<Rate>,
    pub max_connection_rate: Option<Rate>,
    /// Messages to the site from every IP (of every fleet node) together, evenly spaced.
    pub site_max_message_rate: Option<Rate>,
    /// Connections to the site from every IP (of every fleet node) together.
    pub site_max_connections: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 32,
            max_messages_per_connection: 100,
            max_message_rate: None,
            max_connection_rate: None,
            site_max_message_rate: None,
            site_max_connections: None,
        }
    }
}

/// One `[[shaping]]` entry: a site pattern and the limits it sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapingRule {
    /// `*`, `*.example.com` or a host name.
    pub site: String,
    pub max_connections: Option<u32>,
    pub max_messages_per_connection: Option<u32>,
    pub max_message_rate: Option<Rate>,
    pub max_connection_rate: Option<Rate>,
    pub site_max_message_rate: Option<Rate>,
    pub site_max_connections: Option<u32>,
}

impl ShapingRule {
    /// How specifically this rule matches one of `hosts` (higher wins), if at all.
    fn specificity(&self, hosts: &[&str]) -> Option<usize> {
        let pattern = self.site.to_ascii_lowercase();
        if pattern == "*" {
            return Some(0);
        }
        if let Some(suffix) = pattern.strip_prefix('*') {
            return hosts
                .iter()
                .any(|h| h.ends_with(suffix))
                .then_some(suffix.len());
        }
        hosts.contains(&pattern.as_str()).then_some(10_000)
    }
}

/// The limits for a site: each one from the most specific rule that sets it.
pub fn limits_for(rules: &[ShapingRule], site: &str) -> Limits {
    let hosts: Vec<&str> = site.split(',').collect();
    let mut matching: Vec<(usize, &ShapingRule)> = rules
        .iter()
        .filter_map(|rule| rule.specificity(&hosts).map(|s| (s, rule)))
        .collect();
    // Least specific first, so more specific rules overwrite.
    matching.sort_by_key(|(specificity, _)| *specificity);
    let mut limits = Limits::default();
    for (_, rule) in matching {
        if let Some(n) = rule.max_connections {
            limits.max_connections = n;
        }
        if let Some(n) = rule.max_messages_per_connection {
            limits.max_messages_per_connection = n;
        }
        if rule.max_message_rate.is_some() {
            limits.max_message_rate = rule.max_message_rate;
        }
        if rule.max_connection_rate.is_some() {
            limits.max_connection_rate = rule.max_connection_rate;
        }
        if rule.site_max_message_rate.is_some() {
            limits.site_max_message_rate = rule.site_max_message_rate;
        }
        if rule.site_max_connections.is_some() {
            limits.site_max_connections = rule.site_max_connections;
        }
    }
    limits
}

/// A rule for tests: `site`, a connection limit and a message rate.
#[cfg(test)]
pub(crate) fn rule(site: &str, connections: Option<u32>, rate: Option<&str>) -> ShapingRule {
    ShapingRule {
        site: site.to_string(),
        max_connections: connections,
        max_messages_per_connection: None,
        max_message_rate: rate.map(|r| Rate::parse(r).expect("a rate")),
        max_connection_rate: None,
        site_max_message_rate: None,
        site_max_connections: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(
            Rate::parse("100/min"),
            Ok(Rate {
                count: 100,
                per: Duration::from_secs(60)
            })
        );
        assert_eq!(Rate::parse("5/s").map(|r| r.per.as_secs()), Ok(1));
        assert_eq!(
            Rate::parse("20000/day").map(|r| r.per.as_secs()),
            Ok(86_400)
        );
        for bad in ["100", "x/min", "10/fortnight", "0/s", "-1/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_most_specific_rule_sets_each_limit() {
        let rules = [
            rule("*", Some(10), Some("100/min")),
            rule("*.google.com", Some(3), None),
            rule("alt1.aspmx.l.google.com", Some(1), None),
        ];
        let google = limits_for(&rules, "aspmx.l.google.com,alt2.aspmx.l.google.com");
        assert_eq!(google.max_connections, 3);
        assert_eq!(google.max_message_rate, Rate::parse("100/min").ok());
        assert_eq!(
            limits_for(&rules, "alt1.aspmx.l.google.com").max_connections,
            1
        );
        assert_eq!(limits_for(&rules, "mx.example.test").max_connections, 10);
        assert_eq!(limits_for(&[], "mx.example.test"), Limits::default());
        // "*.google.com" does not match a host merely ending in "google.com".
        assert_eq!(limits_for(&rules, "notgoogle.com").max_connections, 10);
    }
}
