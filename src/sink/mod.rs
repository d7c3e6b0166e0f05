//! A recording SMTP sink: the far end for the demo and the tests.
//!
//! It accepts mail on a loopback address and records, for every message, the peer address the
//! connection came from (the source IP poolrelay bound), the envelope and the exact content.
//! It reads DATA strictly (bare CR/LF refused), so anything poolrelay sends that is not clean
//! CRLF shows up as a recorded violation.
//!
//! Recipients can ask for failures by their local part: `tempfail...` gets `451` at RCPT,
//! `reject...` gets `550` at RCPT. That is enough to exercise per-recipient outcomes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::smtp::data::Violation;

mod session;
use session::serve;

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
struct Shared {
    /// False for benchmarks: only the counts are kept.
    keep_messages: bool,
    /// With a TLS identity the sink offers STARTTLS.
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// While set, the reply to the end of DATA is held back (the message is recorded first).
    hold_replies: std::sync::atomic::AtomicBool,
    released: Notify,
    counts: Mutex<SinkCounts>,
    messages: Mutex<Vec<SinkMessage>>,
    rcpt_attempts: Mutex<Vec<RcptAttempt>>,
    connections: Mutex<Vec<SocketAddr>>,
    arrived: Notify,
    /// Source IPs this sink refuses, and how.
    refusals: Mutex<HashMap<IpAddr, Refusal>>,
    /// Open connections per source IP: (now, most at once).
    open: Mutex<HashMap<IpAddr, (u32, u32)>>,
    /// Wait this long before the reply to the end of DATA (makes connections overlap).
    final_reply_delay: Mutex<Duration>,
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
    fn new(shared: Arc<Shared>, ip: IpAddr) -> Self {
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

/// Messages received, per source IP, and how many broke the CRLF rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SinkCounts {
    pub messages: u64,
    pub per_ip: std::collections::BTreeMap<std::net::IpAddr, u64>,
    pub not_clean: u64,
}

/// A running sink; stops when dropped.
pub struct Sink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Sink {
    /// Starts a sink on `addr` (port 0 picks a free port) that records every message.
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        Self::start_with(addr, true).await
    }

    /// Starts a sink that keeps only counts (for benchmarks) unless `keep_messages`.
    pub async fn start_with(addr: SocketAddr, keep_messages: bool) -> std::io::Result<Self> {
        Self::start_full(addr, keep_messages, None).await
    }

    /// Starts a recording sink that offers STARTTLS with a self-signed certificate made now.
    pub async fn start_with_self_signed_tls(addr: SocketAddr) -> std::io::Result<Self> {
        let generated = rcgen::generate_simple_self_signed(vec!["sink.poolrelay.test".to_string()])
            .map_err(std::io::Error::other)?;
        let cert = rustls::pki_types::CertificateDer::from(generated.cert.der().to_vec());
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(std::io::Error::other)?;
        Self::start_tls(addr, Arc::new(config)).await
    }

    /// Starts a recording sink that offers STARTTLS with `tls`.
    pub async fn start_tls(
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<Self> {
        Self::start_full(addr, true, Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn start_full(
        addr: SocketAddr,
        keep_messages: bool,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            keep_messages,
            tls,
            ..Shared::default()
        });
        let stop = CancellationToken::new();
        let accept_shared = shared.clone();
        let accept_stop = stop.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = accept_stop.cancelled() => break,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, peer)) = accepted else {
                    continue;
                };
                accept_shared.connections.lock().push(peer);
                let shared = accept_shared.clone();
                let stop = accept_stop.clone();
                tokio::spawn(async move {
                    let open = OpenGuard::new(shared.clone(), peer.ip());
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = serve(stream, peer, shared, open) => {}
                    }
                });
            }
        });
        Ok(Self { addr, shared, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Holds back (or releases) the `250` after DATA: the message is recorded, but the relay
    /// does not learn that it was accepted. For crash tests.
    pub fn hold_final_replies(&self, hold: bool) {
        self.shared
            .hold_replies
            .store(hold, std::sync::atomic::Ordering::SeqCst);
        if !hold {
            self.shared.released.notify_waiters();
        }
    }

    /// Refuses mail from `source` (`None`: accepts it again).
    pub fn refuse(&self, source: IpAddr, refusal: Option<Refusal>) {
        let mut refusals = self.shared.refusals.lock();
        match refusal {
            Some(refusal) => refusals.insert(source, refusal),
            None => refusals.remove(&source),
        };
    }

    /// Delays every reply to the end of DATA by `delay`.
    pub fn delay_final_replies(&self, delay: Duration) {
        *self.shared.final_reply_delay.lock() = delay;
    }

    /// The most connections that were open at once, per source IP.
    pub fn peak_connections(&self) -> std::collections::BTreeMap<IpAddr, u32> {
        self.shared
            .open
            .lock()
            .iter()
            .map(|(ip, (_, peak))| (*ip, *peak))
            .collect()
    }

    /// Counts of what arrived so far.
    pub fn counts(&self) -> SinkCounts {
        self.shared.counts.lock().clone()
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<SinkMessage> {
        self.shared.messages.lock().clone()
    }

    /// Peer addresses of every connection accepted so far.
    pub fn connections(&self) -> Vec<SocketAddr> {
        self.shared.connections.lock().clone()
    }

    /// Every RCPT command seen so far, with the code the sink answered.
    pub fn rcpt_attempts(&self) -> Vec<RcptAttempt> {
        self.shared.rcpt_attempts.lock().clone()
    }

    /// Waits until at least `count` RCPT commands have been answered, or `timeout` passes.
    pub async fn wait_for_rcpt_attempts(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Vec<RcptAttempt> {
        self.wait_until(count, timeout, Self::rcpt_attempts).await
    }

    /// Waits until at least `count` messages have arrived, or `timeout` passes; returns what
    /// arrived either way.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<SinkMessage> {
        self.wait_until(count, timeout, Self::messages).await
    }

    /// Re-reads `list` each time the sink records something, until it has `count` entries.
    async fn wait_until<T>(
        &self,
        count: usize,
        timeout: Duration,
        list: fn(&Self) -> Vec<T>,
    ) -> Vec<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.arrived.notified();
            let current = list(self);
            if current.len() >= count || tokio::time::timeout_at(deadline, notified).await.is_err()
            {
                return if current.len() >= count {
                    current
                } else {
                    list(self)
                };
            }
        }
    }
}
