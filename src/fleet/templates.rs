//! Email templates across the fleet. Each node keeps them as files (`<spool>/templates/`, read
//! by SendEmail and the API as on a single relay); Redis holds the fleet's copy in the hash
//! `poolrelay:templates` (name → the file's JSON) and announces each change on
//! `poolrelay:templates-changed` ("node\tname"). A change is written to Redis first, so while
//! Redis is unavailable template changes are refused, as other changes to the fleet model are.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Fleet;
use super::store::StoreError;

const TEMPLATES_KEY: &str = "poolrelay:templates";
const CHANNEL: &str = "poolrelay:templates-changed";

/// SES template names: 1-64 of A-Z, a-z, 0-9, '_' and '-' (so a name is a safe file name).
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Records a template (`Some(json)`) or its deletion (`None`) for the whole fleet.
pub async fn publish(fleet: &Fleet, name: &str, json: Option<&[u8]>) -> Result<(), StoreError> {
    let mut connection = fleet.store().connection();
    let mut pipe = redis::pipe();
    match json {
        Some(json) => pipe.hset(TEMPLATES_KEY, name, json).ignore(),
        None => pipe.hdel(TEMPLATES_KEY, name).ignore(),
    };
    pipe.publish(CHANNEL, format!("{}\t{name}", fleet.node()))
        .ignore();
    pipe.query_async::<()>(&mut connection).await?;
    Ok(())
}

/// Keeps `dir` on the fleet's templates until `shutdown`: all of them each time the
/// subscription starts, then each change another node announces.
pub async fn run(fleet: Arc<Fleet>, dir: PathBuf, shutdown: CancellationToken) {
    use futures_util::StreamExt;
    while !shutdown.is_cancelled() {
        if let Ok(mut messages) = fleet.store().subscribe(CHANNEL).await {
            let mut connection = fleet.store().connection();
            let all: Result<Vec<(String, Vec<u8>)>, _> =
                redis::AsyncCommands::hgetall(&mut connection, TEMPLATES_KEY).await;
            for (name, json) in all.unwrap_or_default() {
                store_file(&dir, &name, Some(json)).await;
            }
            loop {
                let message = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    message = messages.next() => message,
                };
                let Some(message) = message else { break };
                let Ok(payload) = message.get_payload::<String>() else {
                    continue;
                };
                match payload.split_once('\t') {
                    Some((node, name)) if node != fleet.node() => {
                        let json: Result<Option<Vec<u8>>, _> =
                            redis::AsyncCommands::hget(&mut connection, TEMPLATES_KEY, name).await;
                        if let Ok(json) = json {
                            store_file(&dir, name, json).await;
                        }
                    }
                    _ => {}
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Writes (or, for `None`, deletes) `dir/<name>.json` when it differs.
async fn store_file(dir: &Path, name: &str, json: Option<Vec<u8>>) {
    if !valid_name(name) {
        tracing::warn!(name, "the fleet's templates hold an invalid name: ignored");
        return;
    }
    let (dir, file) = (dir.to_path_buf(), dir.join(format!("{name}.json")));
    let stored = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        match json {
            Some(json) if std::fs::read(&file).ok().as_deref() != Some(json.as_slice()) => {
                std::fs::create_dir_all(&dir)?;
                crate::config::edit::write_atomically(&file, &json)
            }
            Some(_) => Ok(()),
            None => match std::fs::remove_file(&file) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
                _ => Ok(()),
            },
        }
    })
    .await;
    if let Ok(Err(error)) = stored {
        tracing::error!(name, %error, "cannot store a template of the fleet");
    }
}
