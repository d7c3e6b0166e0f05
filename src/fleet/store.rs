//! Where the fleet keeps what it shares: Redis. Every key starts with `poolrelay:`.
//!
//! * `poolrelay:model` — hash: `text` (the model, TOML) and `version` (raised by each change);
//!   a change is a compare-and-set script that also publishes the new version on
//!   `poolrelay:model-changed`, so every node re-reads it at once.
//! * `poolrelay:nodes` — set of node names; `poolrelay:node:<name>` — hash of what the node
//!   announces (forwarding address, IPs, model version, host name);
//!   `poolrelay:alive:<name>` — set with a 6-second expiry by each heartbeat (every 2 s).

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// The channel a new model version is published on.
pub const MODEL_CHANNEL: &str = "poolrelay:model-changed";
const MODEL_KEY: &str = "poolrelay:model";
const NODES_KEY: &str = "poolrelay:nodes";
/// A node not heard from for this long is down.
pub const ALIVE_FOR: Duration = Duration::from_secs(6);

/// What went wrong talking to the fleet's store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("Redis is unavailable: {0}")]
    Unavailable(String),
    #[error("Redis refused the request: {0}")]
    Refused(String),
}

impl From<redis::RedisError> for StoreError {
    fn from(error: redis::RedisError) -> Self {
        if error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
        {
            Self::Unavailable(error.to_string())
        } else {
            Self::Refused(error.to_string())
        }
    }
}

/// One node as the fleet sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeRecord {
    pub name: String,
    pub forward_listen: String,
    pub ips: Vec<String>,
    pub model_version: u64,
    pub hostname: String,
    pub alive: bool,
    /// The health of the node's IPs (JSON: address -> suspensions), so every node's API shows
    /// a site suspension of any node's IP.
    #[serde(skip)]
    pub health: String,
}

/// Which model Redis holds: its version, and the epoch it counts in (a new one each time the
/// model is first written, so versions counted again after Redis lost its data never pass for
/// ones a node has already applied).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamp {
    pub version: u64,
    pub epoch: String,
}

/// A connection to the fleet's Redis (reconnected in the background after a failure).
#[derive(Clone)]
pub struct FleetStore {
    client: redis::Client,
    connection: ConnectionManager,
}

const CAS_SCRIPT: &str = r#"
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if current ~= tonumber(ARGV[1]) then return -1 end
local next = current + 1
if current == 0 then redis.call('HSET', KEYS[1], 'epoch', ARGV[4]) end
redis.call('HSET', KEYS[1], 'text', ARGV[2], 'version', next)
redis.call('PUBLISH', ARGV[3], next)
return next
"#;

/// A fresh epoch name: 16 random hex digits.
fn new_epoch() -> String {
    let value: u64 = rand::random();
    format!("{value:016x}")
}

impl FleetStore {
    /// Connects, failing fast: a fleet node must know at start whether Redis answers.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError::Refused(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let connection = client.get_connection_manager_with_config(config).await?;
        Ok(Self { client, connection })
    }

    /// The messages of `channel`, on a connection of their own (the stream ends when that
    /// connection is lost: subscribe again).
    pub async fn subscribe(&self, channel: &str) -> Result<redis::aio::PubSubStream, StoreError> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok(pubsub.into_on_message())
    }

    /// A handle for commands (cheap to clone; requests share one connection).
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// The model and its stamp; `None` before the fleet was initialized.
    pub async fn model(&self) -> Result<Option<(String, Stamp)>, StoreError> {
        let mut connection = self.connection();
        let (text, version, epoch): (Option<String>, Option<u64>, Option<String>) =
            redis::cmd("HMGET")
                .arg(MODEL_KEY)
                .arg("text")
                .arg("version")
                .arg("epoch")
                .query_async(&mut connection)
                .await?;
        let stamp = Stamp {
            version: version.unwrap_or(0),
            epoch: epoch.unwrap_or_default(),
        };
        Ok(text.map(|text| (text, stamp)))
    }

    /// The model's stamp (version 0 before the fleet was initialized).
    pub async fn stamp(&self) -> Result<Stamp, StoreError> {
        let mut connection = self.connection();
        let (version, epoch): (Option<u64>, Option<String>) = redis::cmd("HMGET")
            .arg(MODEL_KEY)
            .arg("version")
            .arg("epoch")
            .query_async(&mut connection)
            .await?;
        Ok(Stamp {
            version: version.unwrap_or(0),
            epoch: epoch.unwrap_or_default(),
        })
    }

    /// The model's version (0 before the fleet was initialized).
    pub async fn version(&self) -> Result<u64, StoreError> {
        Ok(self.stamp().await?.version)
    }

    /// Writes `text` as the model if its version is still `expected`; returns the new version,
    /// or `None` when another change came first.
    pub async fn replace_model(
        &self,
        expected: u64,
        text: &str,
    ) -> Result<Option<u64>, StoreError> {
        let mut connection = self.connection();
        let version: i64 = redis::Script::new(CAS_SCRIPT)
            .key(MODEL_KEY)
            .arg(expected)
            .arg(text)
            .arg(MODEL_CHANNEL)
            .arg(new_epoch())
            .invoke_async(&mut connection)
            .await?;
        Ok(u64::try_from(version).ok())
    }

    /// Whether the database holds no key at all (`cluster init` writes only into an empty one).
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        let mut connection = self.connection();
        let size: u64 = redis::cmd("DBSIZE").query_async(&mut connection).await?;
        Ok(size == 0)
    }

    /// Announces this node: what it offers, and that it is alive for [`ALIVE_FOR`].
    pub async fn heartbeat(&self, node: &NodeRecord) -> Result<(), StoreError> {
        let mut connection = self.connection();
        redis::pipe()
            .sadd(NODES_KEY, &node.name)
            .ignore()
            .hset_multiple(
                format!("poolrelay:node:{}", node.name),
                &[
                    ("forward_listen", node.forward_listen.clone()),
                    ("ips", node.ips.join(",")),
                    ("model_version", node.model_version.to_string()),
                    ("hostname", node.hostname.clone()),
                    ("health", node.health.clone()),
                ],
            )
            .ignore()
            .set_options(
                format!("poolrelay:alive:{}", node.name),
                1,
                redis::SetOptions::default()
                    .with_expiration(redis::SetExpiry::PX(ALIVE_FOR.as_millis() as u64)),
            )
            .ignore()
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }

    /// Marks a node down at once (an orderly stop).
    pub async fn leave(&self, node: &str) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let _: () = connection.del(format!("poolrelay:alive:{node}")).await?;
        Ok(())
    }

    /// Every node that ever announced itself, sorted by name, with its liveness.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let mut connection = self.connection();
        let mut names: Vec<String> = connection.smembers(NODES_KEY).await?;
        names.sort();
        let mut nodes = Vec::with_capacity(names.len());
        for name in names {
            let mut pipe = redis::pipe();
            pipe.hgetall(format!("poolrelay:node:{name}"))
                .exists(format!("poolrelay:alive:{name}"));
            let (fields, alive): (std::collections::HashMap<String, String>, bool) =
                pipe.query_async(&mut connection).await?;
            let field = |key: &str| fields.get(key).cloned().unwrap_or_default();
            nodes.push(NodeRecord {
                forward_listen: field("forward_listen"),
                ips: field("ips")
                    .split(',')
                    .filter(|ip| !ip.is_empty())
                    .map(str::to_string)
                    .collect(),
                model_version: field("model_version").parse().unwrap_or(0),
                hostname: field("hostname"),
                health: field("health"),
                alive,
                name,
            });
        }
        Ok(nodes)
    }
}
