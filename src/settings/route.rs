//! Static routes: `[[route]]` entries that send a recipient domain's mail to a fixed next hop
//! instead of its MX hosts. Checked before any DNS lookup.

use std::fmt;

/// Which recipient domains a route applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainPattern {
    /// `example.test`: that domain only.
    Exact(String),
    /// `.example.test`: every subdomain of it (not the domain itself, as in Postfix transport maps).
    Subdomains(String),
    /// `*`: every domain.
    Any,
}

impl DomainPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = crate::domain::to_ascii(text.trim());
        if text == "*" {
            return Ok(Self::Any);
        }
        let (pattern, name) = match text.strip_prefix('.') {
            Some(rest) => (Self::Subdomains(rest.to_string()), rest),
            None => (Self::Exact(text.clone()), text.as_str()),
        };
        let valid_label = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
            return Err(format!(
                "{text:?} is not a domain, \".domain\" or \"*\" pattern"
            ));
        }
        Ok(pattern)
    }

    /// How specific a match is: exact beats the longest suffix, which beats `*`.
    fn specificity(&self, domain: &str) -> Option<usize> {
        match self {
            Self::Exact(name) => (domain == name).then_some(usize::MAX),
            Self::Subdomains(suffix) => {
                let matches = domain.len() > suffix.len()
                    && domain.ends_with(suffix.as_str())
                    && domain.as_bytes()[domain.len() - suffix.len() - 1] == b'.';
                matches.then_some(suffix.len() + 1)
            }
            Self::Any => Some(0),
        }
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Subdomains(suffix) => write!(f, ".{suffix}"),
            Self::Any => f.write_str("*"),
        }
    }
}

/// A `host:port` or `[ip]:port` next hop. A host name is resolved to A/AAAA records, never MX.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not host:port or [ip]:port");
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (ip, port) = rest.split_once("]:").ok_or_else(bad)?;
            ip.parse::<std::net::IpAddr>().map_err(|_| bad())?;
            (ip.to_string(), port)
        } else {
            let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
            if host.is_empty() || host.contains(':') || host.contains(char::is_whitespace) {
                return Err(bad());
            }
            (host.to_ascii_lowercase(), port)
        };
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(bad)?;
        Ok(Self { host, port })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub domain: DomainPattern,
    pub next_hop: HostPort,
    /// `tls = "require"`: never deliver over this route in plaintext.
    pub require_tls: bool,
    /// `tls_verify = true`: verify the certificate chain and the next hop's name.
    pub verify_tls: bool,
}

/// The most specific route for a (lowercase) domain, if any.
pub fn find_route<'a>(routes: &'a [Route], domain: &str) -> Option<&'a Route> {
    routes
        .iter()
        .filter_map(|route| Some((route.domain.specificity(domain)?, route)))
        .max_by_key(|(specificity, _)| *specificity)
        .map(|(_, route)| route)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(domain: &str, hop: &str) -> Route {
        Route {
            domain: DomainPattern::parse(domain).unwrap(),
            next_hop: HostPort::parse(hop).unwrap(),
            require_tls: false,
            verify_tls: false,
        }
    }

    #[test]
    fn most_specific_route_wins() {
        let routes = [
            route("*", "127.0.0.1:1"),
            route(".example.test", "127.0.0.1:2"),
            route("example.test", "127.0.0.1:3"),
            route(".a.example.test", "127.0.0.1:4"),
        ];
        let port = |d: &str| find_route(&routes, d).map(|r| r.next_hop.port);
        assert_eq!(port("example.test"), Some(3));
        assert_eq!(port("b.example.test"), Some(2));
        assert_eq!(port("x.a.example.test"), Some(4));
        assert_eq!(port("badexample.test"), Some(1));
        assert_eq!(find_route(&routes[1..], "elsewhere.test"), None);
    }

    #[test]
    fn next_hop_forms() {
        assert_eq!(
            HostPort::parse("[::1]:25").unwrap(),
            HostPort {
                host: "::1".into(),
                port: 25
            }
        );
        assert_eq!(
            HostPort::parse("MX.Example.test:2526").unwrap().host,
            "mx.example.test"
        );
        for bad in ["nohost", ":25", "host:0", "host:x", "[nonip]:25", "::1:25"] {
            assert!(HostPort::parse(bad).is_err(), "{bad}");
        }
        for bad in ["", "a..b", "bad domain", ".", "*.x"] {
            assert!(DomainPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
