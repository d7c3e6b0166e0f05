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

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::ClientConfig;

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
    /// Source addresses whose bind failure has been logged, so the log says it once, clearly.
    reported_unavailable: Mutex<HashSet<IpAddr>>,
}

impl Outbound {
    pub fn new(
        registry: Arc<ArcSwap<Registry>>,
        resolver: NextHopResolver,
        cache: ConnectionCache,
        tls: Arc<ClientConfig>,
        verifying_tls: Arc<ClientConfig>,
        hostname: String,
        spool: Spool,
    ) -> Self {
        Self {
            registry,
            resolver,
            selector: SourceSelector::default(),
            cache,
            tls,
            verifying_tls,
            hostname,
            spool,
            timeouts: Timeouts::default(),
            reported_unavailable: Mutex::new(HashSet::new()),
        }
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
