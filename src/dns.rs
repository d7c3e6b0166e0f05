//! The relay's DNS: one way to build a resolver from `[dns] nameservers`, and the lookups beside
//! the MX path (TXT for DKIM records, PTR and forward lookups for reverse DNS).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;

/// A resolver for `nameservers` (empty: the system's, from `/etc/resolv.conf`). `cached`: keep
/// answers for their TTL (the MX path); checks that must see a record as it is now pass false.
pub fn resolver(nameservers: &[SocketAddr], cached: bool) -> Result<TokioResolver, String> {
    let mut builder = if nameservers.is_empty() {
        TokioResolver::builder_tokio().map_err(|error| error.to_string())?
    } else {
        let servers = nameservers
            .iter()
            .map(|server| {
                let connection = |protocol| {
                    let mut config = ConnectionConfig::new(protocol);
                    config.port = server.port();
                    config
                };
                NameServerConfig::new(
                    server.ip(),
                    true,
                    vec![
                        connection(ProtocolConfig::Udp),
                        connection(ProtocolConfig::Tcp),
                    ],
                )
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        )
    };
    builder = builder.with_tls_config(tls_config()?);
    if !cached {
        builder.options_mut().cache_size = 0;
        builder.options_mut().positive_max_ttl = Some(Duration::ZERO);
        builder.options_mut().negative_max_ttl = Some(Duration::ZERO);
    }
    builder.build().map_err(|error| error.to_string())
}

/// The TLS settings the resolver would use for DNS over TLS: the compiled-in webpki (Mozilla)
/// roots. Given explicitly because the resolver's default loads the host's CA store when it is
/// built and fails on a host without one (a minimal install has no ca-certificates), which left
/// the relay with no DNS at all: no MX lookups, every message deferred.
fn tls_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The response code of a "no records" answer (NXDOMAIN or an empty NOERROR); `None` for
/// failures worth retrying.
pub fn no_records(error: &NetError) -> Option<ResponseCode> {
    match error {
        NetError::Dns(DnsError::NoRecordsFound(no_records)) => Some(no_records.response_code),
        _ => None,
    }
}

/// Why a lookup found nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// The name does not exist or has no record of the type.
    NotFound,
    /// Timeout, SERVFAIL, no resolver: try again later.
    Temporary(String),
}

fn classify(error: NetError) -> LookupError {
    match no_records(&error) {
        Some(_) => LookupError::NotFound,
        None => LookupError::Temporary(error.to_string()),
    }
}

/// The TXT records at `name`, each record's strings joined.
pub async fn txt(resolver: &TokioResolver, name: &str) -> Result<Vec<String>, LookupError> {
    let lookup = resolver
        .txt_lookup(format!("{}.", name.trim_end_matches('.')))
        .await
        .map_err(classify)?;
    Ok(lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|part| String::from_utf8_lossy(part).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect())
}

/// The PTR names of `address` (without the final dot, lower case).
pub async fn ptr(resolver: &TokioResolver, address: IpAddr) -> Result<Vec<String>, LookupError> {
    let lookup = resolver.reverse_lookup(address).await.map_err(classify)?;
    Ok(lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::PTR(name) => Some(name.0.to_ascii().trim_end_matches('.').to_ascii_lowercase()),
            _ => None,
        })
        .collect())
}

/// The A and AAAA addresses of `host`.
pub async fn addresses(resolver: &TokioResolver, host: &str) -> Result<Vec<IpAddr>, LookupError> {
    let lookup = resolver
        .lookup_ip(format!("{}.", host.trim_end_matches('.')))
        .await
        .map_err(classify)?;
    Ok(lookup.iter().map(|ip| ip.to_canonical()).collect())
}
