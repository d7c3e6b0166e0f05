//! What every inbound session shares.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::tls;
use crate::config::SmtpSettings;
use crate::events::EventLog;
use crate::queue::QueueHandle;
use crate::registry::Registry;
use crate::spool::Spool;

pub struct InboundContext {
    pub settings: SmtpSettings,
    pub registry: Arc<ArcSwap<Registry>>,
    pub spool: Spool,
    pub queue: QueueHandle,
    /// Cancelled when the relay shuts down: sessions say 421 and close.
    pub shutdown: CancellationToken,
    /// `queue.max_age`: how long mail of sets without `max_delivery_seconds` may take.
    pub max_age: std::time::Duration,
    pub events: Arc<EventLog>,
    /// Sessions per client address.
    pub per_ip: std::sync::Arc<super::per_ip::PerIpConnections>,
    /// Password checks: how many at once, and failures per client address.
    pub auth_limits: super::auth_limits::AuthLimits,
    /// The TLS identity, when `[smtp.tls]` is configured.
    pub tls: Option<Arc<tls::InboundTls>>,
    /// The relay's own feedback addresses (return paths, the feedback-loop address).
    pub feedback: Option<Arc<crate::feedback::intake::FeedbackIntake>>,
    /// The account's sending quota, shared by SMTP and the API.
    pub quota: Arc<super::quota::SendQuota>,
}
