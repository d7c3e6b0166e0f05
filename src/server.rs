//! Putting the relay together: spool recovery, listeners, the queue scheduler, and an orderly
//! shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{AdminState, bind_admin_socket};
use crate::config::Config;
use crate::events::EventLog;
use crate::feedback::setup::FeedbackParts;
use crate::identity::status::StatusBoard;
use crate::inbound::auth_limits::AuthLimits;
use crate::inbound::per_ip::PerIpConnections;
use crate::inbound::tls::InboundTls;
use crate::inbound::{InboundContext, serve_listener};
use crate::outbound::Outbound;
use crate::outbound::health::Health;
use crate::queue;
use crate::queue::QueueHandle;
use crate::queue::context::AttemptContext;
use crate::registry::Registry;
use crate::spool::{Envelope, Spool};

/// A running relay.
pub struct Relay {
    /// The SESv2 HTTP API's listeners (none without `[api]`).
    api_addrs: Vec<SocketAddr>,
    smtp_addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    queue: QueueHandle,
    admin: Arc<AdminState>,
    events: Arc<EventLog>,
    spool: Spool,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    sessions: TaskTracker,
}

pub use crate::startup::install_crypto_provider;

/// Everything the relay listens on, bound before any task starts (so a busy port or a bad
/// socket path refuses start-up cleanly).
struct Listeners {
    admin: Option<tokio::net::UnixListener>,
    metrics: Option<TcpListener>,
    /// SMTP listeners; `true` for implicit TLS.
    smtp: Vec<(TcpListener, bool)>,
    smtp_addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    /// The SESv2 HTTP API's listeners, its settings and (HTTPS) acceptor.
    api: Vec<TcpListener>,
    api_addrs: Vec<SocketAddr>,
    api_settings: Option<(
        crate::settings::api::ApiSettings,
        Vec<crate::settings::console::ConsoleUser>,
        Option<tokio_rustls::TlsAcceptor>,
    )>,
}

impl Listeners {
    /// Every SMTP listener address: a next hop among them would be the relay itself.
    fn own_addresses(&self) -> Vec<SocketAddr> {
        self.smtp_addrs
            .iter()
            .chain(&self.tls_addrs)
            .copied()
            .collect()
    }

    async fn bind(config: &Config) -> anyhow::Result<Self> {
        let admin = match &config.admin.socket {
            Some(path) => {
                let listener = bind_admin_socket(path, config.admin.group.as_deref())
                    .with_context(|| {
                        format!("cannot create the admin socket {}", path.display())
                    })?;
                tracing::info!(socket = %path.display(), "admin socket ready");
                Some(listener)
            }
            None => None,
        };
        let metrics = match config.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen for metrics on {addr}"))?,
            ),
            None => None,
        };
        let mut listeners = Self {
            admin,
            metrics,
            smtp: Vec::new(),
            smtp_addrs: Vec::new(),
            tls_addrs: Vec::new(),
            api: Vec::new(),
            api_addrs: Vec::new(),
            api_settings: None,
        };
        listeners.bind_api(config).await?;
        let plain = config.smtp.listen.iter().map(|a| (a, false));
        let implicit = config.smtp.tls_listen.iter().map(|a| (a, true));
        for (addr, implicit_tls) in plain.chain(implicit) {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            let local = listener.local_addr()?;
            match implicit_tls {
                true => listeners.tls_addrs.push(local),
                false => listeners.smtp_addrs.push(local),
            }
            listeners.smtp.push((listener, implicit_tls));
        }
        Ok(listeners)
    }
}

impl Listeners {
    /// `[api] listen`, with the `[smtp.tls]` certificate when `[api] tls` is on.
    async fn bind_api(&mut self, config: &Config) -> anyhow::Result<()> {
        let Some(api) = &config.api else {
            return Ok(());
        };
        for addr in &api.listen {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for the API on {addr}"))?;
            self.api_addrs.push(listener.local_addr()?);
            self.api.push(listener);
        }
        let acceptor = match (&config.smtp.tls, api.tls) {
            (Some(files), true) => Some(
                InboundTls::load(files)
                    .map_err(|e| anyhow::anyhow!(e))?
                    .acceptor(),
            ),
            _ => None,
        };
        self.api_settings = Some((api.clone(), config.admin.users.clone(), acceptor));
        Ok(())
    }
}

/// One accept loop per SMTP listener; all share the connection limit and the session tracker.
fn spawn_smtp(
    tasks: &TaskTracker,
    sessions: &TaskTracker,
    ctx: Arc<InboundContext>,
    listeners: Vec<(TcpListener, bool)>,
    max_connections: usize,
) {
    let connections = Arc::new(Semaphore::new(max_connections));
    for (listener, implicit_tls) in listeners {
        let (ctx, connections) = (ctx.clone(), connections.clone());
        tasks.spawn(serve_listener(
            listener,
            ctx,
            connections,
            sessions.clone(),
            implicit_tls,
        ));
    }
}

/// The admin socket and the metrics listener, when configured.
fn spawn_admin(
    tasks: &TaskTracker,
    listeners: &mut Listeners,
    (admin, inbound): (&Arc<AdminState>, &Arc<InboundContext>),
    shutdown: &CancellationToken,
) {
    if let Some(listener) = listeners.metrics.take() {
        let serve = crate::admin::serve_metrics(listener, admin.clone(), shutdown.clone());
        tasks.spawn(serve);
    }
    if let Some(listener) = listeners.admin.take() {
        tasks.spawn(crate::admin::serve(
            listener,
            admin.clone(),
            shutdown.clone(),
        ));
    }
    if let Some((settings, users, tls)) = listeners.api_settings.take() {
        tracing::info!(listen = ?listeners.api_addrs, tls = tls.is_some(), "SESv2 API listening");
        let ctx = Arc::new(crate::api::listener::ApiContext {
            admin: admin.clone(),
            inbound: inbound.clone(),
            console: crate::console::Console::new(users, tls.is_some()),
            settings,
            tls,
        });
        for listener in std::mem::take(&mut listeners.api) {
            tasks.spawn(crate::api::listener::serve(
                listener,
                ctx.clone(),
                shutdown.clone(),
            ));
        }
    }
}

/// Opens the spool and reads back what it holds (quarantining what cannot be read).
async fn recover_spool(config: &Config) -> anyhow::Result<(Spool, Vec<Envelope>)> {
    let spool = Spool::open(&config.spool_dir)
        .with_context(|| format!("cannot open the spool at {}", config.spool_dir.display()))?;
    let recovery_spool = spool.clone();
    let recovered = tokio::task::spawn_blocking(move || recovery_spool.recover())
        .await?
        .context("cannot read the spool")?;
    for (path, reason) in &recovered.quarantined {
        tracing::error!(path = %path.display(), reason, "spool file quarantined");
    }
    tracing::info!(messages = recovered.envelopes.len(), spool = %spool.root().display(), "spool recovered");
    Ok((spool, recovered.envelopes))
}

/// Until shutdown, every `every`: closes expired idle connections and saves the warm-up counts
/// and site suspensions that changed.
async fn reap_and_save(outbound: Arc<Outbound>, shutdown: CancellationToken, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                outbound.close_idle(false).await;
                let saving = outbound.clone();
                let _ = tokio::task::spawn_blocking(move || saving.save_state()).await;
            }
        }
    }
}

/// Starts the DKIM record and reverse-DNS checks (`dns_checks`), with a resolver that keeps
/// nothing in cache, so a record just published is seen at the next check.
fn spawn_dns_checks(
    tasks: &TaskTracker,
    config: &Config,
    registry: &Arc<ArcSwap<Registry>>,
    health: &Arc<Health>,
    dkim_status: &Arc<StatusBoard>,
    shutdown: &CancellationToken,
) {
    let resolver = match crate::dns::resolver(&config.nameservers, false) {
        Ok(resolver) => resolver,
        Err(error) => {
            tracing::warn!(%error, "no DNS resolver: DKIM records and reverse DNS are not checked");
            return;
        }
    };
    tasks.spawn(crate::dns_checks::dkim_records(
        dkim_status.clone(),
        resolver.clone(),
        registry.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(crate::dns_checks::reverse_dns(
        health.clone(),
        resolver,
        registry.clone(),
        config.smtp.hostname.clone(),
        config.ptr_recheck,
        shutdown.clone(),
    ));
}

/// The model, the event log, the spool and the queue: what most parts of the relay are given.
type Shared<'a> = (
    &'a Arc<ArcSwap<Registry>>,
    &'a Arc<EventLog>,
    &'a Spool,
    &'a QueueHandle,
);

/// What every inbound session (and the API's SendEmail) shares.
fn inbound_context(
    config: &Config,
    (registry, events, spool, queue): Shared<'_>,
    shutdown: &CancellationToken,
    tls: &Option<Arc<InboundTls>>,
    feedback: &FeedbackParts,
) -> Arc<InboundContext> {
    Arc::new(InboundContext {
        settings: config.smtp.clone(),
        registry: registry.clone(),
        spool: spool.clone(),
        queue: queue.clone(),
        shutdown: shutdown.clone(),
        max_age: config.queue.max_age,
        events: events.clone(),
        per_ip: PerIpConnections::new(config.smtp.max_connections_per_ip),
        auth_limits: AuthLimits::new(
            config.smtp.auth_concurrency,
            config.smtp.auth_failures_per_ip,
        ),
        tls: tls.clone(),
        feedback: feedback.intake.clone(),
        quota: Arc::default(),
    })
}

/// What delivery attempts share (without the fleet, set by the caller).
fn attempt_context(
    config: &Config,
    (outbound, spool, events, registry): (
        &Arc<Outbound>,
        &Spool,
        &Arc<EventLog>,
        &Arc<ArcSwap<Registry>>,
    ),
    feedback: &FeedbackParts,
) -> AttemptContext {
    AttemptContext {
        outbound: outbound.clone(),
        spool: spool.clone(),
        settings: config.queue.clone(),
        events: events.clone(),
        hostname: config.smtp.hostname.clone(),
        registry: registry.clone(),
        ledger: Some(feedback.ledger.clone()),
        sent: feedback.sent.clone(),
        fleet: None,
    }
}

/// The TLS identity of the SMTP listeners, when `[smtp.tls]` is configured.
fn load_inbound_tls(config: &Config) -> anyhow::Result<Option<Arc<InboundTls>>> {
    match &config.smtp.tls {
        Some(files) => Ok(Some(Arc::new(
            InboundTls::load(files).map_err(|e| anyhow::anyhow!(e))?,
        ))),
        None => Ok(None),
    }
}

use crate::startup::{FleetParts, check_sources, join_fleet, prepare_process, spawn_fleet};

impl Relay {
    /// Recovers the spool, binds the listeners and starts delivering.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let (fleet, config) = join_fleet(config).await?;
        prepare_process(&config);
        let (spool, recovered) = recover_spool(&config).await?;
        let health = check_sources(&config, &spool);
        let registry = Arc::new(ArcSwap::from_pointee(config.registry.clone()));
        let shutdown = CancellationToken::new();
        let outbound = Arc::new(
            Outbound::new(&config, registry.clone(), spool.clone(), health.clone())
                .map_err(|e| anyhow::anyhow!(e))?,
        );
        let events = Arc::new(
            EventLog::open(config.events_path.as_deref(), &config.smtp.hostname)
                .context("cannot open the event log")?,
        );
        let feedback = FeedbackParts::open(&config, spool.root()).await?;
        outbound.set_shared_parts(fleet.clone(), feedback.return_path.clone());
        let attempts = attempt_context(&config, (&outbound, &spool, &events, &registry), &feedback);
        let attempts = AttemptContext {
            fleet: fleet.clone(),
            ..attempts
        };
        let (queue, scheduler) = queue::new(attempts, shutdown.clone());
        // Everything that can refuse start-up happens before any task is spawned.
        let mut listeners = Listeners::bind(&config).await?;
        outbound.set_own_listeners(listeners.own_addresses());
        let inbound_tls = load_inbound_tls(&config)?;

        let tasks = TaskTracker::new();
        let sessions = TaskTracker::new();
        let shared = (&registry, &events, &spool, &queue);
        let ctx = inbound_context(&config, shared, &shutdown, &inbound_tls, &feedback);
        let smtp = std::mem::take(&mut listeners.smtp);
        spawn_smtp(
            &tasks,
            &sessions,
            ctx.clone(),
            smtp,
            config.smtp.max_connections,
        );
        tasks.spawn(scheduler.run(recovered));
        let ledger = feedback.spawn(&tasks, &config, shared, &shutdown);
        let warmup = outbound.warmup_ledger();
        let parts = FleetParts::new(&registry, &ctx, &health, &ledger, &warmup);
        spawn_fleet(&tasks, &sessions, fleet.as_ref(), parts, &shutdown).await?;
        let dkim_status = Arc::new(StatusBoard::default());
        spawn_dns_checks(&tasks, &config, &registry, &health, &dkim_status, &shutdown);
        let admin = Arc::new(
            AdminState::new(
                &config,
                registry,
                queue.clone(),
                listeners.smtp_addrs.clone(),
                health,
                dkim_status,
            )
            .with_ledgers(ledger, outbound.warmup_ledger())
            .with_inbound(&ctx)
            .with_fleet(fleet)
            .with_shaper(outbound.shaper()),
        );
        tasks.spawn(outbound.clone().upkeep(shutdown.clone()));
        spawn_admin(&tasks, &mut listeners, (&admin, &ctx), &shutdown);
        let reap_every = (config.queue.connection_idle_timeout / 2).max(Duration::from_millis(100));
        tasks.spawn(reap_and_save(outbound, shutdown.clone(), reap_every));
        tracing::info!(listen = ?listeners.smtp_addrs, "poolrelay is accepting mail");
        Ok(Self {
            api_addrs: listeners.api_addrs,
            smtp_addrs: listeners.smtp_addrs,
            tls_addrs: listeners.tls_addrs,
            queue,
            admin,
            events,
            spool,
            shutdown,
            tasks,
            sessions,
        })
    }

    /// The queue: list, retry, delete, hold and release messages.
    pub fn queue(&self) -> &QueueHandle {
        &self.queue
    }

    /// Re-reads the config file (SIGHUP): pools, IPs and configuration sets change at once; an
    /// invalid file changes nothing and the error says why.
    pub async fn reload(&self) -> Result<(), crate::admin::ApiError> {
        self.admin.reload().await
    }

    /// What the relay knows about a source IP's health now (suspensions).
    pub fn ip_health(&self, address: std::net::IpAddr) -> crate::outbound::health::IpHealth {
        self.admin.health.report(address)
    }

    /// The addresses of the implicit-TLS listeners.
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    /// The addresses the SESv2 HTTP API listens on (useful with port 0).
    pub fn api_addrs(&self) -> &[SocketAddr] {
        &self.api_addrs
    }

    /// The addresses the SMTP listeners are bound to (useful with port 0).
    pub fn smtp_addrs(&self) -> &[SocketAddr] {
        &self.smtp_addrs
    }

    /// Stops accepting, tells connected clients 421, lets deliveries in progress finish briefly,
    /// and returns when everything has stopped. Unfinished work stays in the spool.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.shutdown.cancel();
        self.tasks.close();
        self.sessions.close();
        self.tasks.wait().await;
        self.sessions.wait().await;
        self.events.flush().await;
        self.spool.settle().await;
        tracing::info!("stopped");
    }
}
