//! `[health]`: how long a refused (IP, site) pair is suspended, how often unbindable addresses
//! are tried again, and the reply rules that say a refusal is about the IP (applied by
//! `outbound::classify`).

use std::time::Duration;

/// `[health]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    /// The first suspension of an (IP, site) pair.
    pub suspension: Duration,
    /// The longest one, however often the site refuses the IP.
    pub max_suspension: Duration,
    /// How often unbindable addresses are tried again.
    pub bind_recheck: Duration,
    /// Replies that suspend the (IP, site) pair instead of failing the recipient.
    pub rules: Vec<ReplyRule>,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            suspension: Duration::from_secs(5 * 60),
            max_suspension: Duration::from_secs(4 * 3600),
            bind_recheck: Duration::from_secs(30),
            rules: default_rules(),
        }
    }
}

/// A refusal whose text contains one of `contains` (ASCII case ignored) and whose code starts
/// with one of `codes` (any non-2xx code when `codes` is empty) is about the sending IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyRule {
    /// Shown in logs, the API and events.
    pub name: String,
    /// Lower-case phrases; any one matches.
    pub contains: Vec<String>,
    /// Code prefixes; empty: any non-2xx code.
    pub codes: Vec<String>,
}

impl ReplyRule {
    pub fn new(name: &str, contains: &[&str], codes: &[&str]) -> Self {
        Self {
            name: name.to_string(),
            contains: contains.iter().map(|c| c.to_ascii_lowercase()).collect(),
            codes: codes.iter().map(|c| c.to_string()).collect(),
        }
    }
}

/// The built-in table: blocklists, reputation and connection-limit refusals as the large
/// receivers word them. The first match names the refusal, so the specific rules come first.
pub fn default_rules() -> Vec<ReplyRule> {
    vec![
        ReplyRule::new(
            "blocklist",
            &[
                "blocklist",
                "blocklisted",
                "blacklist",
                "blacklisted",
                "block list",
                "black list",
                "spamhaus",
                "spamcop",
                "barracuda",
                "dnsbl",
                "rbl",
                "listed at",
                "listed on",
            ],
            &[],
        ),
        ReplyRule::new(
            "reputation",
            &[
                "reputation",
                "unusual rate",
                "unsolicited mail originating",
                "poor sending",
                "temporarily deferred due to",
            ],
            &[],
        ),
        ReplyRule::new(
            "too-many-connections",
            &[
                "too many connections",
                "too many concurrent",
                "too many simultaneous",
                "connection limit",
                "connection rate",
                "rate limit",
                "rate-limit",
                "ratelimit",
                "rate limited",
                "throttled",
                "throttling",
                "throttle",
            ],
            &["4"],
        ),
        // "blocked" alone is also said of content and of mailboxes: only a policy refusal that
        // names the sending host or address counts.
        ReplyRule::new(
            "ip-blocked",
            &[
                "client host",
                "your ip",
                "your address",
                "ip address",
                "sending ip",
                "sender ip",
                "blocked using",
            ],
            &["421", "554", "4.7", "5.7"],
        ),
    ]
}
