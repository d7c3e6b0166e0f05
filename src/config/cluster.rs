//! `[cluster]`: the Redis URL, this node's name, its forwarding listener and the shared key.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::problems::Problems;
use super::raw::RawConfig;
use crate::settings::cluster::{ClusterSettings, is_valid_node_name};

pub(super) fn cluster(
    raw: &RawConfig,
    relative_to_config: &dyn Fn(&str) -> PathBuf,
    problems: &mut Problems<'_>,
) -> Option<ClusterSettings> {
    let cluster = raw.cluster.as_ref()?;
    let redis = problems.check(&cluster.redis, |url| {
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            Ok(url.to_string())
        } else {
            Err(format!(
                "{url:?} is not a Redis URL (write \"redis://127.0.0.1:6379/0\")"
            ))
        }
    });
    let node = problems.check(&cluster.node, |name| {
        if is_valid_node_name(name) {
            Ok(name.to_string())
        } else {
            Err(format!(
                "node name {name:?} is invalid: use 1-63 characters from a-z, 0-9 and '-'"
            ))
        }
    });
    let forward_listen = problems.check(&cluster.forward_listen, |text| {
        text.parse::<SocketAddr>()
            .map_err(|_| format!("{text:?} is not ip:port"))
    });
    let secret_file = relative_to_config(cluster.secret_file.get_ref());
    Some(ClusterSettings {
        redis: redis?,
        node: node?,
        forward_listen: forward_listen?,
        secret_file,
    })
}
