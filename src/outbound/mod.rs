//! The outbound side: for each queued message, find the next hop of every recipient domain,
//! choose a source IP of the message's pool, connect from it and deliver.
//!
//! The one rule above all: a message leaves only from an address of its pool. An address that is
//! not on the host, or a pool with no usable address, defers the message; nothing ever falls back
//! to another pool or to the host's default address (except `ses-shared-pool` configured empty,
//! which *is* the host's default address).

pub mod cache;
pub mod classify;
pub mod client;
pub mod connect;
mod deliver;
pub mod handover;
pub mod health;
pub mod next_hop;
pub mod report;
pub mod response;
pub mod reverse_dns;
pub mod select;
pub mod shaping;
pub mod site_connection;
pub mod site_limits;
pub mod tls;
mod transaction;
pub mod warmup;

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ClientConfig;

use crate::config::Config;
use crate::registry::Registry;
use crate::spool::Spool;
use cache::ConnectionCache;
use client::Timeouts;
use next_hop::NextHopResolver;
use select::SourceSelector;

/// Everything deliveries share. The queue sees only its methods: [`Outbound::deliver`], and the
/// narrow handles [`Outbound::pools_back_in_rotation`], [`Outbound::save_state`] and
/// [`Outbound::close_idle`].
pub struct Outbound {
    registry: Arc<ArcSwap<Registry>>,
    resolver: NextHopResolver,
    selector: SourceSelector,
    cache: ConnectionCache,
    tls: Arc<ClientConfig>,
    /// For routes with `tls_verify`.
    verifying_tls: Arc<ClientConfig>,
    /// Default EHLO name (`smtp.hostname`).
    hostname: String,
    spool: Spool,
    timeouts: Timeouts,
    warmup_ledger: Arc<warmup::WarmupLedger>,
    /// Suspended IPs (unbindable, or refused by a site); shared with the admin API.
    health: Arc<health::Health>,
    /// Limits per (source IP, site).
    shaper: Arc<shaping::Shaper>,
    /// Limits per site across IPs (and fleet nodes).
    site_limits: site_limits::SiteLimits,
    /// The relay's own SMTP listeners, once bound: a next hop among them would be a loop.
    own_listeners: std::sync::OnceLock<Vec<std::net::SocketAddr>>,
    /// Whether an address is one of this host's, as found by binding to it (remembered: the
    /// question is asked for every next hop when a listener is on the unspecified address).
    host_addresses: parking_lot::Mutex<std::collections::HashMap<IpAddr, bool>>,
    /// `[bounce] domain`: each recipient gets a return path that names it (set once at start).
    return_path: std::sync::OnceLock<Arc<crate::return_path::ReturnPath>>,
}

/// Source IPs back in rotation, and the pools whose waiting mail can go now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackInRotation {
    pub addresses: Vec<IpAddr>,
    pub pools: Vec<String>,
}

impl Outbound {
    /// Today's sends per warming IP (the console shows how much of each cap is used).
    pub fn warmup_ledger(&self) -> Arc<warmup::WarmupLedger> {
        self.warmup_ledger.clone()
    }

    /// The shaping limits per (source IP, site); a reload gives them new rules.
    pub fn shaper(&self) -> Arc<shaping::Shaper> {
        self.shaper.clone()
    }

    /// Everything outbound delivery needs, from the config: next hops, TLS (opportunistic and,
    /// for `tls_verify` routes, verifying), connection reuse and warm-up.
    pub fn new(
        config: &Config,
        registry: Arc<ArcSwap<Registry>>,
        spool: Spool,
        health: Arc<health::Health>,
    ) -> Result<Self, String> {
        let tls =
            tls::opportunistic_client_config().map_err(|e| format!("cannot set up TLS: {e}"))?;
        let verifying_tls = tls::verifying_client_config(config.outbound.ca_file.as_deref())
            .map_err(|e| format!("outbound.ca_file: {e}"))?;
        let warmup_ledger = Arc::new(warmup::WarmupLedger::load(Some(
            spool.root().join("warmup.json"),
        )));
        Ok(Self {
            registry,
            resolver: NextHopResolver::new(
                config.routes.clone(),
                &config.nameservers,
                config.outbound.mx_port,
            ),
            selector: SourceSelector::default(),
            cache: ConnectionCache::new(config.queue.connection_idle_timeout),
            tls,
            verifying_tls,
            hostname: config.smtp.hostname.clone(),
            spool,
            timeouts: Timeouts::default(),
            warmup_ledger,
            health,
            shaper: Arc::new(shaping::Shaper::new(config.shaping.clone())),
            site_limits: site_limits::SiteLimits::default(),
            own_listeners: std::sync::OnceLock::new(),
            host_addresses: parking_lot::Mutex::new(std::collections::HashMap::new()),
            return_path: std::sync::OnceLock::new(),
        })
    }

    /// Suspends an address that cannot be bound, for every site, and says so once.
    fn report_unavailable(&self, address: IpAddr, pool: &str, error: &connect::ConnectError) {
        if self.health.bind_failed(address, &error.to_string()) {
            tracing::error!(
                source_ip = %address,
                pool,
                %error,
                recheck_seconds = self.health.settings().bind_recheck.as_secs(),
                "dedicated IP cannot be bound: suspended for every destination until it can; mail waits if no other IP of the pool works"
            );
        }
    }

    /// Tries every unbindable address again; the ones that bind now are back in rotation.
    fn recheck_unbindable(&self) {
        for address in self.health.unbindable_addresses() {
            if connect::source_available(address).is_ok() && self.health.bind_works(address) {
                tracing::info!(source_ip = %address, "dedicated IP can be bound again: back in rotation");
            }
        }
    }

    /// Background upkeep until `shutdown`: re-checks unbindable addresses every
    /// `health.bind_recheck`, forgets old suspensions and idle shaping state.
    pub async fn upkeep(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let mut ticker = tokio::time::interval(self.health.settings().bind_recheck);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || this.recheck_unbindable()).await;
            self.health.forget_old(std::time::Instant::now());
            self.shaper.forget_idle();
        }
    }

    /// Waits until source IPs come back into rotation (bindable again, or resumed by an
    /// operator).
    pub async fn pools_back_in_rotation(&self) -> BackInRotation {
        self.health.returned_signal.notified().await;
        let addresses = self.health.take_returned();
        let registry = self.registry.load();
        let pools = addresses
            .iter()
            .flat_map(|&address| registry.pools_of(address))
            .collect();
        BackInRotation { addresses, pools }
    }

    /// What start-up adds once its parts exist: the fleet (site limits are then kept
    /// fleet-wide) and the bounce domain's return paths.
    pub fn set_shared_parts(
        &self,
        fleet: Option<Arc<crate::fleet::Fleet>>,
        return_path: Option<Arc<crate::return_path::ReturnPath>>,
    ) {
        if let Some(fleet) = fleet {
            self.site_limits.join(fleet);
        }
        if let Some(return_path) = return_path {
            self.set_return_path(return_path);
        }
    }

    /// The relay's own SMTP listener addresses (set once, after binding them).
    pub fn set_own_listeners(&self, listeners: Vec<std::net::SocketAddr>) {
        let _ = self.own_listeners.set(listeners);
    }

    /// Sends every relayed message with return paths at the bounce domain (once, at start).
    pub fn set_return_path(&self, return_path: Arc<crate::return_path::ReturnPath>) {
        let _ = self.return_path.set(return_path);
    }

    /// Whether `target` is one of the relay's own listeners (an unspecified listener address
    /// counts for every address of the host on its port).
    fn is_own_listener(&self, target: std::net::SocketAddr) -> bool {
        self.own_listeners.get().is_some_and(|own| {
            own.iter().any(|listener| {
                listener == &target
                    || (listener.ip().is_unspecified()
                        && listener.port() == target.port()
                        && self.is_host_address(target.ip()))
            })
        })
    }

    /// Whether `address` belongs to this host. Answers are remembered (at most 4096, then
    /// forgotten together), so a next hop costs a bind only the first time it is seen.
    fn is_host_address(&self, address: IpAddr) -> bool {
        if address.is_loopback() {
            return true;
        }
        if let Some(&known) = self.host_addresses.lock().get(&address) {
            return known;
        }
        let local = connect::source_available(address).is_ok();
        let mut known = self.host_addresses.lock();
        if known.len() >= 4096 {
            known.clear();
        }
        known.insert(address, local);
        local
    }

    /// Blocking: saves the warm-up counts and site suspensions that changed since the last save.
    pub fn save_state(&self) {
        if let Err(error) = self.warmup_ledger.save() {
            tracing::error!(%error, "cannot save the warm-up counts");
        }
        if let Err(error) = self.health.save() {
            tracing::error!(%error, "cannot save the site suspensions");
        }
    }

    /// Closes idle connections that have expired (all of them when shutting down).
    pub async fn close_idle(&self, all: bool) {
        for client in self.cache.expired(all) {
            client.quit().await;
        }
    }
}
