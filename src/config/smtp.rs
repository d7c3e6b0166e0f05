//! `[smtp]`: listeners, limits, TLS files and the users who may authenticate.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;

use super::problems::{Problems, number_in, parse_hostname};
use super::raw::{RawSmtp, Text};
use super::{SmtpSettings, SmtpUser, TlsFiles};
use crate::settings::BareNewline;

/// Without `[smtp] hostname`: this host's name, when it is a valid host name.
fn this_host_name(problems: &mut Problems<'_>) -> String {
    let name = crate::domain::host_name().unwrap_or_default();
    parse_hostname(&name).unwrap_or_else(|_| {
        problems.at(
            0..0,
            format!(
                "[smtp] hostname is not set and this host's name {name:?} is not a valid host \
                 name: set hostname to the name this relay's addresses resolve to"
            ),
        );
        String::new()
    })
}

/// The `[smtp]` section. `relative_to_config` resolves the certificate paths.
pub(super) fn smtp(
    smtp: &RawSmtp,
    relative_to_config: &dyn Fn(&str) -> PathBuf,
    problems: &mut Problems<'_>,
) -> SmtpSettings {
    let listen = addresses(&smtp.listen, problems);
    let hostname = match &smtp.hostname {
        Some(name) => problems.check(name, parse_hostname).unwrap_or_default(),
        None => this_host_name(problems),
    };
    let max_message_bytes = smtp.max_message_bytes.as_ref().map_or(41_943_040, |v| {
        number_in(v, 1024..(1 << 40), "max_message_bytes", problems)
    });
    let max_recipients =
        smtp.max_recipients
            .as_ref()
            .map_or(50, |v| number_in(v, 1..100_001, "max_recipients", problems)) as usize;
    let max_connections = smtp.max_connections.as_ref().map_or(1000, |v| {
        number_in(v, 1..1_000_001, "max_connections", problems)
    }) as usize;
    let max_connections_per_ip = smtp.max_connections_per_ip.as_ref().map_or(50, |v| {
        number_in(v, 1..1_000_001, "max_connections_per_ip", problems)
    }) as u32;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let auth_concurrency = smtp.auth_concurrency.as_ref().map_or(cores, |v| {
        number_in(v, 1..1025, "auth_concurrency", problems)
    }) as usize;
    let auth_failures_per_ip = smtp.auth_failures_per_ip.as_ref().map_or(10, |v| {
        number_in(v, 1..1_000_001, "auth_failures_per_ip", problems)
    }) as u32;
    let relay_networks = relay_networks(smtp.relay_networks.as_deref(), problems);
    let bare_newline = bare_newline(smtp.bare_newline.as_ref(), problems);
    let tls = smtp.tls.as_ref().map(|tls| TlsFiles {
        cert: relative_to_config(tls.cert.get_ref()),
        key: relative_to_config(tls.key.get_ref()),
    });
    let tls_listen = addresses(smtp.tls_listen.as_deref().unwrap_or_default(), problems);
    if !tls_listen.is_empty()
        && tls.is_none()
        && let Some(first) = smtp.tls_listen.iter().flatten().next()
    {
        problems.at(first.span(), "tls_listen needs [smtp.tls] cert and key");
    }
    let users = users(smtp, tls.is_some(), problems);
    let command_timeout = problems.duration_or(&smtp.command_timeout, 300);
    let data_timeout = problems.duration_or(&smtp.data_timeout, 180);
    SmtpSettings {
        listen,
        hostname,
        max_message_bytes,
        max_recipients,
        relay_networks,
        max_connections,
        max_connections_per_ip,
        bare_newline,
        command_timeout,
        data_timeout,
        tls_listen,
        tls,
        users,
        auth_concurrency,
        auth_failures_per_ip,
    }
}

/// `ip:port` listener addresses.
fn addresses(list: &[Text], problems: &mut Problems<'_>) -> Vec<SocketAddr> {
    list.iter()
        .filter_map(|a| {
            problems.check(a, |t| {
                t.parse().map_err(|_| format!("{t:?} is not ip:port"))
            })
        })
        .collect()
}

/// `relay_networks`; absent: loopback only.
fn relay_networks(list: Option<&[Text]>, problems: &mut Problems<'_>) -> Vec<IpNet> {
    let Some(list) = list else {
        return ["127.0.0.0/8", "::1/128"]
            .iter()
            .filter_map(|network| network.parse().ok())
            .collect();
    };
    list.iter()
        .filter_map(|n| {
            problems.check(n, |t| {
                t.parse::<IpNet>()
                    .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{t:?} is not a network (write 10.0.0.0/8 or an address)"))
            })
        })
        .collect()
}

fn bare_newline(value: Option<&Text>, problems: &mut Problems<'_>) -> BareNewline {
    value
        .and_then(|v| {
            problems.check(v, |t| match t {
                "reject" => Ok(BareNewline::Reject),
                "normalize" => Ok(BareNewline::Normalize),
                _ => Err(format!(
                    "bare_newline is \"reject\" or \"normalize\", not {t:?}"
                )),
            })
        })
        .unwrap_or(BareNewline::Reject)
}

/// `[[smtp.user]]`: unique names, valid hashes, and TLS configured (AUTH is offered only there).
fn users(smtp: &RawSmtp, has_tls: bool, problems: &mut Problems<'_>) -> Vec<SmtpUser> {
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
            crate::password::check_hash(h).map(|()| h.to_string())
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
        && !has_tls
        && let Some(first) = smtp.user.first()
    {
        problems.at(
            first.span(),
            "[[smtp.user]] needs [smtp.tls]: AUTH is offered only inside TLS",
        );
    }
    users
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn without_a_hostname_the_relay_uses_this_hosts_name() {
        let text = "[smtp]\nlisten = [\"127.0.0.1:25\"]\n";
        let name = crate::domain::host_name().unwrap_or_default();
        match crate::config::parse(Path::new("/etc/poolrelay/poolrelay.toml"), text) {
            Ok(config) => assert_eq!(config.smtp.hostname, name),
            Err(errors) => assert!(
                errors.to_string().contains("hostname is not set")
                    && super::parse_hostname(&name).is_err(),
                "{errors}"
            ),
        }
        let named = crate::config::parse(
            Path::new("/etc/poolrelay/poolrelay.toml"),
            "[smtp]\nlisten = [\"127.0.0.1:25\"]\nhostname = \"mx.example.test\"\n",
        );
        assert_eq!(
            named.map(|c| c.smtp.hostname).ok().as_deref(),
            Some("mx.example.test")
        );
    }

    #[test]
    fn a_hostname_without_a_dot_is_warned_about_in_the_summary() {
        let parse = |name: &str| {
            let text = format!("[smtp]\nlisten = [\"127.0.0.1:25\"]\nhostname = \"{name}\"\n");
            crate::config::parse(Path::new("/etc/poolrelay/poolrelay.toml"), &text).unwrap()
        };
        let summary = parse("mx").summary();
        assert!(
            summary.contains("warning: [smtp] hostname \"mx\" is not a fully qualified"),
            "{summary}"
        );
        assert!(!parse("mx.example.test").summary().contains("warning"));
    }
}
