//! The sending model as configured: pools, dedicated IPs, the shared pool, configuration sets
//! (built through the registry's own rules, the same ones the admin API uses), routes and the
//! warm-up schedule.

use toml::Spanned;

use super::problems::{Problems, number_in, parse_hostname, parse_ip};
use super::raw::{RawConfig, RawConfigurationSet, RawIp, RawRoute, RawWarmup};
use crate::registry::{ConfigurationSet, DedicatedIp, Registry, RegistryError, TlsPolicy};
use crate::settings::route::{DomainPattern, HostPort, Route};
use crate::settings::{WarmupSettings, default_warmup_schedule};

/// Pools, IPs, the shared pool and configuration sets, through the registry's own rules (the same
/// ones the admin API uses), each error at its place in the file.
pub(super) fn registry(raw: &RawConfig, problems: &mut Problems<'_>) -> Registry {
    let mut registry = Registry::default();
    add_pools(&mut registry, raw, problems);
    for ip in &raw.ip {
        add_ip(&mut registry, ip.get_ref(), raw.cluster.is_some(), problems);
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
        registry.set_pool_tags(pool.name.get_ref(), tags(&pool.tags));
    }
    for set in &raw.configuration_set {
        add_configuration_set(&mut registry, set.get_ref(), problems);
    }
    registry
}

fn tags(raw: &super::raw::RawTags) -> crate::settings::account::Tags {
    raw.iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `[account]`.
pub(super) fn account(raw: &RawConfig) -> crate::settings::account::AccountSettings {
    let account = &raw.account;
    crate::settings::account::AccountSettings {
        sending_enabled: account.sending_enabled.unwrap_or(true),
        max_send_rate: account.max_send_rate.as_ref().map_or(0, |r| *r.get_ref()),
        max_24_hour_send: account
            .max_24_hour_send
            .as_ref()
            .map_or(0, |r| *r.get_ref()),
    }
}

fn add_pools(registry: &mut Registry, raw: &RawConfig, problems: &mut Problems<'_>) {
    for pool in &raw.pool {
        let name = &pool.get_ref().name;
        if let Err(error) = registry.add_pool(name.get_ref()) {
            problems.at(name.span(), error.to_string());
        }
    }
}

/// `in_fleet`: the file is a fleet node's, whose `[[ip]]` may name pools of the fleet model
/// (checked when the node joins, against the model).
fn add_ip(registry: &mut Registry, ip: &RawIp, in_fleet: bool, problems: &mut Problems<'_>) {
    let Some(address) = problems.check(&ip.address, parse_ip) else {
        return;
    };
    let ehlo_hostname = ip
        .ehlo_hostname
        .as_ref()
        .and_then(|h| problems.check(h, parse_hostname));
    let weight = ip
        .weight
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
        warmup_percentage: ip
            .warmup_percentage
            .as_ref()
            .map(|p| *p.get_ref())
            .filter(|p| *p <= 100),
        address,
        pool: ip.pool.as_ref().map(|p| p.get_ref().clone()),
        ehlo_hostname,
        weight,
        suspended: ip.suspended.unwrap_or(false),
        node: ip.node.as_ref().and_then(|node| {
            problems.check(node, |name| {
                if crate::settings::cluster::is_valid_node_name(name) {
                    Ok(name.to_string())
                } else {
                    Err(format!(
                        "node name {name:?} is invalid: use 1-63 characters from a-z, 0-9 and '-'"
                    ))
                }
            })
        }),
    };
    let added = match registry.add_ip(dedicated.clone()) {
        Err(RegistryError::UnknownPool(_)) if in_fleet => registry.add_ip(DedicatedIp {
            pool: None,
            ..dedicated
        }),
        added => added,
    };
    if let Err(error) = added {
        let span = match (&error, &ip.pool) {
            (RegistryError::UnknownPool(_), Some(pool)) => pool.span(),
            _ => ip.address.span(),
        };
        problems.at(span, error.to_string());
    }
}

fn add_configuration_set(
    registry: &mut Registry,
    set: &RawConfigurationSet,
    problems: &mut Problems<'_>,
) {
    let result = registry.add_configuration_set(ConfigurationSet {
        name: set.name.get_ref().clone(),
        sending_pool: set.sending_pool.as_ref().map(|p| p.get_ref().clone()),
        max_delivery_seconds: set.max_delivery_seconds.as_ref().map(|s| *s.get_ref()),
        tls_policy: match &set.tls_policy {
            None => None,
            Some(policy) => problems.check(policy, |t| {
                t.parse::<TlsPolicy>()
                    .map_err(|_| format!("tls_policy is \"REQUIRE\" or \"OPTIONAL\", not {t:?}"))
            }),
        },
        suppressed_reasons: set
            .suppressed_reasons
            .as_ref()
            .map(|list| super::feedback::reasons(list, problems)),
        sending_paused: set.sending_enabled == Some(false),
        tags: tags(&set.tags),
    });
    if let Err(error) = result {
        let span = match (&error, &set.sending_pool, &set.max_delivery_seconds) {
            (RegistryError::UnknownPool(_), Some(pool), _) => pool.span(),
            (RegistryError::InvalidMaxDeliverySeconds(_), _, Some(seconds)) => seconds.span(),
            _ => set.name.span(),
        };
        problems.at(span, error.to_string());
    }
}

/// `[[route]]`: static next hops by recipient domain.
pub(super) fn routes(raw: &[Spanned<RawRoute>], problems: &mut Problems<'_>) -> Vec<Route> {
    let mut routes: Vec<Route> = Vec::new();
    for route in raw {
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
            if routes.iter().any(|r| r.domain == domain) {
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
    routes
}

/// `[warmup]`: on by default, with the 45-day schedule unless one is given.
pub(super) fn warmup(raw: &RawWarmup, problems: &mut Problems<'_>) -> WarmupSettings {
    WarmupSettings {
        enabled: raw.enabled.unwrap_or(true),
        schedule: match &raw.schedule {
            None => default_warmup_schedule(),
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
    }
}
