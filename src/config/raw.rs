//! The TOML file exactly as written: serde structs with spans, so every later check can point at
//! the line it is about. Values that need parsing (addresses, durations, names) stay strings here
//! and are checked in `validate`, which reports every problem at once instead of the first.

use serde::Deserialize;
use toml::Spanned;

pub type Text = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub smtp: RawSmtp,
    #[serde(default)]
    pub spool: RawSpool,
    #[serde(default)]
    pub dns: RawDns,
    #[serde(default)]
    pub queue: RawQueue,
    #[serde(default)]
    pub outbound: RawOutbound,
    #[serde(default)]
    pub events: RawEvents,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub warmup: RawWarmup,
    #[serde(default)]
    pub health: RawHealth,
    #[serde(default)]
    pub shaping: Vec<Spanned<RawShaping>>,
    #[serde(default)]
    pub route: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    pub pool: Vec<Spanned<RawPool>>,
    #[serde(default)]
    pub ip: Vec<Spanned<RawIp>>,
    #[serde(default)]
    pub shared_pool: RawSharedPool,
    #[serde(default)]
    pub configuration_set: Vec<Spanned<RawConfigurationSet>>,
    #[serde(default)]
    pub dkim: RawDkim,
    #[serde(default)]
    pub identity: Vec<Spanned<RawIdentity>>,
    pub bounce: Option<RawBounce>,
    #[serde(default)]
    pub feedback: RawFeedback,
    #[serde(default)]
    pub suppression: RawSuppression,
    pub api: Option<RawApi>,
    #[serde(default)]
    pub account: RawAccount,
    pub cluster: Option<RawCluster>,
    #[serde(default)]
    pub log: RawLog,
}

/// `[log]`: how log lines are written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<Text>,
}

/// `[cluster]`: this node in a fleet sharing its model through Redis.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub redis: Text,
    pub node: Text,
    pub forward_listen: Text,
    pub secret_file: Text,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccount {
    pub sending_enabled: Option<bool>,
    pub max_send_rate: Option<Spanned<u64>>,
    pub max_24_hour_send: Option<Spanned<u64>>,
}

/// SES resource tags, written `tags = { team = "growth" }`.
pub type RawTags = Option<std::collections::BTreeMap<String, String>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    pub listen: Vec<Text>,
    pub region: Option<Text>,
    pub tls: Option<Spanned<bool>>,
    #[serde(default)]
    pub key: Vec<Spanned<RawApiKey>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    pub access_key_id: Text,
    pub secret_access_key_file: Option<Text>,
    pub secret_access_key: Option<Text>,
    pub allow: Vec<Text>,
    pub allowed_configuration_sets: Option<Vec<Text>>,
    pub allowed_from_domains: Option<Vec<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBounce {
    pub domain: Text,
    pub secret_file: Option<Text>,
    pub token_lifetime: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeedback {
    pub address: Option<Text>,
    pub forward: Option<bool>,
    pub keep_unmatched: Option<Text>,
    pub max_unmatched: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSuppression {
    pub reasons: Option<Vec<Text>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDkim {
    pub key_dir: Option<Text>,
    pub algorithm: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    pub name: Text,
    pub dkim_selector: Option<Text>,
    pub dkim_key: Option<Text>,
    pub dkim_signing: Option<bool>,
    pub configuration_set: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    pub listen: Vec<Text>,
    pub hostname: Option<Text>,
    pub max_message_bytes: Option<Spanned<u64>>,
    pub max_recipients: Option<Spanned<u64>>,
    pub relay_networks: Option<Vec<Text>>,
    pub max_connections: Option<Spanned<u64>>,
    pub max_connections_per_ip: Option<Spanned<u64>>,
    pub auth_concurrency: Option<Spanned<u64>>,
    pub auth_failures_per_ip: Option<Spanned<u64>>,
    pub bare_newline: Option<Text>,
    pub command_timeout: Option<Text>,
    pub data_timeout: Option<Text>,
    pub tls_listen: Option<Vec<Text>>,
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub user: Vec<Spanned<RawUser>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub username: Text,
    pub password_hash: Text,
    pub allowed_configuration_sets: Option<Vec<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Text,
    pub key: Text,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpool {
    pub dir: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    #[serde(default)]
    pub nameservers: Vec<Text>,
    pub ptr_recheck: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    pub retry_interval: Option<Text>,
    pub max_retry_interval: Option<Text>,
    pub max_age: Option<Text>,
    pub max_concurrent_deliveries: Option<Spanned<u64>>,
    pub connection_idle_timeout: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWarmup {
    pub enabled: Option<bool>,
    pub schedule: Option<Vec<Spanned<u64>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub suspension: Option<Text>,
    pub max_suspension: Option<Text>,
    pub bind_recheck: Option<Text>,
    pub rule: Option<Vec<Spanned<RawReplyRule>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplyRule {
    pub name: Text,
    pub contains: Vec<Text>,
    pub codes: Option<Vec<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShaping {
    pub site: Text,
    pub max_connections: Option<Spanned<u64>>,
    pub max_messages_per_connection: Option<Spanned<u64>>,
    pub max_message_rate: Option<Text>,
    pub max_connection_rate: Option<Text>,
    pub site_max_message_rate: Option<Text>,
    pub site_max_connections: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub socket: Option<Text>,
    pub allowed_uids: Option<Vec<u32>>,
    pub group: Option<Text>,
    /// `[[admin.user]]`: who may sign in to the console.
    #[serde(default)]
    pub user: Vec<Spanned<RawAdminUser>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdminUser {
    pub username: Text,
    pub password_hash: Text,
    pub role: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvents {
    pub path: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutbound {
    pub mx_port: Option<Spanned<u64>>,
    pub ca_file: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub domain: Text,
    pub next_hop: Text,
    pub tls: Option<Text>,
    pub tls_verify: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub name: Text,
    pub overflow_pool: Option<Text>,
    #[serde(default)]
    pub tags: RawTags,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIp {
    pub address: Text,
    pub pool: Option<Text>,
    pub ehlo_hostname: Option<Text>,
    pub weight: Option<Spanned<u64>>,
    pub warmup_started: Option<Text>,
    pub warmup_percentage: Option<Spanned<u8>>,
    pub suspended: Option<bool>,
    /// The fleet node that binds this address (in the fleet model; absent on a single relay).
    pub node: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSharedPool {
    #[serde(default)]
    pub ips: Vec<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfigurationSet {
    pub name: Text,
    pub sending_pool: Option<Text>,
    pub max_delivery_seconds: Option<Spanned<u64>>,
    pub tls_policy: Option<Text>,
    pub suppressed_reasons: Option<Vec<Text>>,
    pub sending_enabled: Option<bool>,
    #[serde(default)]
    pub tags: RawTags,
}
