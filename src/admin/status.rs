//! `GET /v2/email/status`: version, uptime, listeners, queue size.

use serde_json::{Value, json};

use super::error::ApiError;
use super::state::AdminState;

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
    ip_gauges(state);
    METRICS.render()
}

/// Per-IP warm-up and suspension gauges, read from the registry and health now.
fn ip_gauges(state: &AdminState) {
    use crate::metrics::{IpLabels, METRICS};
    use crate::outbound::warmup::{WarmupState, today};
    let registry = state.registry.load();
    let day = today();
    for ip in registry.ips() {
        let labels = IpLabels {
            source_ip: ip.address.to_string(),
        };
        let report = state.health.report(ip.address);
        let warmup = WarmupState::of(registry.warmup(), ip.warmup_started, day);
        METRICS
            .ip_warmup_percentage
            .get_or_create(&labels)
            .set(warmup.percentage() as i64);
        METRICS
            .ip_operator_suspended
            .get_or_create(&labels)
            .set(i64::from(ip.suspended));
        METRICS
            .ip_unbindable
            .get_or_create(&labels)
            .set(i64::from(report.unbindable.is_some()));
        METRICS
            .ip_suspended_sites
            .get_or_create(&labels)
            .set(report.sites.len() as i64);
    }
}
