//! Turns the raw TOML into a checked [`Config`], collecting every error with its location. Each
//! section is checked by its own function (`smtp`, `model`, `reputation`); this file puts the
//! results together.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use super::problems::{Problems, number_in};
use super::raw::RawConfig;
use super::{AdminSettings, Config, ConfigErrors, OutboundSettings, QueueSettings};
use super::{api, cluster, feedback, identities, model, reputation, smtp};

pub(super) fn validate(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let mut problems = Problems::new(path, text);
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

    let smtp = smtp::smtp(&raw.smtp, &relative_to_config, &mut problems);
    let spool_dir = relative_to_config(raw.spool.dir.as_ref().map_or("var/spool", |d| d.get_ref()));
    let nameservers = nameservers(&raw, &mut problems);
    let queue = queue(&raw, &mut problems);
    let (outbound, events_path, admin) = paths(&raw, &relative_to_config, &mut problems);
    let warmup = model::warmup(&raw.warmup, &mut problems);
    let metrics_listen = raw.metrics.listen.as_ref().and_then(|l| {
        problems.check(l, |t| {
            t.parse::<SocketAddr>()
                .map_err(|_| format!("{t:?} is not ip:port"))
        })
    });
    let health = reputation::health(&raw.health, &mut problems);
    let shaping = reputation::shaping(&raw.shaping, &mut problems);
    let routes = model::routes(&raw.route, &mut problems);
    let mut registry = model::registry(&raw, &mut problems);
    registry.set_warmup(warmup.clone());
    let ptr_recheck = problems.duration_or(&raw.dns.ptr_recheck, 3600);
    let dkim = identities::with_identities(&raw, &mut registry, &relative_to_config, &mut problems);
    registry.set_account_suppression(feedback::account_reasons(&raw, &mut problems));
    registry.set_account(model::account(&raw));
    let bounce = feedback::bounce(&raw, &relative_to_config, &mut problems);
    let feedback = feedback::feedback(&raw, &mut problems);
    let api = api::api(&raw, &relative_to_config, &mut problems);
    let cluster = cluster::cluster(&raw, &relative_to_config, &mut problems);
    if let Some(format) = &raw.log.format {
        problems.check(format, crate::settings::LogFormat::parse);
    }

    if smtp.listen.is_empty() && problems.is_empty() {
        problems.at(
            raw.smtp.listen.first().map_or(0..0, |l| l.span()),
            "smtp.listen needs at least one address",
        );
    }
    if !problems.is_empty() {
        return Err(ConfigErrors(problems.errors));
    }
    Ok(Config {
        path: path.to_path_buf(),
        smtp,
        spool_dir,
        nameservers,
        ptr_recheck,
        dkim,
        bounce,
        feedback,
        api,
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
        cluster,
    })
}

/// `[dns] nameservers`: `ip` or `ip:port`; empty means the system resolver.
/// `[outbound]`, `[events]` and `[admin]`: mostly paths, relative to the config file.
fn paths(
    raw: &RawConfig,
    relative_to_config: &dyn Fn(&str) -> PathBuf,
    problems: &mut Problems<'_>,
) -> (OutboundSettings, Option<PathBuf>, AdminSettings) {
    let outbound = OutboundSettings {
        mx_port: raw
            .outbound
            .mx_port
            .as_ref()
            .map_or(25, |v| number_in(v, 1..65536, "outbound.mx_port", problems))
            as u16,
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
        users: super::console::users(&raw.admin.user, problems),
    };
    (outbound, events_path, admin)
}

fn nameservers(raw: &RawConfig, problems: &mut Problems<'_>) -> Vec<SocketAddr> {
    raw.dns
        .nameservers
        .iter()
        .filter_map(|n| {
            problems.check(n, |t| {
                t.parse::<SocketAddr>()
                    .or_else(|_| t.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| format!("{t:?} is not ip or ip:port"))
            })
        })
        .collect()
}

fn queue(raw: &RawConfig, problems: &mut Problems<'_>) -> QueueSettings {
    let queue = &raw.queue;
    QueueSettings {
        retry_interval: problems.duration_or(&queue.retry_interval, 300),
        max_retry_interval: problems.duration_or(&queue.max_retry_interval, 3600),
        max_age: problems.duration_or(&queue.max_age, 5 * 86400),
        max_concurrent_deliveries: queue.max_concurrent_deliveries.as_ref().map_or(128, |v| {
            number_in(v, 1..100_001, "max_concurrent_deliveries", problems)
        }) as usize,
        connection_idle_timeout: problems.duration_or(&queue.connection_idle_timeout, 30),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::BareNewline;

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
