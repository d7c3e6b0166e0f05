//! What delivery attempts share.

use std::sync::Arc;

use crate::config::QueueSettings;
use crate::events::EventLog;
use crate::outbound::Outbound;
use crate::spool::Spool;

/// What attempts share.
pub struct AttemptContext {
    pub outbound: Arc<Outbound>,
    pub spool: Spool,
    pub settings: QueueSettings,
    pub events: Arc<EventLog>,
    /// `smtp.hostname`: the Reporting-MTA of bounces.
    pub hostname: String,
    /// For each message's suppression reasons (its set's, or the account's).
    pub registry: Arc<arc_swap::ArcSwap<crate::registry::Registry>>,
    /// The suppression list (none in tools that run without a spool of their own).
    pub ledger: Option<crate::ledger::Ledger>,
    /// Records delivered messages for later bounces and complaints (with feedback on).
    pub sent: Option<crate::ledger::sent::SentRecorder>,
    /// In a fleet: the peers mail can be handed to.
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
}
