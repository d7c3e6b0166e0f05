//! What the sink's sessions and its handle share: the records of what arrived, the counts, and
//! the behaviour the tests ask for (refusals, delays, held replies).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::smtp::data::Violation;

/// One message as the sink received it.
#[derive(Debug, Clone)]
pub struct SinkMessage {
    /// The connection's peer address: its IP is the source address the relay used.
    pub peer: SocketAddr,
    pub helo: String,
    pub sender: String,
    pub recipients: Vec<String>,
    pub content: Vec<u8>,
    /// Set when the content broke the CRLF rules (the message is recorded anyway).
    pub violation: Option<Violation>,
    /// The message came over TLS (STARTTLS).
    pub tls: bool,
}

/// One RCPT command as the sink answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptAttempt {
    pub peer: SocketAddr,
    pub recipient: String,
    pub code: u16,
    pub at: std::time::Instant,
}

#[derive(Default)]
pub(super) struct Shared {
    /// False for benchmarks: only the counts are kept.
    pub(super) keep_messages: bool,
    /// With a TLS identity the sink offers STARTTLS.
    pub(super) tls: Option<tokio_rustls::TlsAcceptor>,
    /// While set, the reply to the end of DATA is held back (the message is recorded first).
    pub(super) hold_replies: std::sync::atomic::AtomicBool,
    pub(super) released: Notify,
    pub(super) counts: Mutex<SinkCounts>,
    pub(super) messages: Mutex<Vec<SinkMessage>>,
    pub(super) rcpt_attempts: Mutex<Vec<RcptAttempt>>,
    pub(super) connections: Mutex<Vec<SocketAddr>>,
    pub(super) arrived: Notify,
    /// Source IPs this sink refuses, and how.
    pub(super) refusals: Mutex<HashMap<IpAddr, Refusal>>,
    /// Open connections per source IP: (now, most at once).
    pub(super) open: Mutex<HashMap<IpAddr, (u32, u32)>>,
    /// Wait this long before the reply to the end of DATA (makes connections overlap).
    pub(super) final_reply_delay: Mutex<Duration>,
}

/// How the sink refuses a source IP, as a receiver refusing it for its reputation would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Refuse the connection at the greeting (then close) instead of at each RCPT.
    pub at_greeting: bool,
    /// The whole reply line, e.g. `554 5.7.1 Client host blocked using zen.spamhaus.org`.
    pub reply: String,
}

/// Counts a connection as open while it lives.
pub(super) struct OpenGuard {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl OpenGuard {
    pub(super) fn new(shared: Arc<Shared>, ip: IpAddr) -> Self {
        {
            let mut open = shared.open.lock();
            let entry = open.entry(ip).or_default();
            entry.0 += 1;
            entry.1 = entry.1.max(entry.0);
        }
        Self { shared, ip }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let mut open = self.shared.open.lock();
        if let Some(entry) = open.get_mut(&self.ip) {
            entry.0 = entry.0.saturating_sub(1);
        }
    }
}

/// Messages received, per source IP, how many broke the CRLF rules and how many carry a
/// `DKIM-Signature` field (for the signing benchmarks).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SinkCounts {
    pub messages: u64,
    pub per_ip: std::collections::BTreeMap<std::net::IpAddr, u64>,
    pub not_clean: u64,
    pub dkim_signed: u64,
}
