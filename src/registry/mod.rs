//! The registry: dedicated IPs, pools and configuration sets as plain data.
//!
//! This is the model SES exposes through its API, reproduced on our own machines:
//!
//! * a *dedicated IP* is a source address poolrelay may bind outbound connections to;
//! * a *pool* is a named set of dedicated IPs, and an IP belongs to at most one pool;
//! * `ses-default-dedicated-pool` is every dedicated IP that is in no named pool;
//! * `ses-shared-pool` is the `[shared_pool]` addresses (or the host's own default address when that
//!   list is empty), used only when a configuration set names it;
//! * a *configuration set* names the pool its mail leaves from.
//!
//! Nothing here does I/O. The config loader builds a [`Registry`] through the same checked
//! operations the admin API will use, so a rule (one pool per IP, reserved names, no dangling pool
//! reference) lives in exactly one place.

use crate::settings::suppression::SuppressedReasons;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The reserved name of the pool made of every dedicated IP without a named pool.
pub const DEFAULT_POOL: &str = "ses-default-dedicated-pool";
/// The reserved name of the shared pool (`[shared_pool]` in the config).
pub const SHARED_POOL: &str = "ses-shared-pool";

/// Why the registry refused a change. Small and matchable, so callers (config validation, the
/// admin API) can map each case to their own error shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("pool name {0:?} is invalid: use 1-64 characters from a-z, 0-9, '_' and '-'")]
    InvalidPoolName(String),
    #[error("pool name {0:?} is reserved")]
    ReservedPoolName(String),
    #[error("pool {0:?} is defined twice")]
    DuplicatePool(String),
    #[error("pool {0:?} does not exist")]
    UnknownPool(String),
    #[error("IP {0} is listed twice (an IP belongs to at most one pool)")]
    DuplicateIp(IpAddr),
    #[error("IP {0} is both a dedicated IP and a shared-pool IP")]
    SharedAndDedicated(IpAddr),
    #[error("{0} cannot be a source address: {1}")]
    UnusableAddress(IpAddr, &'static str),
    #[error(
        "configuration set name {0:?} is invalid: use 1-64 characters from A-Z, a-z, 0-9, '_' and '-'"
    )]
    InvalidConfigurationSetName(String),
    #[error("configuration set {0:?} is defined twice")]
    DuplicateConfigurationSet(String),
    #[error("configuration set {0:?} does not exist")]
    UnknownConfigurationSet(String),
    #[error("max_delivery_seconds must be between 300 and 50400, not {0}")]
    InvalidMaxDeliverySeconds(u64),
}

/// An address as a source address: IPv4-mapped IPv6 addresses become the IPv4 address they
/// are (`::ffff:127.0.0.2` is 127.0.0.2, not a second IP); the unspecified address (the kernel
/// would pick any address of the host), multicast and broadcast addresses are refused.
pub fn source_address(address: IpAddr) -> Result<IpAddr, RegistryError> {
    let address = address.to_canonical();
    let refusal = match address {
        _ if address.is_unspecified() => {
            Some("it is the unspecified address (any address of the host)")
        }
        _ if address.is_multicast() => Some("it is a multicast address"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("it is the broadcast address"),
        _ => None,
    };
    match refusal {
        Some(reason) => Err(RegistryError::UnusableAddress(address, reason)),
        None => Ok(address),
    }
}

/// One source address poolrelay may send from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedicatedIp {
    pub address: IpAddr,
    /// `None` means the IP is in `ses-default-dedicated-pool`.
    pub pool: Option<String>,
    /// The name announced in EHLO from this address; `None` uses `smtp.hostname`.
    pub ehlo_hostname: Option<String>,
    /// Share of the pool's traffic; 0 takes the IP out of rotation without removing it.
    pub weight: u32,
    /// The day the IP entered service: while the warm-up schedule runs, it has a daily cap.
    pub warmup_started: Option<chrono::NaiveDate>,
    /// The `WarmupPercentage` last set through the API: reported as given while the schedule
    /// is still on the day it was set to (the day is derived from it, so 50 would read back 48).
    pub warmup_percentage: Option<u8>,
    /// Suspended by an operator: out of rotation for every destination until resumed.
    pub suspended: bool,
    /// In a fleet: the node that binds this address (`None`: this relay's own, as on a single
    /// relay).
    pub node: Option<String>,
}

/// SES `TlsPolicy` of a configuration set. `Require`: the set's mail is never delivered in
/// plaintext (it is deferred with 4.7.10 when the next hop offers no STARTTLS or the handshake
/// fails); `Optional`: STARTTLS when the next hop offers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    Optional,
    Require,
}

impl std::str::FromStr for TlsPolicy {
    type Err = ();
    fn from_str(text: &str) -> Result<Self, ()> {
        match text {
            "OPTIONAL" => Ok(Self::Optional),
            "REQUIRE" => Ok(Self::Require),
            _ => Err(()),
        }
    }
}

impl TlsPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Optional => "OPTIONAL",
            Self::Require => "REQUIRE",
        }
    }
}

/// Which pause stops a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendingPaused {
    Account,
    ConfigurationSet,
}

/// A named sending policy: its pool and how long its mail may take to deliver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigurationSet {
    pub name: String,
    /// `None` means `ses-default-dedicated-pool`.
    pub sending_pool: Option<String>,
    /// SES `MaxDeliverySeconds` (300-50400): overrides `queue.max_age` for this set's mail.
    pub max_delivery_seconds: Option<u64>,
    /// `None` means `OPTIONAL`.
    pub tls_policy: Option<TlsPolicy>,
    /// SES `SuppressionOptions`: overrides the account's reasons for this set's mail.
    pub suppressed_reasons: Option<SuppressedReasons>,
    /// SES `SendingOptions {SendingEnabled: false}`: new mail is refused, queued mail waits.
    pub sending_paused: bool,
    /// SES resource tags (TagResource).
    pub tags: crate::settings::account::Tags,
}

/// A source the outbound side may bind to, as handed to the IP selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub address: IpAddr,
    pub ehlo_hostname: Option<String>,
    pub weight: u32,
    pub warmup_started: Option<chrono::NaiveDate>,
}

/// The addresses a pool's mail may leave from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolMembers {
    /// Bind to one of these (possibly none: then mail for the pool waits).
    Addresses(Vec<Source>),
    /// `ses-shared-pool` with an empty address list: the kernel picks the host's default address.
    HostDefault,
}

/// Pools, dedicated IPs and configuration sets. Cheap to clone; the running relay keeps one
/// snapshot behind an `ArcSwap` and replaces it whole on a change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    /// Named pools and their overflow pool.
    pools: BTreeMap<String, Option<String>>,
    ips: Vec<DedicatedIp>,
    configuration_sets: BTreeMap<String, ConfigurationSet>,
    shared_pool: Vec<IpAddr>,
    /// Warm-up settings live here so a config change or reload swaps them with the IPs.
    warmup: crate::settings::WarmupSettings,
    /// Email identities (DKIM keys, default configuration sets), swapped with the rest.
    identities: crate::identity::Identities,
    /// SES account-level `SuppressedReasons` (`[suppression] reasons`).
    account_suppression: SuppressedReasons,
    /// `[account]`: sending enabled, quotas.
    account: crate::settings::account::AccountSettings,
    /// Tags of named pools (TagResource on a dedicated IP pool).
    pool_tags: BTreeMap<String, crate::settings::account::Tags>,
    /// In a fleet: this node's name. Only IPs of this node are sources here; the others are
    /// reached by forwarding the message to their node.
    local_node: Option<String>,
}

/// `^[a-z0-9_-]{1,64}$`, as SES (CloudFormation) defines pool names.
pub fn is_valid_pool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `^[A-Za-z0-9_-]{1,64}$`, as SES defines configuration set names.
pub fn is_valid_configuration_set_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_reserved_pool_name(name: &str) -> bool {
    name == DEFAULT_POOL || name == SHARED_POOL
}

impl Registry {
    /// Adds a named pool.
    pub fn add_pool(&mut self, name: &str) -> Result<(), RegistryError> {
        if is_reserved_pool_name(name) {
            return Err(RegistryError::ReservedPoolName(name.to_string()));
        }
        if !is_valid_pool_name(name) {
            return Err(RegistryError::InvalidPoolName(name.to_string()));
        }
        if self.pools.insert(name.to_string(), None).is_some() {
            return Err(RegistryError::DuplicatePool(name.to_string()));
        }
        Ok(())
    }

    /// Adds a dedicated IP. Its pool must exist already; `None` or `ses-default-dedicated-pool`
    /// puts it in the default pool.
    pub fn add_ip(&mut self, mut ip: DedicatedIp) -> Result<(), RegistryError> {
        ip.address = source_address(ip.address)?;
        if self.ips.iter().any(|known| known.address == ip.address) {
            return Err(RegistryError::DuplicateIp(ip.address));
        }
        if self.shared_pool.contains(&ip.address) {
            return Err(RegistryError::SharedAndDedicated(ip.address));
        }
        if ip.pool.as_deref() == Some(DEFAULT_POOL) {
            ip.pool = None;
        }
        if let Some(pool) = &ip.pool
            && !self.pools.contains_key(pool)
        {
            return Err(RegistryError::UnknownPool(pool.clone()));
        }
        self.ips.push(ip);
        Ok(())
    }

    /// Adds an address to `ses-shared-pool`.
    pub fn add_shared_ip(&mut self, address: IpAddr) -> Result<(), RegistryError> {
        let address = source_address(address)?;
        if self.shared_pool.contains(&address) {
            return Err(RegistryError::DuplicateIp(address));
        }
        if self.ips.iter().any(|known| known.address == address) {
            return Err(RegistryError::SharedAndDedicated(address));
        }
        self.shared_pool.push(address);
        Ok(())
    }

    /// Adds a configuration set; its sending pool must exist (or be one of the reserved names).
    pub fn add_configuration_set(&mut self, set: ConfigurationSet) -> Result<(), RegistryError> {
        if !is_valid_configuration_set_name(&set.name) {
            return Err(RegistryError::InvalidConfigurationSetName(set.name));
        }
        if let Some(seconds) = set.max_delivery_seconds
            && !(300..=50400).contains(&seconds)
        {
            return Err(RegistryError::InvalidMaxDeliverySeconds(seconds));
        }
        if let Some(pool) = &set.sending_pool
            && !self.pool_exists(pool)
        {
            return Err(RegistryError::UnknownPool(pool.clone()));
        }
        if self.configuration_sets.contains_key(&set.name) {
            return Err(RegistryError::DuplicateConfigurationSet(set.name));
        }
        self.configuration_sets.insert(set.name.clone(), set);
        Ok(())
    }

    /// Sets where a pool's mail goes when every IP of the pool is at its warm-up cap.
    pub fn set_overflow_pool(&mut self, pool: &str, overflow: &str) -> Result<(), RegistryError> {
        if !self.pool_exists(overflow) || overflow == pool {
            return Err(RegistryError::UnknownPool(overflow.to_string()));
        }
        match self.pools.get_mut(pool) {
            Some(slot) => {
                *slot = Some(overflow.to_string());
                Ok(())
            }
            None => Err(RegistryError::UnknownPool(pool.to_string())),
        }
    }

    /// The pool's overflow pool, if it has one.
    pub fn overflow_pool(&self, pool: &str) -> Option<&str> {
        self.pools.get(pool)?.as_deref()
    }

    pub fn warmup(&self) -> &crate::settings::WarmupSettings {
        &self.warmup
    }

    pub fn set_warmup(&mut self, warmup: crate::settings::WarmupSettings) {
        self.warmup = warmup;
    }

    /// True for a named pool and for both reserved pools.
    pub fn identities(&self) -> &crate::identity::Identities {
        &self.identities
    }

    pub fn set_identities(&mut self, identities: crate::identity::Identities) {
        self.identities = identities;
    }

    pub fn account(&self) -> crate::settings::account::AccountSettings {
        self.account
    }

    pub fn set_account(&mut self, account: crate::settings::account::AccountSettings) {
        self.account = account;
    }

    /// Why mail of `configuration_set` may not be sent now: the account or the set is paused.
    pub fn sending_paused(&self, configuration_set: Option<&str>) -> Option<SendingPaused> {
        if !self.account.sending_enabled {
            return Some(SendingPaused::Account);
        }
        let set = self.configuration_sets.get(configuration_set?)?;
        set.sending_paused
            .then_some(SendingPaused::ConfigurationSet)
    }

    pub fn pool_tags(&self, pool: &str) -> &[(String, String)] {
        self.pool_tags.get(pool).map_or(&[], Vec::as_slice)
    }

    pub fn set_pool_tags(&mut self, pool: &str, tags: crate::settings::account::Tags) {
        if self.pools.contains_key(pool) {
            self.pool_tags.insert(pool.to_string(), tags);
        }
    }

    pub fn account_suppression(&self) -> SuppressedReasons {
        self.account_suppression
    }

    pub fn set_account_suppression(&mut self, reasons: SuppressedReasons) {
        self.account_suppression = reasons;
    }

    /// The reasons that stop mail of `configuration_set`: its own, else the account's.
    pub fn suppressed_reasons_for(&self, configuration_set: Option<&str>) -> SuppressedReasons {
        configuration_set
            .and_then(|name| self.configuration_sets.get(name))
            .and_then(|set| set.suppressed_reasons)
            .unwrap_or(self.account_suppression)
    }

    pub fn pool_exists(&self, name: &str) -> bool {
        is_reserved_pool_name(name) || self.pools.contains_key(name)
    }

    /// The named pools (without the reserved ones), sorted.
    pub fn pool_names(&self) -> impl Iterator<Item = &str> {
        self.pools.keys().map(String::as_str)
    }

    /// Every dedicated IP, in the order they were added.
    pub fn ips(&self) -> &[DedicatedIp] {
        &self.ips
    }

    /// The `ses-shared-pool` addresses.
    pub fn shared_pool(&self) -> &[IpAddr] {
        &self.shared_pool
    }

    /// Every configuration set, sorted by name.
    pub fn configuration_sets(&self) -> impl Iterator<Item = &ConfigurationSet> {
        self.configuration_sets.values()
    }

    /// The pool a message's mail leaves from, given its `X-SES-CONFIGURATION-SET` value.
    ///
    /// No header, or a set without a sending pool, means `ses-default-dedicated-pool`.
    /// Configuration set names are matched exactly, as SES does.
    pub fn pool_for(&self, configuration_set: Option<&str>) -> Result<String, RegistryError> {
        let Some(name) = configuration_set else {
            return Ok(DEFAULT_POOL.to_string());
        };
        let set = self
            .configuration_sets
            .get(name)
            .ok_or_else(|| RegistryError::UnknownConfigurationSet(name.to_string()))?;
        Ok(set
            .sending_pool
            .clone()
            .unwrap_or_else(|| DEFAULT_POOL.to_string()))
    }

    /// One configuration set.
    pub fn configuration_set(&self, name: &str) -> Option<&ConfigurationSet> {
        self.configuration_sets.get(name)
    }

    /// The named pool exists (not counting the reserved names).
    pub fn has_named_pool(&self, name: &str) -> bool {
        self.pools.contains_key(name)
    }

    /// The configuration set's `max_delivery_seconds`, if it has one.
    pub fn max_delivery_seconds(&self, configuration_set: Option<&str>) -> Option<u64> {
        self.configuration_sets
            .get(configuration_set?)?
            .max_delivery_seconds
    }

    /// The pools whose mail may leave from `address` (its own pool, or `ses-shared-pool`).
    pub fn pools_of(&self, address: IpAddr) -> Vec<String> {
        let mut pools: Vec<String> = self
            .ips
            .iter()
            .filter(|ip| ip.address == address)
            .map(|ip| ip.pool.clone().unwrap_or_else(|| DEFAULT_POOL.to_string()))
            .collect();
        if self.shared_pool.contains(&address) {
            pools.push(SHARED_POOL.to_string());
        }
        pools
    }

    /// Makes this registry a fleet node's view: only IPs of `node` (or of no node) are its own.
    pub fn set_local_node(&mut self, node: Option<String>) {
        self.local_node = node;
    }

    pub fn local_node(&self) -> Option<&str> {
        self.local_node.as_deref()
    }

    /// The IP is bound by this relay (always, outside a fleet).
    pub fn is_local(&self, ip: &DedicatedIp) -> bool {
        ip.node.is_none() || ip.node == self.local_node
    }

    /// The dedicated IPs this relay binds itself.
    pub fn local_ips(&self) -> impl Iterator<Item = &DedicatedIp> {
        self.ips.iter().filter(|ip| self.is_local(ip))
    }

    /// Other fleet nodes with an IP of `pool` in rotation (not suspended, weight above 0),
    /// sorted and without repeats. Empty outside a fleet.
    pub fn remote_nodes_for(&self, pool: &str) -> Vec<String> {
        let wanted = (pool != DEFAULT_POOL).then_some(pool);
        let mut nodes: Vec<String> = self
            .ips
            .iter()
            .filter(|ip| !self.is_local(ip) && ip.pool.as_deref() == wanted)
            .filter(|ip| !ip.suspended && ip.weight > 0)
            .filter_map(|ip| ip.node.clone())
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// The addresses a pool's mail may leave from on this relay. An unknown pool has no
    /// members, so its mail waits rather than leaving from somewhere else. In a fleet, IPs
    /// of other nodes are not members here (their node sends from them).
    pub fn pool_members(&self, pool: &str) -> PoolMembers {
        if pool == SHARED_POOL {
            if self.shared_pool.is_empty() {
                return PoolMembers::HostDefault;
            }
            return PoolMembers::Addresses(
                self.shared_pool
                    .iter()
                    .map(|&address| Source {
                        address,
                        ehlo_hostname: None,
                        weight: 1,
                        warmup_started: None,
                    })
                    .collect(),
            );
        }
        let wanted = (pool != DEFAULT_POOL).then_some(pool);
        PoolMembers::Addresses(
            self.ips
                .iter()
                .filter(|ip| ip.pool.as_deref() == wanted && self.is_local(ip))
                .map(|ip| Source {
                    address: ip.address,
                    ehlo_hostname: ip.ehlo_hostname.clone(),
                    // A suspended IP stays in its pool but takes no traffic.
                    weight: if ip.suspended { 0 } else { ip.weight },
                    warmup_started: ip.warmup_started,
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests;
