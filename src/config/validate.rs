//! Turns the raw TOML into a checked [`Config`], collecting every error with its location.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;

use super::raw::{RawConfig, Text};
use super::{
    AdminSettings, BareNewline, Config, ConfigError, ConfigErrors, OutboundSettings, QueueSettings,
    SmtpSettings, SmtpUser, TlsFiles, WarmupSettings,
};
use crate::outbound::route::{DomainPattern, HostPort, Route};
use crate::registry::{ConfigurationSet, DedicatedIp, Registry, TlsPolicy};

/// Collects errors and turns byte spans into line and column numbers.
pub(super) struct Problems<'a> {
    path: &'a Path,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl Problems<'_> {
    pub(super) fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        self.errors.push(ConfigError {
            path: self.path.to_path_buf(),
            line,
            column,
            message: message.into(),
        });
    }

    /// Parses a spanned string with `parse`, recording the error at the value's location.
    pub(super) fn check<T>(
        &mut self,
        value: &Text,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match parse(value.get_ref()) {
            Ok(parsed) => Some(parsed),
            Err(message) => {
                self.at(value.span(), message);
                None
            }
        }
    }
}

pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|_| {
        format!("{text:?} is not a duration (write \"30s\", \"5m\", \"2h\" or \"5d\")")
    })
}

fn parse_ip(text: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not an IPv4 or IPv6 address"))
}

fn parse_hostname(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(text.to_string())
    } else {
        Err(format!("{text:?} is not a valid host name"))
    }
}

pub(super) fn number_in(
    value: &Spanned<u64>,
    range: Range<u64>,
    what: &str,
    problems: &mut Problems<'_>,
) -> u64 {
    let number = *value.get_ref();
    if !range.contains(&number) {
        problems.at(
            value.span(),
            format!(
                "{what} must be between {} and {}",
                range.start,
                range.end - 1
            ),
        );
    }
    number
}

/// Pools, IPs, the shared pool and configuration sets, through the registry's own rules (the same
/// ones the admin API uses), each error at its place in the file.
fn build_registry(raw: &RawConfig, problems: &mut Problems<'_>) -> Registry {
    let mut registry = Registry::default();
    for pool in &raw.pool {
        let name = &pool.get_ref().name;
        if let Err(error) = registry.add_pool(name.get_ref()) {
            problems.at(name.span(), error.to_string());
        }
    }
    for ip in &raw.ip {
        let ip_span = ip.span();
        let ip = ip.get_ref();
        let Some(address) = problems.check(&ip.address, parse_ip) else {
            continue;
        };
        let ehlo_hostname = ip
            .ehlo_hostname
            .as_ref()
            .and_then(|h| problems.check(h, parse_hostname));
        let weight =
            ip.weight
                .as_ref()
                .map_or(1, |w| number_in(w, 0..1_000_001, "weight", problems)) as u32;
        let warmup_started = ip.warmup_started.as_ref().and_then(|d| {
            problems.check(d, |t| {
                chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
                    .map_err(|_| format!("{t:?} is not a date (write \"2026-11-20\")"))
            })
        });
        let dedicated = DedicatedIp {
            warmup_started,
            address,
            pool: ip.pool.as_ref().map(|p| p.get_ref().clone()),
            ehlo_hostname,
            weight,
            suspended: ip.suspended.unwrap_or(false),
        };
        if let Err(error) = registry.add_ip(dedicated) {
            let span = match (&error, &ip.pool) {
                (crate::registry::RegistryError::UnknownPool(_), Some(pool)) => pool.span(),
                _ => ip.address.span(),
            };
            let _ = ip_span;
            problems.at(span, error.to_string());
        }
    }
    for address in &raw.shared_pool.ips {
        if let Some(ip) = problems.check(address, parse_ip)
            && let Err(error) = registry.add_shared_ip(ip)
        {
            problems.at(address.span(), error.to_string());
        }
    }
    for pool in &raw.pool {
        let pool = pool.get_ref();
        if let Some(overflow) = &pool.overflow_pool
            && let Err(error) = registry.set_overflow_pool(pool.name.get_ref(), overflow.get_ref())
        {
            problems.at(overflow.span(), format!("overflow_pool: {error}"));
        }
    }
    for set in &raw.configuration_set {
        let set = set.get_ref();
        let result = registry.add_configuration_set(ConfigurationSet {
            name: set.name.get_ref().clone(),
            sending_pool: set.sending_pool.as_ref().map(|p| p.get_ref().clone()),
            max_delivery_seconds: set.max_delivery_seconds.as_ref().map(|s| *s.get_ref()),
            tls_policy: match &set.tls_policy {
                None => None,
                Some(policy) => problems.check(policy, |t| {
                    t.parse::<TlsPolicy>().map_err(|_| {
                        format!("tls_policy is \"REQUIRE\" or \"OPTIONAL\", not {t:?}")
                    })
                }),
            },
        });
        if let Err(error) = result {
            let span = match (&error, &set.sending_pool, &set.max_delivery_seconds) {
                (crate::registry::RegistryError::UnknownPool(_), Some(pool), _) => pool.span(),
                (
                    crate::registry::RegistryError::InvalidMaxDeliverySeconds(_),
                    _,
                    Some(seconds),
                ) => seconds.span(),
                _ => set.name.span(),
            };
            problems.at(span, error.to_string());
        }
    }
    registry
}

pub(super) fn validate(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let mut problems = Problems {
        path,
        text,
        errors: Vec::new(),
    };
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            problems.at(span, error.message().trim().to_string());
            return Err(ConfigErrors(problems.errors));
        }
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let relative_to_config = |p: &str| -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_absolute() { p } else { base.join(p) }
    };

    // [smtp]
    let smtp = &raw.smtp;
    let listen: Vec<SocketAddr> = smtp
        .listen
        .iter()
        .filter_map(|a| {
            problems.check(a, |t| {
                t.parse().map_err(|_| format!("{t:?} is not ip:port"))
            })
        })
        .collect();
    let hostname = problems
        .check(&smtp.hostname, parse_hostname)
        .unwrap_or_default();
    let max_message_bytes = smtp.max_message_bytes.as_ref().map_or(41_943_040, |v| {
        number_in(v, 1024..(1 << 40), "max_message_bytes", &mut problems)
    });
    let max_recipients = smtp.max_recipients.as_ref().map_or(50, |v| {
        number_in(v, 1..100_001, "max_recipients", &mut problems)
    }) as usize;
    let max_connections = smtp.max_connections.as_ref().map_or(1000, |v| {
        number_in(v, 1..1_000_001, "max_connections", &mut problems)
    }) as usize;
    let relay_networks: Vec<IpNet> = match &smtp.relay_networks {
        None => vec![
            "127.0.0.0/8".parse().unwrap_or_default(),
            "::1/128".parse().unwrap_or_default(),
        ],
        Some(list) => list
            .iter()
            .filter_map(|n| {
                problems.check(n, |t| {
                    t.parse::<IpNet>()
                        .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
                        .map_err(|_| {
                            format!("{t:?} is not a network (write 10.0.0.0/8 or an address)")
                        })
                })
            })
            .collect(),
    };
    let bare_newline = match &smtp.bare_newline {
        None => BareNewline::Reject,
        Some(v) => problems
            .check(v, |t| match t {
                "reject" => Ok(BareNewline::Reject),
                "normalize" => Ok(BareNewline::Normalize),
                _ => Err(format!(
                    "bare_newline is \"reject\" or \"normalize\", not {t:?}"
                )),
            })
            .unwrap_or(BareNewline::Reject),
    };
    let duration_or = |value: &Option<Text>, default: u64, problems: &mut Problems<'_>| {
        value
            .as_ref()
            .and_then(|v| problems.check(v, parse_duration))
            .unwrap_or(Duration::from_secs(default))
    };
    let tls = smtp.tls.as_ref().map(|tls| TlsFiles {
        cert: relative_to_config(tls.cert.get_ref()),
        key: relative_to_config(tls.key.get_ref()),
    });
    let tls_listen: Vec<SocketAddr> = smtp
        .tls_listen
        .iter()
        .flatten()
        .filter_map(|a| {
            problems.check(a, |t| {
                t.parse().map_err(|_| format!("{t:?} is not ip:port"))
            })
        })
        .collect();
    if !tls_listen.is_empty()
        && tls.is_none()
        && let Some(first) = smtp.tls_listen.iter().flatten().next()
    {
        problems.at(first.span(), "tls_listen needs [smtp.tls] cert and key");
    }
    let mut users: Vec<SmtpUser> = Vec::new();
    for user in &smtp.user {
        let user = user.get_ref();
        if users.iter().any(|u| &u.username == user.username.get_ref()) {
            problems.at(
                user.username.span(),
                format!("user {:?} is defined twice", user.username.get_ref()),
            );
        }
        if let Some(hash) = problems.check(&user.password_hash, |h| {
            crate::inbound::auth::check_hash(h).map(|()| h.to_string())
        }) {
            users.push(SmtpUser {
                username: user.username.get_ref().clone(),
                password_hash: hash,
                allowed_configuration_sets: user
                    .allowed_configuration_sets
                    .as_ref()
                    .map(|sets| sets.iter().map(|s| s.get_ref().clone()).collect()),
            });
        }
    }
    if !users.is_empty()
        && tls.is_none()
        && let Some(first) = smtp.user.first()
    {
        problems.at(
            first.span(),
            "[[smtp.user]] needs [smtp.tls]: AUTH is offered only inside TLS",
        );
    }
    let command_timeout = duration_or(&smtp.command_timeout, 300, &mut problems);
    let data_timeout = duration_or(&smtp.data_timeout, 180, &mut problems);

    // [spool], [dns], [queue]
    let spool_dir = relative_to_config(raw.spool.dir.as_ref().map_or("var/spool", |d| d.get_ref()));
    let nameservers = raw
        .dns
        .nameservers
        .iter()
        .filter_map(|n| {
            problems.check(n, |t| {
                t.parse::<SocketAddr>()
                    .or_else(|_| t.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| format!("{t:?} is not ip or ip:port"))
            })
        })
        .collect();
    let queue = QueueSettings {
        retry_interval: duration_or(&raw.queue.retry_interval, 300, &mut problems),
        max_retry_interval: duration_or(&raw.queue.max_retry_interval, 3600, &mut problems),
        max_age: duration_or(&raw.queue.max_age, 5 * 86400, &mut problems),
        max_concurrent_deliveries: raw
            .queue
            .max_concurrent_deliveries
            .as_ref()
            .map_or(128, |v| {
                number_in(v, 1..100_001, "max_concurrent_deliveries", &mut problems)
            }) as usize,
        connection_idle_timeout: duration_or(&raw.queue.connection_idle_timeout, 30, &mut problems),
    };

    let outbound = OutboundSettings {
        mx_port: raw.outbound.mx_port.as_ref().map_or(25, |v| {
            number_in(v, 1..65536, "outbound.mx_port", &mut problems)
        }) as u16,
        ca_file: raw
            .outbound
            .ca_file
            .as_ref()
            .map(|p| relative_to_config(p.get_ref())),
    };

    let events_path = raw
        .events
        .path
        .as_ref()
        .map(|p| relative_to_config(p.get_ref()));
    let admin = AdminSettings {
        socket: raw
            .admin
            .socket
            .as_ref()
            .map(|p| relative_to_config(p.get_ref())),
        allowed_uids: raw.admin.allowed_uids.clone(),
        group: raw.admin.group.as_ref().map(|g| g.get_ref().clone()),
    };
    let warmup = WarmupSettings {
        enabled: raw.warmup.enabled.unwrap_or(true),
        schedule: match &raw.warmup.schedule {
            None => super::default_warmup_schedule(),
            Some(days) => {
                if days.is_empty() || days.iter().any(|d| *d.get_ref() == 0) {
                    problems.at(
                        days.first().map_or(0..0, |d| d.span()),
                        "warmup.schedule needs at least one day, each above 0",
                    );
                }
                days.iter().map(|d| *d.get_ref()).collect()
            }
        },
    };
    let metrics_listen = raw.metrics.listen.as_ref().and_then(|l| {
        problems.check(l, |t| {
            t.parse::<SocketAddr>()
                .map_err(|_| format!("{t:?} is not ip:port"))
        })
    });

    let health = super::reputation::health(&raw.health, &mut problems);
    let shaping = super::reputation::shaping(&raw.shaping, &mut problems);

    // [[route]]
    let mut routes = Vec::new();
    for route in &raw.route {
        let route = route.get_ref();
        let domain = problems.check(&route.domain, DomainPattern::parse);
        let next_hop = problems.check(&route.next_hop, HostPort::parse);
        let require_tls = match &route.tls {
            None => false,
            Some(tls) => problems
                .check(tls, |t| match t {
                    "require" => Ok(true),
                    "optional" => Ok(false),
                    _ => Err(format!("tls is \"require\" or \"optional\", not {t:?}")),
                })
                .unwrap_or(false),
        };
        let verify_tls = route.tls_verify.unwrap_or(false);
        if let (Some(domain), Some(next_hop)) = (domain, next_hop) {
            if routes.iter().any(|r: &Route| r.domain == domain) {
                problems.at(
                    route.domain.span(),
                    format!("a route for {domain} is defined twice"),
                );
            }
            routes.push(Route {
                domain,
                next_hop,
                // Verifying a certificate only means something if plaintext is not an option.
                require_tls: require_tls || verify_tls,
                verify_tls,
            });
        }
    }

    let mut registry = build_registry(&raw, &mut problems);

    if listen.is_empty() && problems.errors.is_empty() {
        problems.at(
            smtp.listen.first().map_or(0..0, |l| l.span()),
            "smtp.listen needs at least one address",
        );
    }
    registry.set_warmup(warmup.clone());
    if !problems.errors.is_empty() {
        return Err(ConfigErrors(problems.errors));
    }
    Ok(Config {
        path: path.to_path_buf(),
        smtp: SmtpSettings {
            listen,
            hostname,
            max_message_bytes,
            max_recipients,
            relay_networks,
            max_connections,
            bare_newline,
            command_timeout,
            data_timeout,
            tls_listen,
            tls,
            users,
        },
        spool_dir,
        nameservers,
        queue,
        outbound,
        events_path,
        admin,
        metrics_listen,
        warmup,
        health,
        shaping,
        routes,
        registry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str =
        "[smtp]\nlisten = [\"127.0.0.1:2525\"]\nhostname = \"relay.example.test\"\n";

    fn errors(text: &str) -> Vec<String> {
        match validate(Path::new("/etc/poolrelay/test.toml"), text) {
            Ok(_) => vec![],
            Err(ConfigErrors(list)) => list.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn minimal_config_has_sane_defaults() {
        let config = validate(Path::new("/etc/poolrelay/test.toml"), MINIMAL).unwrap();
        assert_eq!(config.smtp.max_message_bytes, 41_943_040);
        assert_eq!(config.smtp.max_recipients, 50);
        assert_eq!(config.spool_dir, PathBuf::from("/etc/poolrelay/var/spool"));
        assert_eq!(config.smtp.bare_newline, BareNewline::Reject);
        assert!(
            config
                .smtp
                .relay_networks
                .iter()
                .any(|n| n.contains(&"127.0.0.5".parse::<IpAddr>().unwrap()))
        );
    }

    #[test]
    fn every_error_is_reported_with_its_line() {
        let text = format!(
            "{MINIMAL}\n[[pool]]\nname = \"Bad Name\"\n\n[[ip]]\naddress = \"127.0.0.300\"\n\n[[ip]]\naddress = \"127.0.0.2\"\npool = \"ghost\"\n\n[[ip]]\naddress = \"127.0.0.3\"\n[[ip]]\naddress = \"127.0.0.3\"\n\n[[configuration_set]]\nname = \"x\"\nsending_pool = \"nowhere\"\n"
        );
        let found = errors(&text);
        assert_eq!(found.len(), 5, "{found:#?}");
        assert!(
            found[0].contains("test.toml:6:8") && found[0].contains("invalid"),
            "{found:?}"
        );
        assert!(
            found[1].contains(":9:11:") && found[1].contains("not an IPv4"),
            "{found:?}"
        );
        assert!(
            found[2].contains(":13:8:") && found[2].contains("\"ghost\" does not exist"),
            "{found:?}"
        );
        assert!(
            found[3].contains(":18:11:") && found[3].contains("listed twice"),
            "{found:?}"
        );
        assert!(
            found[4].contains(":22:16:") && found[4].contains("\"nowhere\" does not exist"),
            "{found:?}"
        );
    }

    #[test]
    fn unknown_key_is_refused_with_location() {
        let found = errors(&format!("{MINIMAL}colour = \"blue\"\n"));
        assert_eq!(found.len(), 1);
        assert!(
            found[0].contains(":4:1:") && found[0].contains("unknown field `colour`"),
            "{found:?}"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        let found = errors(
            "[smtp]\nlisten = [\"nope\"]\nhostname = \"bad host\"\nbare_newline = \"ignore\"\ncommand_timeout = \"soon\"\n[[route]]\ndomain = \"*\"\nnext_hop = \"127.0.0.1\"\n",
        );
        assert_eq!(found.len(), 5, "{found:#?}");
    }
}
