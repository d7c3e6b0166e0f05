//! The outbound side: for each queued message, find the next hop of every recipient domain,
//! choose a source IP of the message's pool, connect from it and deliver.
//!
//! The one rule above all: a message leaves only from an address of its pool. An address that is
//! not on the host, or a pool with no usable address, defers the message; nothing ever falls back
//! to another pool or to the host's default address (except `ses-shared-pool` configured empty,
//! which *is* the host's default address).

pub mod cache;
pub mod client;
pub mod connect;
mod deliver;
pub mod next_hop;
pub mod route;
pub mod select;
pub mod tls;
pub mod warmup;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::ClientConfig;

use crate::config::Config;
use crate::registry::Registry;
use crate::spool::Spool;
use cache::ConnectionCache;
use client::Timeouts;
use next_hop::NextHopResolver;
use select::SourceSelector;

/// Everything deliveries share.
pub struct Outbound {
    pub registry: Arc<ArcSwap<Registry>>,
    pub resolver: NextHopResolver,
    pub selector: SourceSelector,
    pub cache: ConnectionCache,
    pub tls: Arc<ClientConfig>,
    /// For routes with `tls_verify`.
    pub verifying_tls: Arc<ClientConfig>,
    /// Default EHLO name (`smtp.hostname`).
    pub hostname: String,
    pub spool: Spool,
    pub timeouts: Timeouts,
    pub warmup_ledger: warmup::WarmupLedger,
    /// Source addresses whose bind failure has been logged, so the log says it once, clearly.
    reported_unavailable: Mutex<HashSet<IpAddr>>,
}

impl Outbound {
    /// Everything outbound delivery needs, from the config: next hops, TLS (opportunistic and,
    /// for `tls_verify` routes, verifying), connection reuse and warm-up.
    pub fn new(
        config: &Config,
        registry: Arc<ArcSwap<Registry>>,
        spool: Spool,
    ) -> Result<Self, String> {
        let tls =
            tls::opportunistic_client_config().map_err(|e| format!("cannot set up TLS: {e}"))?;
        let verifying_tls = tls::verifying_client_config(config.outbound.ca_file.as_deref())
            .map_err(|e| format!("outbound.ca_file: {e}"))?;
        let warmup_ledger = warmup::WarmupLedger::load(Some(spool.root().join("warmup.json")));
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
            reported_unavailable: Mutex::new(HashSet::new()),
        })
    }

    /// Logs an unusable source address once (until it works again).
    fn report_unavailable(&self, address: IpAddr, pool: &str, error: &connect::ConnectError) {
        let mut reported = self
            .reported_unavailable
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if reported.insert(address) {
            tracing::error!(
                source_ip = %address,
                pool,
                %error,
                "dedicated IP cannot be used: it is skipped, and mail waits if no other IP of the pool works"
            );
        }
    }

    fn report_available(&self, address: IpAddr) {
        let mut reported = self
            .reported_unavailable
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if reported.remove(&address) {
            tracing::info!(source_ip = %address, "dedicated IP is usable again");
        }
    }

    /// Closes idle connections that have expired (all of them when shutting down).
    pub async fn close_idle(&self, all: bool) {
        for client in self.cache.expired(all) {
            client.quit().await;
        }
    }
}
