//! `poolrelay cluster init | export | status`: the fleet model from the command line.

use std::path::Path;

use super::model;
use super::store::FleetStore;
use crate::settings::cluster::ClusterSettings;

fn cluster_of(config: &crate::config::Config) -> anyhow::Result<&ClusterSettings> {
    config.cluster.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "{} has no [cluster] section (redis, node, forward_listen, secret_file)",
            config.path.display()
        )
    })
}

async fn connect(settings: &ClusterSettings) -> anyhow::Result<FleetStore> {
    FleetStore::connect(&settings.redis).await.map_err(|error| {
        anyhow::anyhow!(
            "cannot reach the fleet's Redis at {}: {error}",
            settings.redis
        )
    })
}

fn load(path: &Path) -> anyhow::Result<crate::config::Config> {
    crate::config::load(path).map_err(|errors| anyhow::anyhow!("{errors}"))
}

/// Writes the relay's model (pools, IPs, configuration sets, identities, warm-up, account,
/// suppression) into an empty Redis, its IPs marked as this node's.
pub async fn init(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    let settings = cluster_of(&config)?;
    let store = connect(settings).await?;
    if !store.is_empty().await? {
        anyhow::bail!(
            "the Redis database at {} is not empty: cluster init writes only into an empty one (the fleet may exist already: poolrelay cluster status)",
            settings.redis
        );
    }
    let text = std::fs::read_to_string(path)?;
    let model = model::model_of(&text, &settings.node)?;
    match store.replace_model(0, &model).await? {
        Some(version) => {
            println!(
                "fleet model version {version} written to {} ({} pools, {} IPs, {} configuration sets)",
                settings.redis,
                config.registry.pool_names().count(),
                config.registry.ips().len(),
                config.registry.configuration_sets().count()
            );
            Ok(())
        }
        None => anyhow::bail!("another node wrote a model meanwhile"),
    }
}

/// Prints the fleet model as TOML (for backups and review).
pub async fn export(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    let store = connect(cluster_of(&config)?).await?;
    match store.model().await? {
        Some((text, stamp)) => {
            println!("# poolrelay fleet model, version {}", stamp.version);
            print!("{text}");
            Ok(())
        }
        None => anyhow::bail!("the fleet has no model yet (poolrelay cluster init)"),
    }
}

/// Lists the nodes: name, liveness, forwarding address, IPs and the model version each runs.
pub async fn status(path: &Path, json: bool) -> anyhow::Result<()> {
    let config = load(path)?;
    let store = connect(cluster_of(&config)?).await?;
    let version = store.version().await?;
    let nodes = store.nodes().await?;
    if json {
        let report = serde_json::json!({"model_version": version, "nodes": nodes});
        println!("{report}");
        return Ok(());
    }
    println!("model version {version}");
    println!(
        "{:<16} {:<5} {:<22} {:<8} ips",
        "node", "state", "forward_listen", "version"
    );
    for node in nodes {
        println!(
            "{:<16} {:<5} {:<22} {:<8} {}",
            node.name,
            if node.alive { "up" } else { "down" },
            node.forward_listen,
            node.model_version,
            node.ips.join(", ")
        );
    }
    Ok(())
}
