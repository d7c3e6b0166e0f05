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

/// The Prometheus text, with the queue gauges read now.
pub async fn metrics_text(state: &AdminState) -> String {
    use crate::metrics::METRICS;
    if let Ok(queue) = state.queue.list().await {
        METRICS.queue_messages.set(queue.len() as i64);
        METRICS.queue_oldest_seconds.set(
            queue
                .iter()
                .map(|entry| entry.age_seconds)
                .max()
                .unwrap_or(0) as i64,
        );
    }
    METRICS.render()
}
