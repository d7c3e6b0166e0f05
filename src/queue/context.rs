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
}
