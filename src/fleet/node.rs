//! This relay as a node of a fleet: joining (model read or initialized, IPs claimed), keeping
//! the registry on the fleet's model (pub/sub plus a check every second), the heartbeat, the
//! list of live peers, and admin changes written to the model.
//!
//! Redis unreachable: the node keeps the model it last had (also cached in the spool as
//! `fleet-model.toml`, so a restart without Redis still knows it), admin changes are refused,
//! and the node catches up when Redis answers again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::model::{self, ModelError};
use super::store::{FleetStore, MODEL_CHANNEL, NodeRecord, Stamp, StoreError};
use crate::config::edit::{ConfigDocument, EditError};
use crate::config::{self, Config};
use crate::registry::Registry;
use crate::settings::cluster::ClusterSettings;

/// An IP's health as JSON (see `outbound::health::IpHealth`).
pub type HealthReporter = Box<dyn Fn(std::net::IpAddr) -> serde_json::Value + Send + Sync>;

/// Why an admin change could not be made to the fleet model.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError<E> {
    /// The edit itself refused (unknown pool, ...).
    #[error("the change was refused")]
    Edit(E),
    #[error("{0}")]
    Invalid(EditError),
    #[error("the fleet's Redis is unavailable, so the fleet model cannot be changed now: {0}")]
    Unavailable(String),
    #[error("the fleet model changed while this change was made; try again")]
    Conflict,
}

/// A fleet node's shared state.
pub struct Fleet {
    pub settings: ClusterSettings,
    /// The node's own config file.
    host_path: PathBuf,
    store: FleetStore,
    /// The model as last applied, cached for a start without Redis.
    cache_path: PathBuf,
    version: AtomicU64,
    /// The epoch of the model applied (see [`Stamp`]).
    epoch: parking_lot::Mutex<String>,
    /// Redis answered the last request.
    redis_up: AtomicBool,
    /// Every node the fleet knows, refreshed with each heartbeat.
    peers: ArcSwap<Vec<NodeRecord>>,
    /// The key nodes sign forwarded mail with.
    secret: Vec<u8>,
    hostname: String,
    /// Peers that came (back) up since the last [`Fleet::peers_back`].
    back: parking_lot::Mutex<Vec<NodeRecord>>,
    back_signal: tokio::sync::Notify,
    /// How this node's IPs are doing (set at start by the outbound side), announced with each
    /// heartbeat.
    health_of: std::sync::OnceLock<HealthReporter>,
    /// Serializes applying a model (pub/sub, the periodic check and admin changes).
    applying: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("node", &self.settings.node)
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// Joins the fleet of `config`'s `[cluster]`: reads the model (writing this node's own as
    /// the first model when Redis has none), claims this node's IPs, and returns the config the
    /// node runs on.
    pub async fn join(config: &Config) -> anyhow::Result<(Arc<Self>, Config)> {
        let settings = config
            .cluster
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no [cluster] section"))?;
        let secret = crate::secret_file::read_or_create(&settings.secret_file, "fleet secret")?;
        if secret.len() < 16 {
            anyhow::bail!(
                "{} holds {} bytes; the fleet secret needs at least 16",
                settings.secret_file.display(),
                secret.len()
            );
        }
        let host_text = std::fs::read_to_string(&config.path)?;
        let cache_path = config.spool_dir.join("fleet-model.toml");
        let store = FleetStore::connect(&settings.redis)
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "cannot reach the fleet's Redis at {}: {error}",
                    settings.redis
                )
            })?;
        let (model_text, stamp) = match claimed_model(&store, &host_text, &settings.node).await {
            Ok(found) => found,
            Err(JoinError::Store(StoreError::Unavailable(error))) => {
                let cached = std::fs::read_to_string(&cache_path).map_err(|_| {
                    anyhow::anyhow!("the fleet's Redis at {} is unavailable ({error}) and this node has no cached model", settings.redis)
                })?;
                tracing::warn!(%error, "the fleet's Redis is unavailable: starting on the cached model");
                (cached, Stamp::default())
            }
            Err(error) => anyhow::bail!("{error}"),
        };
        let effective = effective_config(&config.path, &host_text, &model_text, &settings.node)
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        let _ = std::fs::create_dir_all(&config.spool_dir);
        let _ = crate::config::edit::write_atomically(&cache_path, model_text.as_bytes());
        let version = stamp.version;
        tracing::info!(node = %settings.node, version, "joined the fleet");
        let fleet = Arc::new(Self {
            host_path: config.path.clone(),
            store,
            cache_path,
            version: AtomicU64::new(version),
            epoch: parking_lot::Mutex::new(stamp.epoch),
            redis_up: AtomicBool::new(version != 0),
            peers: ArcSwap::from_pointee(Vec::new()),
            secret,
            hostname: config.smtp.hostname.clone(),
            applying: tokio::sync::Mutex::new(()),
            back: parking_lot::Mutex::new(Vec::new()),
            back_signal: tokio::sync::Notify::new(),
            health_of: std::sync::OnceLock::new(),
            settings,
        });
        Ok((fleet, effective))
    }

    pub fn node(&self) -> &str {
        &self.settings.node
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }

    fn stamp(&self) -> Stamp {
        Stamp {
            version: self.version(),
            epoch: self.epoch.lock().clone(),
        }
    }

    fn set_stamp(&self, stamp: Stamp) {
        self.version.store(stamp.version, Ordering::Relaxed);
        *self.epoch.lock() = stamp.epoch;
    }

    pub fn redis_up(&self) -> bool {
        self.redis_up.load(Ordering::Relaxed)
    }

    pub fn store(&self) -> &FleetStore {
        &self.store
    }

    /// The live nodes other than this one.
    pub fn live_peers(&self) -> Vec<NodeRecord> {
        self.peers
            .load()
            .iter()
            .filter(|node| node.alive && node.name != self.settings.node)
            .cloned()
            .collect()
    }

    /// Waits until peers come (back) up and returns them: mail waiting for their pools can go.
    pub async fn peers_back(&self) -> Vec<NodeRecord> {
        loop {
            let taken = std::mem::take(&mut *self.back.lock());
            if !taken.is_empty() {
                return taken;
            }
            self.back_signal.notified().await;
        }
    }

    /// Tells the fleet how this node's IPs are doing (once, at start).
    pub fn report_health_with(&self, reporter: HealthReporter) {
        let _ = self.health_of.set(reporter);
    }

    /// Another node's IP's health as it last announced it; `None` for an IP of no other node.
    pub fn remote_health(&self, address: std::net::IpAddr) -> Option<serde_json::Value> {
        let text = address.to_string();
        let peers = self.peers.load();
        let node = peers
            .iter()
            .find(|n| n.name != self.settings.node && n.ips.contains(&text))?;
        let health: serde_json::Value = serde_json::from_str(&node.health).ok()?;
        health.get(&text).cloned()
    }

    /// How many nodes are alive, this one included (at least 1).
    pub fn live_nodes(&self) -> u32 {
        1 + self.live_peers().len() as u32
    }

    /// Keeps the registry on the fleet's model and this node announced, until `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        registry: Arc<ArcSwap<Registry>>,
        shutdown: CancellationToken,
    ) {
        let watcher = tokio::spawn(self.clone().watch(registry.clone(), shutdown.clone()));
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    self.refresh(&registry).await;
                    self.heartbeat(&registry).await;
                }
            }
        }
        let _ = self.store.leave(&self.settings.node).await;
        watcher.abort();
    }

    /// Re-reads the model when pub/sub says it changed (reconnecting after a failure; the
    /// periodic check covers what is missed meanwhile).
    async fn watch(self: Arc<Self>, registry: Arc<ArcSwap<Registry>>, shutdown: CancellationToken) {
        use futures_util::StreamExt;
        while !shutdown.is_cancelled() {
            if let Ok(mut messages) = self.store.subscribe(MODEL_CHANNEL).await {
                while messages.next().await.is_some() {
                    self.refresh(&registry).await;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Applies the model if Redis has a newer one than this node.
    pub async fn refresh(&self, registry: &ArcSwap<Registry>) {
        let _applying = self.applying.lock().await;
        let found = match self.store.stamp().await {
            Ok(stamp) if stamp.version == 0 => self.reseed().await,
            Ok(stamp) if stamp == self.stamp() => Ok(None),
            Ok(_) => self.store.model().await,
            Err(error) => Err(error),
        };
        match found {
            Ok(Some((text, stamp))) => {
                self.set_redis_up(true);
                self.apply(registry, &text, stamp).await;
            }
            Ok(None) => self.set_redis_up(true),
            Err(error) => {
                if self.redis_up.swap(false, Ordering::Relaxed) {
                    tracing::error!(%error, "the fleet's Redis is unavailable: running on the last model; admin changes are refused");
                }
            }
        }
    }

    /// Applies the model again (after this node's file was edited: SIGHUP, reload): from Redis,
    /// or the cached one while Redis is unavailable.
    pub async fn reapply(
        &self,
        registry: &ArcSwap<Registry>,
    ) -> Result<Vec<crate::settings::shaping::ShapingRule>, String> {
        let _applying = self.applying.lock().await;
        let (text, stamp) = match self.store.model().await {
            Ok(Some(found)) => found,
            Ok(None) => return Err("the fleet has no model".into()),
            Err(_) => {
                let cached = tokio::fs::read_to_string(&self.cache_path)
                    .await
                    .map_err(|error| format!("cannot read the cached fleet model: {error}"))?;
                (cached, self.stamp())
            }
        };
        let version = stamp.version;
        let host_text = tokio::fs::read_to_string(&self.host_path)
            .await
            .map_err(|error| format!("cannot read {}: {error}", self.host_path.display()))?;
        let config = effective_config(&self.host_path, &host_text, &text, &self.settings.node)?;
        registry.store(Arc::new(config.registry));
        self.set_stamp(stamp);
        tracing::info!(version, "configuration reloaded on the fleet model");
        Ok(config.shaping)
    }

    /// Redis answers but has no model (restarted without persistence, or flushed): this node
    /// writes back the model it runs on, so the fleet goes on where it was.
    async fn reseed(&self) -> Result<Option<(String, Stamp)>, StoreError> {
        let Ok(text) = tokio::fs::read_to_string(&self.cache_path).await else {
            return Ok(None);
        };
        let written = self.store.replace_model(0, &text).await?;
        if written.is_some() {
            tracing::warn!(
                "the fleet's Redis had no model (restarted without persistence?): wrote back the model this node runs on"
            );
        }
        self.store.model().await
    }

    fn set_redis_up(&self, up: bool) {
        if up && !self.redis_up.swap(true, Ordering::Relaxed) {
            tracing::info!("the fleet's Redis answers again");
        }
    }

    /// Makes `text` the model this node runs on.
    async fn apply(&self, registry: &ArcSwap<Registry>, text: &str, stamp: Stamp) {
        let version = stamp.version;
        let host_text = match tokio::fs::read_to_string(&self.host_path).await {
            Ok(text) => text,
            Err(error) => {
                tracing::error!(%error, "cannot read this node's config file: the fleet model is not applied");
                return;
            }
        };
        match effective_config(&self.host_path, &host_text, text, &self.settings.node) {
            Ok(config) => {
                registry.store(Arc::new(config.registry));
                self.set_stamp(stamp);
                let _ = crate::config::edit::write_atomically(&self.cache_path, text.as_bytes());
                tracing::info!(version, "fleet model applied");
            }
            Err(error) => {
                tracing::error!(version, %error, "the fleet model does not work on this node: keeping the last one");
            }
        }
    }

    async fn heartbeat(&self, registry: &ArcSwap<Registry>) {
        let registry = registry.load();
        let addresses: Vec<std::net::IpAddr> = registry.local_ips().map(|ip| ip.address).collect();
        let health: serde_json::Map<String, serde_json::Value> = match self.health_of.get() {
            Some(report) => addresses
                .iter()
                .map(|&address| (address.to_string(), report(address)))
                .collect(),
            None => serde_json::Map::new(),
        };
        let record = NodeRecord {
            name: self.settings.node.clone(),
            forward_listen: self.settings.forward_listen.to_string(),
            ips: addresses
                .iter()
                .map(|address| address.to_string())
                .collect(),
            health: serde_json::Value::Object(health).to_string(),
            model_version: self.version(),
            hostname: self.hostname.clone(),
            alive: true,
        };
        if self.store.heartbeat(&record).await.is_ok()
            && let Ok(nodes) = self.store.nodes().await
        {
            let before = self.peers.load();
            let was_up = |name: &str| before.iter().any(|n| n.name == name && n.alive);
            let back: Vec<NodeRecord> = nodes
                .iter()
                .filter(|n| n.alive && n.name != self.settings.node && !was_up(&n.name))
                .cloned()
                .collect();
            self.peers.store(Arc::new(nodes));
            if !back.is_empty() {
                self.back.lock().extend(back);
                self.back_signal.notify_one();
            }
        }
    }

    /// An admin change: `edit` is applied to the effective config, the result checked as a
    /// config of this node, and its fleet tables written as the next model version (refused if
    /// another change came first). Applied here at once; the other nodes follow by pub/sub.
    pub async fn change<E>(
        &self,
        registry: &ArcSwap<Registry>,
        edit: impl FnOnce(&mut ConfigDocument) -> Result<(), E>,
    ) -> Result<(), ChangeError<E>> {
        let _applying = self.applying.lock().await;
        let unavailable = |error: StoreError| ChangeError::Unavailable(error.to_string());
        let (model_text, stamp) = self
            .store
            .model()
            .await
            .map_err(unavailable)?
            .ok_or_else(|| ChangeError::Unavailable("the fleet has no model".into()))?;
        let host_text = std::fs::read_to_string(&self.host_path)
            .map_err(|error| ChangeError::Invalid(EditError::Io(error)))?;
        let text = model::effective(&host_text, &model_text)
            .map_err(|error| ChangeError::Invalid(EditError::Syntax(error.to_string())))?;
        let mut document = ConfigDocument::parse(&text).map_err(ChangeError::Invalid)?;
        edit(&mut document).map_err(ChangeError::Edit)?;
        let changed = document.text();
        let mut config = config::parse(&self.host_path, &changed)
            .map_err(|e| ChangeError::Invalid(EditError::Invalid(e)))?;
        let new_model = model::model_of(&changed, &self.settings.node)
            .map_err(|error| ChangeError::Invalid(EditError::Syntax(error.to_string())))?;
        let version = self
            .store
            .replace_model(stamp.version, &new_model)
            .await
            .map_err(unavailable)?
            .ok_or(ChangeError::Conflict)?;
        config
            .registry
            .set_local_node(Some(self.settings.node.clone()));
        registry.store(Arc::new(config.registry));
        self.set_stamp(Stamp {
            version,
            epoch: stamp.epoch,
        });
        let _ = crate::config::edit::write_atomically(&self.cache_path, new_model.as_bytes());
        tracing::info!(version, "fleet model changed");
        Ok(())
    }
}

/// Why joining failed.
#[derive(Debug, thiserror::Error)]
enum JoinError {
    #[error("{0}")]
    Store(StoreError),
    #[error("{0}")]
    Model(ModelError),
    #[error("the fleet model kept changing while this node claimed its IPs; start it again")]
    Busy,
}

/// Reads the model (writing this node's own file's as the first one when there is none) and
/// makes this node's IPs in it those of its file.
async fn claimed_model(
    store: &FleetStore,
    host_text: &str,
    node: &str,
) -> Result<(String, Stamp), JoinError> {
    for _ in 0..5 {
        let (text, stamp) = match store.model().await.map_err(JoinError::Store)? {
            Some(found) => found,
            None => {
                let own = model::model_of(host_text, node).map_err(JoinError::Model)?;
                (own, Stamp::default())
            }
        };
        let claimed = model::claim(host_text, &text, node).map_err(JoinError::Model)?;
        if stamp.version != 0 && claimed.is_none() {
            return Ok((text, stamp));
        }
        let text = claimed.unwrap_or(text);
        let written = store.replace_model(stamp.version, &text).await;
        if written.map_err(JoinError::Store)?.is_some() {
            // The epoch is Redis's (a first write names a new one).
            let stamp = store.stamp().await.map_err(JoinError::Store)?;
            return Ok((text, stamp));
        }
    }
    Err(JoinError::Busy)
}

/// The config this node runs on with the model `model_text`: checked like a file, its registry
/// marked with the node's name.
fn effective_config(
    path: &Path,
    host_text: &str,
    model_text: &str,
    node: &str,
) -> Result<Config, String> {
    let text = model::effective(host_text, model_text).map_err(|e| e.to_string())?;
    let mut config = config::parse(path, &text).map_err(|e| e.to_string())?;
    config.registry.set_local_node(Some(node.to_string()));
    Ok(config)
}
