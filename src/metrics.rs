//! Prometheus metrics, served as text at `GET /metrics` on the admin socket and, with
//! `[metrics] listen`, on TCP.
//!
//! One process-wide set of counters (like most Prometheus clients): the relay's modules count
//! what they see; queue size and age are read from the queue at scrape time.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub pool: String,
    pub source_ip: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IpLabels {
    pub source_ip: String,
}

pub struct Metrics {
    pub accepted: Counter,
    pub rejected: Family<ReasonLabels, Counter>,
    pub delivered: Family<OutcomeLabels, Counter>,
    pub deferred: Family<OutcomeLabels, Counter>,
    pub bounced: Family<OutcomeLabels, Counter>,
    pub bind_failures: Family<IpLabels, Counter>,
    /// Times a site suspended an IP (reputation refusals).
    pub site_suspensions: Family<IpLabels, Counter>,
    /// Per IP, read at scrape time: 1 while the address cannot be bound.
    pub ip_unbindable: Family<IpLabels, Gauge>,
    /// Per IP, read at scrape time: 1 while an operator has suspended it.
    pub ip_operator_suspended: Family<IpLabels, Gauge>,
    /// Per IP, read at scrape time: sites refusing it now.
    pub ip_suspended_sites: Family<IpLabels, Gauge>,
    /// Per IP, read at scrape time: SES WarmupPercentage.
    pub ip_warmup_percentage: Family<IpLabels, Gauge>,
    /// Per IP: 1 when its PTR resolves back to it and is the name it greets with.
    pub ip_reverse_dns_confirmed: Family<IpLabels, Gauge>,
    pub connections_in: Gauge,
    pub connections_out: Gauge,
    /// Seconds from acceptance to delivery, per delivered recipient.
    pub delivery_seconds: Histogram,
    pub queue_messages: Gauge,
    pub queue_oldest_seconds: Gauge,
    /// Reports received for the relay itself, by what they became (`bounce`, `complaint`).
    pub feedback: Family<ReasonLabels, Counter>,
    /// Reports kept in `feedback-unmatched/`, by why.
    pub feedback_unmatched: Family<ReasonLabels, Counter>,
    /// Recipients not attempted because they are on the suppression list.
    pub suppressed_recipients: Counter,
    registry: Registry,
}

impl Metrics {
    fn new() -> Self {
        let metrics = Self {
            accepted: Counter::default(),
            rejected: Family::default(),
            delivered: Family::default(),
            deferred: Family::default(),
            bounced: Family::default(),
            bind_failures: Family::default(),
            site_suspensions: Family::default(),
            ip_unbindable: Family::default(),
            ip_operator_suspended: Family::default(),
            ip_suspended_sites: Family::default(),
            ip_warmup_percentage: Family::default(),
            ip_reverse_dns_confirmed: Family::default(),
            connections_in: Gauge::default(),
            connections_out: Gauge::default(),
            delivery_seconds: Histogram::new(exponential_buckets(0.005, 4.0, 12)),
            queue_messages: Gauge::default(),
            queue_oldest_seconds: Gauge::default(),
            feedback: Family::default(),
            feedback_unmatched: Family::default(),
            suppressed_recipients: Counter::default(),
            registry: Registry::with_prefix("poolrelay"),
        };
        let mut registry = Registry::with_prefix("poolrelay");
        registry.register(
            "feedback_reports",
            "Bounces and complaints received and matched, by kind",
            metrics.feedback.clone(),
        );
        registry.register(
            "feedback_unmatched",
            "Reports that could not be read or matched (kept in spool/feedback-unmatched)",
            metrics.feedback_unmatched.clone(),
        );
        registry.register(
            "suppressed_recipients",
            "Recipients not attempted because they are on the suppression list",
            metrics.suppressed_recipients.clone(),
        );
        metrics.register_outcomes(&mut registry);
        metrics.register_ip_health(&mut registry);
        metrics.register_load(&mut registry);
        Self {
            registry,
            ..metrics
        }
    }

    /// Messages accepted and refused, recipients delivered, deferred and bounced, failed binds.
    fn register_outcomes(&self, registry: &mut Registry) {
        registry.register(
            "messages_accepted",
            "Messages accepted (250 after DATA)",
            self.accepted.clone(),
        );
        registry.register(
            "messages_rejected",
            "Messages refused after DATA, by reason",
            self.rejected.clone(),
        );
        registry.register(
            "recipients_delivered",
            "Recipients delivered, by pool and source IP",
            self.delivered.clone(),
        );
        registry.register(
            "recipients_deferred",
            "Recipient attempts deferred, by pool and source IP",
            self.deferred.clone(),
        );
        registry.register(
            "recipients_bounced",
            "Recipients failed permanently, by pool and source IP",
            self.bounced.clone(),
        );
        registry.register(
            "bind_failures",
            "Outbound binds that failed, by source IP",
            self.bind_failures.clone(),
        );
    }

    /// Per dedicated IP: suspensions, bindability and warm-up.
    fn register_ip_health(&self, registry: &mut Registry) {
        registry.register(
            "site_suspensions",
            "Times a site's reputation refusal suspended the IP for that site",
            self.site_suspensions.clone(),
        );
        registry.register(
            "ip_unbindable",
            "1 while the dedicated IP cannot be bound on this host (suspended for every site)",
            self.ip_unbindable.clone(),
        );
        registry.register(
            "ip_operator_suspended",
            "1 while an operator has suspended the dedicated IP",
            self.ip_operator_suspended.clone(),
        );
        registry.register(
            "ip_suspended_sites",
            "Sites for which the dedicated IP is suspended now",
            self.ip_suspended_sites.clone(),
        );
        registry.register(
            "ip_warmup_percentage",
            "Warm-up progress of the dedicated IP (SES WarmupPercentage)",
            self.ip_warmup_percentage.clone(),
        );
        registry.register(
            "ip_reverse_dns_confirmed",
            "1 when the dedicated IP's PTR name resolves back to it and is its EHLO name",
            self.ip_reverse_dns_confirmed.clone(),
        );
    }

    /// Open connections, delivery time and the queue.
    fn register_load(&self, registry: &mut Registry) {
        registry.register(
            "connections_in",
            "Open inbound SMTP sessions",
            self.connections_in.clone(),
        );
        registry.register(
            "connections_out",
            "Open outbound SMTP sessions",
            self.connections_out.clone(),
        );
        registry.register(
            "delivery_seconds",
            "Time from acceptance to delivery",
            self.delivery_seconds.clone(),
        );
        registry.register(
            "queue_messages",
            "Messages in the queue",
            self.queue_messages.clone(),
        );
        registry.register(
            "queue_oldest_seconds",
            "Age of the oldest queued message",
            self.queue_oldest_seconds.clone(),
        );
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Labels for an outcome.
pub fn outcome(pool: &str, source_ip: Option<std::net::IpAddr>) -> OutcomeLabels {
    OutcomeLabels {
        pool: pool.to_string(),
        source_ip: source_ip.map_or_else(|| "none".to_string(), |ip| ip.to_string()),
    }
}

/// Counts one open connection while it lives.
pub struct ConnectionGuard(&'static Gauge);

impl ConnectionGuard {
    pub fn inbound() -> Self {
        METRICS.connections_in.inc();
        Self(&METRICS.connections_in)
    }

    pub fn outbound() -> Self {
        METRICS.connections_out.inc();
        Self(&METRICS.connections_out)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
