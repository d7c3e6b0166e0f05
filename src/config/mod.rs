//! The configuration file: loading, validation and the checked settings the relay runs on.
//!
//! `load` reads the TOML, checks every value and returns either a [`Config`] or *all* the problems
//! found, each with file, line and column, so an operator fixes a broken file in one pass.
//! Relative paths in the file are relative to the file's folder, not to the working directory.

mod api;
mod cluster;
mod console;
pub mod edit;
pub mod feedback;
mod identities;
mod model;
mod problems;
mod raw;
mod reputation;
mod smtp;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use crate::identity::key::KeyAlgorithm;
use crate::registry::Registry;
use crate::settings::feedback::{BounceSettings, FeedbackSettings};
use crate::settings::health::HealthSettings;
use crate::settings::route::Route;
use crate::settings::shaping::ShapingRule;
use crate::settings::{BareNewline, WarmupSettings};

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub listen: Vec<SocketAddr>,
    pub hostname: String,
    pub max_message_bytes: u64,
    pub max_recipients: usize,
    pub relay_networks: Vec<IpNet>,
    pub max_connections: usize,
    /// Sessions one client address may hold at once.
    pub max_connections_per_ip: u32,
    pub bare_newline: BareNewline,
    /// How long a client may stay silent between commands (RFC 5321 §4.5.3.2: at least 5 min).
    pub command_timeout: Duration,
    /// How long a client may stay silent inside DATA.
    pub data_timeout: Duration,
    /// Listeners that speak TLS from the first byte (port 465 style).
    pub tls_listen: Vec<SocketAddr>,
    /// Certificate chain and key (PEM files) for STARTTLS and `tls_listen`.
    pub tls: Option<TlsFiles>,
    /// `[[smtp.user]]`: who may authenticate (AUTH PLAIN/LOGIN, inside TLS only).
    pub users: Vec<SmtpUser>,
    /// Password checks running at once (each takes ~19 MiB); the rest wait.
    pub auth_concurrency: usize,
    /// Failed AUTH attempts a client address may make in 15 minutes.
    pub auth_failures_per_ip: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpUser {
    pub username: String,
    /// argon2 PHC string.
    pub password_hash: String,
    /// `None`: any configuration set.
    pub allowed_configuration_sets: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// First retry after a temporary failure; doubles on each further attempt.
    pub retry_interval: Duration,
    pub max_retry_interval: Duration,
    /// Give up on a recipient after this long (RFC 5321 §4.5.4.1: at least 4-5 days).
    pub max_age: Duration,
    pub max_concurrent_deliveries: usize,
    /// How long an idle outbound connection is kept for reuse.
    pub connection_idle_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct OutboundSettings {
    /// The port used for MX hosts and address literals: 25, except in test setups on loopback.
    pub mx_port: u16,
    /// PEM roots for routes with `tls_verify`; `None`: the webpki (Mozilla) roots.
    pub ca_file: Option<PathBuf>,
}

/// `[dkim]`: where the relay keeps keys it generates or is given, and what it generates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimSettings {
    pub key_dir: PathBuf,
    /// `key_dir` as written in the file (relative paths written back into the file use it).
    pub key_dir_as_written: String,
    pub algorithm: KeyAlgorithm,
}

/// The admin socket.
#[derive(Debug, Clone, Default)]
pub struct AdminSettings {
    /// Where the Unix socket is created; `None`: no admin socket.
    pub socket: Option<PathBuf>,
    /// Peer uids allowed to use it; `None`: the relay's own uid and root.
    pub allowed_uids: Option<Vec<u32>>,
    /// With a group, the socket is mode 0660 and owned by that group (its members still need
    /// their uid in `allowed_uids`).
    pub group: Option<String>,
    /// `[[admin.user]]`: who may sign in to the console (served on `[api] listen`).
    pub users: Vec<crate::settings::console::ConsoleUser>,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from.
    pub path: PathBuf,
    pub smtp: SmtpSettings,
    pub spool_dir: PathBuf,
    /// Empty: use the system resolver.
    pub nameservers: Vec<SocketAddr>,
    /// `[dns] ptr_recheck`: how often the reverse DNS of each dedicated IP is checked again.
    pub ptr_recheck: Duration,
    /// `[dkim]`: where keys are kept and what Easy DKIM generates.
    pub dkim: DkimSettings,
    /// `[bounce]`: the return-path domain, if bounces are caught.
    pub bounce: Option<BounceSettings>,
    /// `[feedback]`: the feedback-loop address and forwarding.
    pub feedback: FeedbackSettings,
    /// `[api]`: the SESv2 HTTP API, if it is served.
    pub api: Option<crate::settings::api::ApiSettings>,
    pub queue: QueueSettings,
    pub outbound: OutboundSettings,
    /// The JSON-lines event log, if configured.
    pub events_path: Option<PathBuf>,
    pub admin: AdminSettings,
    /// `[metrics] listen`: Prometheus text on TCP as well as on the admin socket.
    pub metrics_listen: Option<SocketAddr>,
    pub warmup: WarmupSettings,
    /// `[health]`: suspensions of source IPs.
    pub health: HealthSettings,
    /// `[[shaping]]`: limits per (source IP, site).
    pub shaping: Vec<ShapingRule>,
    pub routes: Vec<Route>,
    pub registry: Registry,
    /// `[cluster]`: this relay is a node of a fleet whose model lives in Redis.
    pub cluster: Option<crate::settings::cluster::ClusterSettings>,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        writeln!(
            f,
            "{count} error{} in the configuration:",
            if count == 1 { "" } else { "s" }
        )?;
        for error in &self.0 {
            writeln!(f, "  {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and checks a config file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigErrors(vec![ConfigError {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read the file: {error}"),
        }])
    })?;
    parse(path, &text)
}

/// Checks config text as if it had been read from `path` (used for relative paths and messages).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    validate::validate(path, text)
}

/// The warning for a host name without a dot, `None` for a qualified one: it is the EHLO name
/// of every IP without `ehlo_hostname` or a forward-confirmed PTR, and many receivers refuse a
/// name that is not fully qualified.
pub fn unqualified_hostname(hostname: &str) -> Option<String> {
    (!hostname.contains('.')).then(|| {
        format!(
            "[smtp] hostname {hostname:?} is not a fully qualified domain name; receivers may \
             refuse it in EHLO: set it (or each [[ip]] ehlo_hostname) to the name your IPs' PTR \
             records give"
        )
    })
}

impl Config {
    /// Where bounces and reports come back, and what is suppressed.
    fn feedback_summary(&self) -> String {
        let reasons = self.registry.account_suppression().names();
        let mut out = format!(
            "suppression list: {}\n",
            if reasons.is_empty() {
                "off".to_string()
            } else {
                reasons.join(", ")
            }
        );
        if let Some(bounce) = &self.bounce {
            out.push_str(&format!(
                "return paths: b-<token>@{} (point its MX here)\n",
                bounce.domain
            ));
        }
        if let Some(address) = &self.feedback.address {
            out.push_str(&format!("feedback loop address: {address}\n"));
        }
        out
    }

    /// A human summary: pools with their IPs, configuration sets with their pools.
    pub fn summary(&self) -> String {
        use crate::registry::{DEFAULT_POOL, PoolMembers, SHARED_POOL};
        let mut out = String::new();
        let listen: Vec<String> = self.smtp.listen.iter().map(|a| a.to_string()).collect();
        out.push_str(&format!(
            "SMTP: {} as {}; max {} bytes, {} recipients\n",
            listen.join(", "),
            self.smtp.hostname,
            self.smtp.max_message_bytes,
            self.smtp.max_recipients
        ));
        if let Some(warning) = unqualified_hostname(&self.smtp.hostname) {
            out.push_str(&format!("warning: {warning}\n"));
        }
        out.push_str(&format!("spool: {}\n", self.spool_dir.display()));
        out.push_str(&self.feedback_summary());
        out.push_str("pools:\n");
        let mut pools: Vec<&str> = self.registry.pool_names().collect();
        pools.push(DEFAULT_POOL);
        pools.push(SHARED_POOL);
        for pool in pools {
            let members = match self.registry.pool_members(pool) {
                PoolMembers::HostDefault => "the host's default address".to_string(),
                PoolMembers::Addresses(list) if list.is_empty() => "(no IPs)".to_string(),
                PoolMembers::Addresses(list) => list
                    .iter()
                    .map(|s| format!("{} (weight {})", s.address, s.weight))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            out.push_str(&format!("  {pool}: {members}\n"));
        }
        out.push_str("configuration sets:\n");
        for set in self.registry.configuration_sets() {
            let pool = set.sending_pool.as_deref().unwrap_or(DEFAULT_POOL);
            out.push_str(&format!("  {} -> {pool}\n", set.name));
        }
        if !self.registry.identities().is_empty() {
            out.push_str("identities (publish each DKIM record as TXT):\n");
            for identity in self.registry.identities().iter() {
                let set = identity.configuration_set.as_deref().unwrap_or("-");
                match (&identity.dkim, identity.dns_record_name()) {
                    (Some(dkim), Some(name)) => out.push_str(&format!(
                        "  {} (default set {set}{})\n    {name} TXT \"{}\"\n",
                        identity.name,
                        if identity.signing_enabled {
                            ""
                        } else {
                            ", signing off"
                        },
                        dkim.key.dns_record_value()
                    )),
                    _ => out.push_str(&format!(
                        "  {} (default set {set}; signed by its domain's identity)\n",
                        identity.name
                    )),
                }
            }
        }
        if !self.routes.is_empty() {
            out.push_str("routes:\n");
            for route in &self.routes {
                out.push_str(&format!("  {} -> {}\n", route.domain, route.next_hop));
            }
        }
        out
    }
}
