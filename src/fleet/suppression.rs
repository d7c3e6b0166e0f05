//! The suppression list across the fleet. Each node keeps the whole list in its own ledger (so a
//! lookup before each attempt never waits for the network); Redis holds the fleet's copy in the
//! hash `poolrelay:suppression` (normalized address → the ledger's encoded entry) and announces
//! each change on `poolrelay:suppression-changed` ("node\taddress").
//!
//! A node's own changes (API, CLI, bounces, complaints) are written to Redis in order, and kept
//! until Redis takes them; other nodes' changes are read back when announced. Each time the
//! subscription starts (at start, and after Redis was away) the node first merges the whole
//! hash, so additions made meanwhile are not missed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Fleet;
use crate::ledger::Ledger;
use crate::ledger::store::Change;

const LIST_KEY: &str = "poolrelay:suppression";
const CHANNEL: &str = "poolrelay:suppression-changed";

/// Shares `ledger`'s changes with the fleet and applies the other nodes' until `shutdown`.
pub async fn run(fleet: Arc<Fleet>, ledger: Ledger, shutdown: CancellationToken) {
    let Some(mut changes) = ledger.watch_changes() else {
        return;
    };
    let follower = tokio::spawn(follow(fleet.clone(), ledger, shutdown.clone()));
    let mut pending: VecDeque<Change> = VecDeque::new();
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            change = changes.recv() => match change {
                Some(change) => pending.push_back(change),
                None => break,
            },
            _ = retry.tick() => {}
        }
        while let Some(change) = pending.front() {
            if publish(&fleet, change).await.is_err() {
                break;
            }
            pending.pop_front();
        }
    }
    follower.abort();
}

/// Writes one change to Redis and announces it.
async fn publish(fleet: &Fleet, change: &Change) -> Result<(), redis::RedisError> {
    let mut connection = fleet.store().connection();
    let mut pipe = redis::pipe();
    let key = match change {
        Change::Suppressed { key, entry } => {
            pipe.hset(LIST_KEY, key, entry.as_slice()).ignore();
            key
        }
        Change::Removed { key } => {
            pipe.hdel(LIST_KEY, key).ignore();
            key
        }
    };
    pipe.publish(CHANNEL, format!("{}\t{key}", fleet.node()))
        .ignore();
    pipe.query_async::<()>(&mut connection).await
}

/// Applies other nodes' changes as they are announced; merges the whole list first each time
/// the subscription (re)starts.
async fn follow(fleet: Arc<Fleet>, ledger: Ledger, shutdown: CancellationToken) {
    use futures_util::StreamExt;
    while !shutdown.is_cancelled() {
        if let Ok(mut messages) = fleet.store().subscribe(CHANNEL).await {
            if let Err(error) = merge_all(&fleet, &ledger).await {
                tracing::warn!(%error, "cannot read the fleet's suppression list");
            }
            while let Some(message) = messages.next().await {
                let Ok(payload) = message.get_payload::<String>() else {
                    continue;
                };
                let Some((node, key)) = payload.split_once('\t') else {
                    continue;
                };
                if node != fleet.node() {
                    let _ = apply_one(&fleet, &ledger, key).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Reads one address's entry from Redis and applies it (removed when it is gone).
async fn apply_one(fleet: &Fleet, ledger: &Ledger, key: &str) -> Result<(), redis::RedisError> {
    let mut connection = fleet.store().connection();
    let entry: Option<Vec<u8>> = redis::AsyncCommands::hget(&mut connection, LIST_KEY, key).await?;
    let change = match entry {
        Some(entry) => Change::Suppressed {
            key: key.to_string(),
            entry,
        },
        None => Change::Removed {
            key: key.to_string(),
        },
    };
    apply(ledger, vec![change]).await;
    Ok(())
}

/// Every entry of the fleet's list, applied in batches.
async fn merge_all(fleet: &Fleet, ledger: &Ledger) -> Result<(), redis::RedisError> {
    let mut connection = fleet.store().connection();
    let mut cursor: u64 = 0;
    let mut merged = 0usize;
    loop {
        let (next, fields): (u64, Vec<(String, Vec<u8>)>) = redis::cmd("HSCAN")
            .arg(LIST_KEY)
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut connection)
            .await?;
        merged += fields.len();
        let changes = fields
            .into_iter()
            .map(|(key, entry)| Change::Suppressed { key, entry })
            .collect();
        apply(ledger, changes).await;
        if next == 0 {
            break;
        }
        cursor = next;
    }
    tracing::info!(entries = merged, "merged the fleet's suppression list");
    Ok(())
}

async fn apply(ledger: &Ledger, changes: Vec<Change>) {
    if changes.is_empty() {
        return;
    }
    let ledger = ledger.clone();
    match tokio::task::spawn_blocking(move || ledger.apply(&changes)).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::error!(%error, "cannot apply the fleet's suppression changes"),
        Err(error) => tracing::error!(%error, "cannot apply the fleet's suppression changes"),
    }
}
