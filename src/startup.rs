//! What the relay does once at start before its tasks run: process settings (allocator, open
//! files, TLS provider), the dedicated IPs' bind check, and joining the fleet with its listener
//! for handed-over mail. Called by `server`.

use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::fleet::Fleet;
use crate::inbound::InboundContext;
use crate::outbound::connect::source_available;
use crate::outbound::health::Health;
use crate::registry::{self, DEFAULT_POOL, Registry};
use crate::spool::Spool;

/// Installs ring as the process-wide rustls provider (once; later calls are harmless).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Large allocations (a password check's ~19 MiB, a big message read into memory) get their own
/// mapping and go back to the system when freed. glibc otherwise raises its mmap threshold after
/// the first such free, and later ones are carved from per-thread heaps that keep the memory:
/// with password checks moving between blocking threads that grew the relay by hundreds of MiB.
fn return_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; any value is valid for M_MMAP_THRESHOLD.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}

/// Raises the soft limit on open files to the hard limit (every connection is a descriptor) and
/// warns when even that is below what the configured limits can use: `need` descriptors.
fn raise_open_file_limit(need: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by reference.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !got {
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        }
    }
    if limit.rlim_cur < need {
        tracing::warn!(
            open_files = limit.rlim_cur,
            need,
            "the open-file limit is below what smtp.max_connections and queue.max_concurrent_deliveries can use; raise it (LimitNOFILE, ulimit -n)"
        );
    }
}

/// The IPs' health as last saved, with dedicated IPs that are not assigned to this host
/// suspended at once (the periodic re-check puts them back when they can be bound), so the API
/// shows them from the start; each one is warned about.
pub(crate) fn check_sources(config: &Config, spool: &Spool) -> Arc<Health> {
    let health = Arc::new(Health::load(
        config.health.clone(),
        Some(spool.root().join("health.json")),
    ));
    let registry = &config.registry;
    for ip in registry.local_ips() {
        if let Err(error) = source_available(ip.address) {
            health.bind_failed(ip.address, &error.to_string());
            tracing::error!(
                source_ip = %ip.address,
                pool = ip.pool.as_deref().unwrap_or(DEFAULT_POOL),
                %error,
                "dedicated IP cannot be bound on this host: suspended until it can"
            );
        }
    }
    for &address in registry.shared_pool() {
        if let Err(error) = source_available(address) {
            health.bind_failed(address, &error.to_string());
            tracing::error!(source_ip = %address, pool = registry::SHARED_POOL, %error, "shared-pool IP cannot be bound on this host: suspended until it can");
        }
    }
    health
}

/// Process-wide settings before anything starts: TLS provider, allocator, open-file limit.
pub(crate) fn prepare_process(config: &Config) {
    install_crypto_provider();
    if let Some(warning) = crate::config::unqualified_hostname(&config.smtp.hostname) {
        tracing::warn!("{warning}");
    }
    return_large_allocations();
    // Inbound sessions, outbound connections (one per delivery, plus idle ones kept for reuse),
    // the admin and metrics servers, and files.
    let smtp = config.smtp.max_connections as u64;
    let deliveries = config.queue.max_concurrent_deliveries as u64;
    raise_open_file_limit(smtp + 2 * deliveries + 512);
}

/// What the fleet's tasks work on.
pub(crate) struct FleetParts<'a> {
    pub registry: &'a Arc<ArcSwap<Registry>>,
    pub ctx: &'a Arc<InboundContext>,
    pub health: &'a Arc<Health>,
    pub ledger: &'a crate::ledger::Ledger,
    pub warmup: &'a Arc<crate::outbound::warmup::WarmupLedger>,
}

impl<'a> FleetParts<'a> {
    pub fn new(
        registry: &'a Arc<ArcSwap<Registry>>,
        ctx: &'a Arc<InboundContext>,
        health: &'a Arc<Health>,
        ledger: &'a crate::ledger::Ledger,
        warmup: &'a Arc<crate::outbound::warmup::WarmupLedger>,
    ) -> Self {
        Self {
            registry,
            ctx,
            health,
            ledger,
            warmup,
        }
    }
}

/// Every second, this node's recipients go into the fleet's 24-hour count (when no quota limit
/// needs a check per message).
async fn flush_quota_counts(ctx: Arc<InboundContext>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => ctx.quota.flush_to_fleet().await,
        }
    }
    ctx.quota.flush_to_fleet().await;
}

/// Every second: this node's warm-up counts into the fleet's (each only grows), and the fleet's
/// back into this node's where they are higher (an IP taken over from another node, or a spool
/// lost). The cap itself is exact without Redis: only an IP's node sends from it.
async fn share_warmup_counts(
    fleet: Arc<Fleet>,
    registry: Arc<ArcSwap<Registry>>,
    warmup: Arc<crate::outbound::warmup::WarmupLedger>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let today = crate::outbound::warmup::today();
        let known = warmup.today_counts(today);
        let counts: Vec<_> = registry
            .load()
            .local_ips()
            .filter(|ip| ip.warmup_started.is_some())
            .map(|ip| {
                let used = known
                    .iter()
                    .find(|(a, _)| *a == ip.address)
                    .map_or(0, |(_, n)| *n);
                (ip.address, used)
            })
            .collect();
        if let Ok(fleet_counts) =
            crate::fleet::limits::share_warmup_counts(fleet.store(), today, &counts).await
        {
            warmup.raise_to(today, &fleet_counts);
        }
    }
}

/// Mail waiting for a pool whose IPs are on a node that was down goes as soon as the node is
/// back: its IPs are reported back in rotation, as a local IP's would be.
async fn retry_when_peers_return(
    fleet: Arc<Fleet>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    loop {
        let back = tokio::select! {
            _ = shutdown.cancelled() => return,
            back = fleet.peers_back() => back,
        };
        for node in back {
            tracing::info!(node = %node.name, "fleet node up");
            for ip in node.ips.iter().filter_map(|ip| ip.parse().ok()) {
                health.back_in_rotation(ip);
            }
        }
    }
}

/// With `[cluster]`: joins the fleet, and the relay runs on the fleet's model.
pub(crate) async fn join_fleet(config: Config) -> anyhow::Result<(Option<Arc<Fleet>>, Config)> {
    if config.cluster.is_none() {
        return Ok((None, config));
    }
    let (fleet, effective) = Fleet::join(&config).await?;
    Ok((Some(fleet), effective))
}

/// The fleet's upkeep (model, heartbeat) and the listener other nodes hand mail over to.
pub(crate) async fn spawn_fleet(
    tasks: &TaskTracker,
    sessions: &TaskTracker,
    fleet: Option<&Arc<Fleet>>,
    parts: FleetParts<'_>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let Some(fleet) = fleet else { return Ok(()) };
    let FleetParts {
        registry,
        ctx,
        health,
        ledger,
        warmup,
    } = parts;
    tasks.spawn(crate::fleet::templates::run(
        fleet.clone(),
        ctx.spool.root().join("templates"),
        shutdown.clone(),
    ));
    tasks.spawn(crate::fleet::suppression::run(
        fleet.clone(),
        ledger.clone(),
        shutdown.clone(),
    ));
    ctx.quota.join_fleet(fleet.clone());
    let reporting = health.clone();
    fleet.report_health_with(Box::new(move |address| {
        serde_json::to_value(reporting.report(address)).unwrap_or_default()
    }));
    let address = fleet.settings.forward_listen;
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on [cluster] forward_listen {address}"))?;
    let secret: Arc<[u8]> = Arc::from(fleet.secret());
    tasks.spawn(crate::inbound::handoff::serve_handoffs(
        listener,
        ctx.clone(),
        secret,
        sessions.clone(),
    ));
    tasks.spawn(fleet.clone().run(registry.clone(), shutdown.clone()));
    tasks.spawn(retry_when_peers_return(
        fleet.clone(),
        health.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(flush_quota_counts(ctx.clone(), shutdown.clone()));
    tasks.spawn(share_warmup_counts(
        fleet.clone(),
        registry.clone(),
        warmup.clone(),
        shutdown.clone(),
    ));
    Ok(())
}
