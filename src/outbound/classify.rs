//! Which remote refusals are about the sending IP rather than the recipient.
//!
//! A refusal that matches a rule suspends the (IP, site) pair (see [`super::health`]) and the
//! recipient is tried again from another IP of the pool, never bounced: "blocked using
//! Spamhaus" says nothing about the mailbox. Everything else keeps its usual meaning (4xx
//! retried, 5xx bounced).
//!
//! A rule matches a non-2xx reply when the reply text contains one of its phrases as whole words
//! (ASCII case ignored: `rbl` does not match "garbled") and, if the rule lists codes, the reply's
//! basic or enhanced code starts with one of them (`"421"`, `"5.7"`, `"4"`). `[[health.rule]]` in
//! the config replaces this table.
//!
//! Two things are never read as a verdict on the IP, because whoever controls a signup form
//! controls them: a reply about the mailbox or address (enhanced status `x.1.y` or `x.2.y`, such
//! as 5.1.1 "user unknown" or 4.2.2 "mailbox full"), and text inside `<...>`, where servers echo
//! the address back (`550 5.1.1 <spamhaus.fan@example.com>: User unknown`).

use super::client::RemoteReply;
pub use crate::settings::health::{ReplyRule, default_rules};

/// Whether `rule` matches `reply`.
pub fn matches(rule: &ReplyRule, reply: &RemoteReply) -> bool {
    Prepared::of(reply).is_some_and(|prepared| matches_prepared(rule, &prepared))
}

fn matches_prepared(rule: &ReplyRule, reply: &Prepared<'_>) -> bool {
    let code_matches = rule.codes.is_empty()
        || rule.codes.iter().any(|prefix| {
            reply.code.starts_with(prefix.as_str())
                || reply
                    .enhanced
                    .is_some_and(|e| e.starts_with(prefix.as_str()))
        });
    code_matches
        && rule
            .contains
            .iter()
            .any(|phrase| contains_words(&reply.text, phrase))
}

/// Whether `phrase` occurs in `text` with no letter or digit right before or after it.
fn contains_words(text: &str, phrase: &str) -> bool {
    if phrase.is_empty() {
        return false;
    }
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    text.match_indices(phrase).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + phrase.len()..].chars().next();
        !is_word(before) && !is_word(after)
    })
}

/// `text` in lower case with everything inside `<...>` (an echoed address) blanked out.
fn without_addresses(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '<' => depth += 1,
            '>' if depth > 0 => {
                depth -= 1;
                out.push(' ');
                continue;
            }
            _ => {}
        }
        if depth == 0 {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Enhanced status `x.1.y` (addressing) or `x.2.y` (mailbox): about the recipient, never the IP.
fn about_the_mailbox(enhanced: Option<&str>) -> bool {
    let subject = enhanced.and_then(|e| e.split('.').nth(1));
    matches!(subject, Some("1" | "2"))
}

/// A non-2xx reply with its code as text and its text in lower case, made once for all rules.
struct Prepared<'a> {
    code: String,
    enhanced: Option<&'a str>,
    text: String,
}

impl<'a> Prepared<'a> {
    /// `None` for replies no rule may match: positive ones and those about the mailbox.
    fn of(reply: &'a RemoteReply) -> Option<Self> {
        let enhanced = reply.enhanced.as_deref();
        (!reply.is_positive() && !about_the_mailbox(enhanced)).then(|| Self {
            code: reply.code.to_string(),
            enhanced,
            text: without_addresses(&reply.text),
        })
    }
}

/// The first rule `reply` matches.
pub fn classify<'a>(rules: &'a [ReplyRule], reply: &RemoteReply) -> Option<&'a ReplyRule> {
    let prepared = Prepared::of(reply)?;
    rules.iter().find(|rule| matches_prepared(rule, &prepared))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, enhanced: Option<&str>, text: &str) -> RemoteReply {
        RemoteReply {
            code,
            enhanced: enhanced.map(str::to_string),
            text: text.to_string(),
        }
    }

    fn rule_for(code: u16, enhanced: Option<&str>, text: &str) -> Option<String> {
        classify(&default_rules(), &reply(code, enhanced, text)).map(|r| r.name.clone())
    }

    #[test]
    fn receivers_refusing_the_ip_are_recognised() {
        let cases = [
            (
                554,
                Some("5.7.1"),
                "Service unavailable; Client host [127.0.0.2] blocked using zen.spamhaus.org",
                "blocklist",
            ),
            (
                550,
                Some("5.7.1"),
                "Mail from 127.0.0.2 refused: listed at bl.spamcop.net",
                "blocklist",
            ),
            (
                421,
                Some("4.7.0"),
                "[127.0.0.2] Our system has detected an unusual rate of unsolicited mail originating from your IP address",
                "reputation",
            ),
            (
                421,
                Some("4.7.0"),
                "Message deferred due to poor reputation of the sending IP",
                "reputation",
            ),
            (
                554,
                Some("5.7.1"),
                "Service unavailable, Client host blocked",
                "ip-blocked",
            ),
            (
                550,
                Some("5.7.1"),
                "Your IP has been temporarily blocked",
                "ip-blocked",
            ),
            (
                421,
                None,
                "Too many connections from your IP",
                "too-many-connections",
            ),
            (
                451,
                Some("4.7.500"),
                "Server busy, rate limit exceeded",
                "too-many-connections",
            ),
        ];
        for (code, enhanced, text, expected) in cases {
            assert_eq!(
                rule_for(code, enhanced, text).as_deref(),
                Some(expected),
                "{code} {text}"
            );
        }
    }

    #[test]
    fn recipient_and_content_refusals_keep_their_meaning() {
        let cases = [
            (550, Some("5.1.1"), "No such user"),
            (452, Some("4.2.2"), "Mailbox full"),
            (550, Some("5.1.1"), "Recipient blocked the sender"), // a mailbox-level block
            (554, Some("5.6.0"), "Message blocked: content rejected"),
            (554, Some("5.7.1"), "Message blocked due to spam content"),
            (250, Some("2.0.0"), "Ok: not blocklisted"),
            (550, Some("5.2.1"), "Too many connections to this mailbox"), // 5xx: not a throttle
            // An address echoed back is the sender's or a signup form's text, not a verdict.
            (
                550,
                Some("5.1.1"),
                "<spamhaus.fan.unknown@dest.test>: Recipient address rejected: User unknown",
            ),
            (
                550,
                None,
                "<spamhaus.fan@dest.test>: Recipient address rejected",
            ),
            (554, Some("5.7.1"), "<rbl@dest.test>: Relay access denied"),
            (
                452,
                Some("4.2.2"),
                "Mailbox full; blocked using zen.spamhaus.org",
            ),
            // Phrases are whole words.
            (451, Some("4.3.0"), "Message garbled in transit"),
            (550, Some("5.7.1"), "Unlisted at the moment"),
        ];
        for (code, enhanced, text) in cases {
            assert_eq!(rule_for(code, enhanced, text), None, "{code} {text}");
        }
    }

    #[test]
    fn codes_match_basic_or_enhanced_prefixes_and_case_is_ignored() {
        let rule = ReplyRule::new("mine", &["GO AWAY"], &["5.7.26", "421"]);
        assert!(matches(
            &rule,
            &reply(550, Some("5.7.26"), "please go away")
        ));
        assert!(matches(&rule, &reply(421, None, "Go Away")));
        assert!(!matches(&rule, &reply(550, Some("5.7.1"), "go away")));
        assert!(!matches(&rule, &reply(421, None, "never go awayward")));
    }

    #[test]
    fn words_are_whole_and_addresses_are_blanked() {
        assert!(contains_words("listed on rbl.example", "rbl"));
        assert!(!contains_words("garbled", "rbl"));
        assert!(contains_words("throttled, sorry", "throttled"));
        assert_eq!(without_addresses("A <B@c> D"), "a   d");
        assert_eq!(without_addresses("x <unclosed"), "x ");
    }
}
