//! What the admin endpoints work on, and the one way they change the configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use super::error::ApiError;

use crate::config::edit::ConfigDocument;
use crate::config::{Config, DkimSettings};
use crate::identity::status::StatusBoard;
use crate::outbound::health::Health;
use crate::queue::QueueHandle;
use crate::registry::Registry;

/// What the admin endpoints work on.
pub struct AdminState {
    pub config_path: PathBuf,
    pub registry: Arc<ArcSwap<Registry>>,
    pub queue: QueueHandle,
    pub started: Instant,
    pub listeners: Vec<SocketAddr>,
    /// Peer uids allowed in (the relay's own uid and root unless configured).
    pub allowed_uids: Vec<u32>,
    /// Suspensions the outbound side keeps (unbindable addresses, refusing sites), and the
    /// reverse DNS of each IP.
    pub health: Arc<Health>,
    /// What DNS publishes for each identity's DKIM key; rung after every change.
    pub dkim_status: Arc<StatusBoard>,
    /// `[dkim]`: where keys given through the API are written.
    pub dkim: DkimSettings,
    /// The suppression list (set by the relay at start).
    pub ledger: Option<crate::ledger::Ledger>,
    /// The account's sending quota, as SMTP and the API count it (GetAccount reads it).
    pub quota: Arc<crate::inbound::quota::SendQuota>,
    /// Delivered, deferred and bounced per minute, pool and IP over the last hour.
    pub history: Arc<crate::events::history::History>,
    /// Today's sends per warming IP (set by the relay at start).
    pub warmup: Option<Arc<crate::outbound::warmup::WarmupLedger>>,
    /// Where email templates are kept (`<spool>/templates`).
    pub templates_dir: PathBuf,
    /// Serializes template writes (create refuses a name that exists).
    pub template_writes: tokio::sync::Mutex<()>,
    /// Serializes writes, and holds the config file's text as the relay last read or wrote it:
    /// a write refuses to build on hand edits that were never reloaded.
    writes: tokio::sync::Mutex<Option<String>>,
    /// In a fleet: changes go to the fleet's model in Redis, not to the file.
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
    /// The outbound side's shaping limits, replaced at a reload.
    pub shaper: Option<Arc<crate::outbound::shaping::Shaper>>,
    /// The event log, reopened at a reload (after logrotate moved it away).
    events: Option<Arc<crate::events::EventLog>>,
    /// The listeners' TLS certificate, read again at a reload.
    tls: Option<Arc<crate::inbound::tls::InboundTls>>,
}

impl AdminState {
    pub fn new(
        config: &Config,
        registry: Arc<ArcSwap<Registry>>,
        queue: QueueHandle,
        listeners: Vec<SocketAddr>,
        health: Arc<Health>,
        dkim_status: Arc<StatusBoard>,
    ) -> Self {
        // SAFETY: getuid has no preconditions and cannot fail.
        let own = unsafe { libc::getuid() };
        let allowed_uids = config
            .admin
            .allowed_uids
            .clone()
            .unwrap_or_else(|| vec![own, 0]);
        Self {
            config_path: config.path.clone(),
            templates_dir: config.spool_dir.join("templates"),
            template_writes: tokio::sync::Mutex::new(()),
            registry,
            queue,
            started: Instant::now(),
            listeners,
            allowed_uids,
            health,
            dkim_status,
            dkim: config.dkim.clone(),
            ledger: None,
            quota: Arc::default(),
            history: Arc::default(),
            warmup: None,
            writes: tokio::sync::Mutex::new(std::fs::read_to_string(&config.path).ok()),
            fleet: None,
            shaper: None,
            events: None,
            tls: None,
        }
    }

    /// The shaping limits a reload replaces.
    pub fn with_shaper(self, shaper: Arc<crate::outbound::shaping::Shaper>) -> Self {
        Self {
            shaper: Some(shaper),
            ..self
        }
    }

    /// A fleet node: changes are made to the fleet's model.
    pub fn with_fleet(self, fleet: Option<Arc<crate::fleet::Fleet>>) -> Self {
        Self { fleet, ..self }
    }

    /// The quota the inbound side counts against, and the last hour's delivery counts.
    pub fn with_inbound(self, inbound: &crate::inbound::InboundContext) -> Self {
        Self {
            quota: inbound.quota.clone(),
            history: inbound.events.history().clone(),
            events: Some(inbound.events.clone()),
            tls: inbound.tls.clone(),
            ..self
        }
    }

    /// The suppression list the API reads and writes, and today's warm-up counts.
    pub fn with_ledgers(
        self,
        ledger: crate::ledger::Ledger,
        warmup: Arc<crate::outbound::warmup::WarmupLedger>,
    ) -> Self {
        Self {
            ledger: Some(ledger),
            warmup: Some(warmup),
            ..self
        }
    }

    /// Applies `edit` to the config file under the write lock: the edit sees the current registry
    /// (to refuse with SES's error types), the result is validated and saved, then applied. A
    /// file edited by hand since the relay last read or wrote it is not built on: 409, reload
    /// first (the hand edits would otherwise take effect unseen, half-checked).
    pub async fn change(
        &self,
        edit: impl FnOnce(&mut ConfigDocument, &Registry) -> Result<(), ApiError> + Send + 'static,
    ) -> Result<(), ApiError> {
        if let Some(fleet) = &self.fleet {
            return self.change_fleet(fleet, edit).await;
        }
        let mut known = self.writes.lock().await;
        let path = self.config_path.clone();
        let registry = self.registry.load_full();
        let expected = known.clone();
        let (config, text) = tokio::task::spawn_blocking(move || {
            let text = std::fs::read_to_string(&path)
                .map_err(|error| ApiError::Internal(format!("cannot read the config: {error}")))?;
            if expected.as_ref().is_some_and(|known| known != &text) {
                return Err(ApiError::Conflict(
                    "the config file was changed since the relay read it; reload first (poolrelay reload, or SIGHUP)".into(),
                ));
            }
            let mut document = ConfigDocument::parse(&text)?;
            edit(&mut document, &registry)?;
            Ok(document.save(&path)?)
        })
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))??;
        self.registry.store(Arc::new(config.registry));
        *known = Some(text);
        self.dkim_status.wake.notify_one();
        Ok(())
    }

    /// [`AdminState::change`] on a fleet node: the edit is made to the fleet's model.
    async fn change_fleet(
        &self,
        fleet: &crate::fleet::Fleet,
        edit: impl FnOnce(&mut ConfigDocument, &Registry) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        use crate::fleet::ChangeError;
        let _writing = self.writes.lock().await;
        let registry = self.registry.load_full();
        let changed = fleet
            .change(&self.registry, |document| edit(document, &registry))
            .await;
        self.dkim_status.wake.notify_one();
        changed.map_err(|error| match error {
            ChangeError::Edit(error) => error,
            ChangeError::Invalid(error) => ApiError::from(error),
            ChangeError::Conflict => ApiError::Conflict(error.to_string()),
            ChangeError::Unavailable(_) => ApiError::Ses {
                status: hyper::StatusCode::SERVICE_UNAVAILABLE,
                kind: "ServiceUnavailableException",
                message: error.to_string(),
            },
        })
    }

    /// Re-reads the config file (SIGHUP, `POST /v2/email/reload`). An invalid file changes
    /// nothing and its errors are returned. Pools, IPs and configuration sets take effect at once;
    /// other settings need a restart.
    pub async fn reload(&self) -> Result<(), ApiError> {
        // Whatever the new config says: logrotate reloads after moving the event log away, and
        // a renewed certificate is read from the same files.
        if let Some(events) = &self.events
            && let Err(error) = events.reopen().await
        {
            tracing::error!(%error, "event log not reopened; events still go to the old file");
        }
        if let Some(tls) = &self.tls
            && let Err(error) = tls.reload()
        {
            tracing::error!(%error, "TLS certificate not reloaded; the old one stays in use");
        }
        if let Some(fleet) = &self.fleet {
            let shaping = fleet
                .reapply(&self.registry)
                .await
                .map_err(ApiError::BadRequest)?;
            self.reshape(shaping);
            return Ok(());
        }
        let mut known = self.writes.lock().await;
        let path = self.config_path.clone();
        let (config, text) = tokio::task::spawn_blocking(move || {
            let text = std::fs::read_to_string(&path).map_err(|error| {
                ApiError::BadRequest(format!("cannot read {}: {error}", path.display()))
            })?;
            crate::config::parse(&path, &text)
                .map(|config| (config, text))
                .map_err(|errors| ApiError::BadRequest(errors.to_string().trim().to_string()))
        })
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))??;
        self.reshape(config.shaping);
        self.registry.store(Arc::new(config.registry));
        *known = Some(text);
        self.dkim_status.wake.notify_one();
        tracing::info!(path = %self.config_path.display(), "configuration reloaded");
        Ok(())
    }

    fn reshape(&self, rules: Vec<crate::settings::shaping::ShapingRule>) {
        if let Some(shaper) = &self.shaper {
            shaper.reconfigure(rules);
        }
    }
}
