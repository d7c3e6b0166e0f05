//! `GET /v2/email/status`: version, uptime, listeners, queue size.

use serde_json::{Value, json};

use super::AdminState;
use super::error::ApiError;

pub async fn get(state: &AdminState) -> Result<Value, ApiError> {
    let queue = state.queue.list().await?;
    let oldest = queue
        .iter()
        .map(|entry| entry.age_seconds)
        .max()
        .unwrap_or(0);
    Ok(json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "UptimeSeconds": state.started.elapsed().as_secs(),
        "Listeners": state.listeners.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
        "QueueSize": queue.len(),
        "OldestMessageAgeSeconds": oldest,
    }))
}
