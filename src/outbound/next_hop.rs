//! Where a recipient domain's mail goes: a static route, an address literal, or the domain's MX
//! hosts (RFC 5321 §5.1), resolved with hickory-resolver.
//!
//! MX hosts are tried in preference order with equal preferences shuffled; a domain without MX
//! records falls back to its own A/AAAA records; a null MX (RFC 7505, a single `MX 0 .`) means
//! the domain accepts no mail, which is a permanent failure.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;
use rand::seq::SliceRandom;

use crate::dns::no_records;
use crate::settings::route::{Route, find_route};

/// One address to try, with the name it was found under (for logs and TLS SNI).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub host: String,
    pub addr: SocketAddr,
    /// From the route: never plaintext / verify the certificate. MX targets: neither.
    pub require_tls: bool,
    pub verify_tls: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Retry later (DNS timeout, SERVFAIL, no address for any MX host yet).
    #[error("{0}")]
    Temporary(String),
    /// The domain cannot receive mail (does not exist, null MX, no MX and no address).
    #[error("{0}")]
    Permanent(String),
}

/// At most this many addresses are tried per domain and attempt.
const MAX_TARGETS: usize = 10;

pub struct NextHopResolver {
    routes: Vec<Route>,
    /// The port for MX hosts and address literals (25 outside tests).
    mx_port: u16,
    dns: Result<TokioResolver, String>,
}

impl NextHopResolver {
    /// `nameservers` empty means the system resolver (`/etc/resolv.conf`). A resolver that cannot
    /// be built is not fatal: static routes still work, MX lookups fail temporarily with the reason.
    pub fn new(routes: Vec<Route>, nameservers: &[SocketAddr], mx_port: u16) -> Self {
        let dns = crate::dns::resolver(nameservers, true);
        let dns = dns.map_err(|error| {
            tracing::warn!(%error, "no DNS resolver: only static routes and address literals can be delivered");
            format!("no DNS resolver: {error}")
        });
        Self {
            routes,
            mx_port,
            dns,
        }
    }

    /// The addresses to try for a (lower-case) recipient domain, best first.
    pub async fn resolve(&self, domain: &str) -> Result<Vec<Target>, ResolveError> {
        if let Some(route) = find_route(&self.routes, domain) {
            let mut targets = self
                .host_addresses(&route.next_hop.host, route.next_hop.port)
                .await?;
            for target in &mut targets {
                target.require_tls = route.require_tls;
                target.verify_tls = route.verify_tls;
            }
            return Ok(targets);
        }
        if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            let literal = literal.strip_prefix("ipv6:").unwrap_or(literal);
            return literal
                .parse::<IpAddr>()
                .map(|ip| {
                    vec![Target {
                        host: ip.to_string(),
                        addr: SocketAddr::new(ip.to_canonical(), self.mx_port),
                        require_tls: false,
                        verify_tls: false,
                    }]
                })
                .map_err(|_| ResolveError::Permanent(format!("bad address literal {domain}")));
        }
        let dns = self.dns()?;
        let exchanges = match dns.mx_lookup(domain).await {
            Ok(lookup) => {
                let records: Vec<(u16, String)> = lookup
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                        _ => None,
                    })
                    .collect();
                order_exchanges(domain, records)?
            }
            Err(error) => match no_records(&error) {
                Some(ResponseCode::NXDomain) => {
                    return Err(ResolveError::Permanent(format!(
                        "domain {domain} does not exist"
                    )));
                }
                Some(_) => vec![domain.to_string()],
                None => {
                    return Err(ResolveError::Temporary(format!(
                        "MX lookup for {domain} failed: {error}"
                    )));
                }
            },
        };
        let mut targets = Vec::new();
        let mut last_error = None;
        for exchange in exchanges {
            match self.host_addresses(&exchange, self.mx_port).await {
                Ok(found) => targets.extend(found),
                Err(error) => last_error = Some(error),
            }
            if targets.len() >= MAX_TARGETS {
                break;
            }
        }
        targets.truncate(MAX_TARGETS);
        if targets.is_empty() {
            return Err(last_error
                .unwrap_or_else(|| ResolveError::Temporary(format!("no address for {domain}"))));
        }
        Ok(targets)
    }

    fn dns(&self) -> Result<&TokioResolver, ResolveError> {
        self.dns
            .as_ref()
            .map_err(|reason| ResolveError::Temporary(reason.clone()))
    }

    /// A/AAAA of a host name (or the address itself).
    async fn host_addresses(&self, host: &str, port: u16) -> Result<Vec<Target>, ResolveError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![Target {
                host: host.to_string(),
                addr: SocketAddr::new(ip.to_canonical(), port),
                require_tls: false,
                verify_tls: false,
            }]);
        }
        let dns = self.dns()?;
        match dns.lookup_ip(host).await {
            Ok(lookup) => Ok(lookup
                .iter()
                .map(|ip| Target {
                    host: host.trim_end_matches('.').to_string(),
                    addr: SocketAddr::new(ip.to_canonical(), port),
                    require_tls: false,
                    verify_tls: false,
                })
                .collect()),
            Err(error) => match no_records(&error) {
                Some(_) => Err(ResolveError::Permanent(format!(
                    "{host} has no address records"
                ))),
                None => Err(ResolveError::Temporary(format!(
                    "address lookup for {host} failed: {error}"
                ))),
            },
        }
    }
}

/// MX records in the order to try: by preference, equal preferences shuffled. A null MX
/// (a single record whose exchange is the root) is a permanent refusal.
pub fn order_exchanges(
    domain: &str,
    mut records: Vec<(u16, String)>,
) -> Result<Vec<String>, ResolveError> {
    let is_root = |name: &str| name.is_empty() || name == ".";
    if records.iter().any(|(_, exchange)| is_root(exchange)) {
        return Err(ResolveError::Permanent(format!(
            "domain {domain} does not accept mail (null MX)"
        )));
    }
    records.shuffle(&mut rand::rng());
    records.sort_by_key(|(preference, _)| *preference);
    Ok(records
        .into_iter()
        .map(|(_, exchange)| exchange.trim_end_matches('.').to_ascii_lowercase())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchanges_by_preference_with_ties_shuffled() {
        let mut seen_first = std::collections::HashSet::new();
        for _ in 0..200 {
            let order = order_exchanges(
                "example.test",
                vec![
                    (20, "c.example.test.".into()),
                    (10, "a.example.test.".into()),
                    (10, "b.example.test.".into()),
                ],
            )
            .unwrap();
            assert_eq!(order[2], "c.example.test");
            seen_first.insert(order[0].clone());
        }
        assert_eq!(seen_first.len(), 2, "equal preferences are shuffled");
    }

    #[test]
    fn null_mx_is_permanent() {
        assert!(matches!(
            order_exchanges("example.test", vec![(0, ".".into())]),
            Err(ResolveError::Permanent(_))
        ));
    }

    #[tokio::test]
    async fn routes_and_literals_need_no_dns() {
        let routes = vec![Route {
            domain: crate::settings::route::DomainPattern::parse("example.test").unwrap(),
            next_hop: crate::settings::route::HostPort::parse("127.0.0.1:2526").unwrap(),
            require_tls: true,
            verify_tls: false,
        }];
        let resolver = NextHopResolver::new(routes, &["127.0.0.1:9".parse().unwrap()], 25);
        let targets = resolver.resolve("example.test").await.unwrap();
        assert_eq!(targets[0].addr, "127.0.0.1:2526".parse().unwrap());
        assert!(
            targets[0].require_tls && !targets[0].verify_tls,
            "the route's TLS needs travel with it"
        );
        let targets = resolver.resolve("[127.0.0.5]").await.unwrap();
        assert_eq!(targets[0].addr, "127.0.0.5:25".parse().unwrap());
    }
}
