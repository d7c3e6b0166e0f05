//! A recording SMTP sink: the far end for the demo and the tests.
//!
//! It accepts mail on a loopback address and records, for every message, the peer address the
//! connection came from (the source IP poolrelay bound), the envelope and the exact content.
//! It reads DATA strictly (bare CR/LF refused), so anything poolrelay sends that is not clean
//! CRLF shows up as a recorded violation.
//!
//! Recipients can ask for failures by their local part: `tempfail...` gets `451` at RCPT,
//! `reject...` gets `550` at RCPT. That is enough to exercise per-recipient outcomes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod session;
mod shared;

use session::serve;
use shared::{OpenGuard, Shared};
pub use shared::{RcptAttempt, Refusal, SinkCounts, SinkMessage};

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
