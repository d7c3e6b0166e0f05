//! Email addresses as the SESv2 API takes them: `user@example.com` or
//! `Display Name <user@example.com>`, checked before they reach a header or an envelope.

/// A mailbox: an optional display name and the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

impl Mailbox {
    /// The address's domain, lower-cased.
    pub fn domain(&self) -> String {
        self.address
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default()
    }
}

/// Parses `text`, or says what is wrong with it.
pub fn parse_mailbox(text: &str) -> Result<Mailbox, String> {
    if text.chars().any(char::is_control) {
        return Err(format!("{text:?} has control characters"));
    }
    let text = text.trim();
    let (name, address) = match text.strip_suffix('>').and_then(|t| t.rsplit_once('<')) {
        Some((name, address)) => {
            let name = name.trim().trim_matches('"').trim();
            (Some(name).filter(|n| !n.is_empty()), address.trim())
        }
        None => (None, text),
    };
    check_address(address).map_err(|problem| format!("{text:?} is not an address: {problem}"))?;
    Ok(Mailbox {
        name: name.map(str::to_string),
        address: address.to_string(),
    })
}

fn check_address(address: &str) -> Result<(), &'static str> {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err("no @");
    };
    if local.is_empty() || local.len() > 64 {
        return Err("the local part is empty or longer than 64 characters");
    }
    let forbidden = |c: char| c.is_control() || c.is_whitespace() || "<>()[]\\,;:\"@".contains(c);
    if local.chars().any(forbidden) || local.starts_with('.') || local.ends_with('.') {
        return Err("the local part has characters an address cannot have unquoted");
    }
    if domain.is_empty() || domain.len() > 253 {
        return Err("the domain is empty or too long");
    }
    let ascii = crate::domain::to_ascii(domain);
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !ascii.contains('.') || !ascii.split('.').all(label_ok) {
        return Err("the domain is not a host name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_named_addresses_parse() {
        assert_eq!(
            parse_mailbox("a.b+tag@Example.COM").map(|m| m.domain()),
            Ok("example.com".to_string())
        );
        let named = parse_mailbox("\"Ops Team\" <ops@example.com>").expect("parses");
        assert_eq!(named.name.as_deref(), Some("Ops Team"));
        assert_eq!(named.address, "ops@example.com");
        assert!(parse_mailbox("Bücher <info@bücher.example>").is_ok());
    }

    #[test]
    fn hostile_or_broken_addresses_are_refused() {
        for bad in [
            "",
            "nobody",
            "@example.com",
            "a@",
            "a b@example.com",
            "a@example",
            "a@exa_mple.com",
            "a@example.com\r\nBcc: x@y.z",
            "Name\r\n <a@example.com>",
            "<a@b@example.com>",
            "a@-example.com",
        ] {
            assert!(parse_mailbox(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
