//! `poolrelay load`: a load generator for any SMTP relay (poolrelay, Postfix, ...).
//!
//! N concurrent sessions send `messages` messages of `size` bytes, each reusing its connection
//! (or opening one per message), with a chosen `X-SES-CONFIGURATION-SET` (several sets are used in
//! turn). It counts replies, prints a progress line every second on stderr, and at the end
//! reports messages per second and the latency from MAIL to the final 250 (p50, p99, max).
//! With `api`, the same messages go to the SESv2 API as signed SendEmail requests instead
//! (see `load_api`), latency measured from request to answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::load_api::{ApiClient, ApiCredentials};
use crate::outbound::client::{Content, MailRequest, SmtpClient, Timeouts};
use crate::outbound::connect::connect_from;

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub target: SocketAddr,
    pub connections: usize,
    pub messages: usize,
    pub size: usize,
    /// Used in turn, message by message; empty: no header.
    pub configuration_sets: Vec<String>,
    pub connection_per_message: bool,
    pub recipient_domain: String,
    /// Send through the SESv2 API at `target` with this key instead of SMTP.
    pub api: Option<ApiCredentials>,
}

/// What happened.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    pub messages: usize,
    pub accepted: usize,
    pub refused: usize,
    pub errors: usize,
    pub seconds: f64,
    pub accepted_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The message for number `n`: headers, then filler lines up to `size` bytes.
pub fn sample_message(
    n: usize,
    size: usize,
    configuration_set: Option<&str>,
    domain: &str,
) -> Vec<u8> {
    let mut message = format!(
        "From: Load <load@{domain}>\r\nTo: <user{n}@{domain}>\r\nSubject: load test message {n}\r\nMessage-ID: <load-{n}@{domain}>\r\n"
    );
    if let Some(set) = configuration_set {
        message.push_str(&format!("X-SES-CONFIGURATION-SET: {set}\r\n"));
    }
    message.push_str("\r\n");
    let mut bytes = message.into_bytes();
    let line =
        b"The quick brown fox jumps over the lazy dog while the relay keeps its promises.\r\n";
    while bytes.len() + line.len() <= size {
        bytes.extend_from_slice(line);
    }
    if bytes.len() + 2 < size {
        bytes.resize(size - 2, b'x');
        bytes.extend_from_slice(b"\r\n");
    }
    bytes
}

#[derive(Default)]
struct Counters {
    next: AtomicUsize,
    accepted: AtomicUsize,
    refused: AtomicUsize,
    errors: AtomicUsize,
}

async fn open(target: SocketAddr) -> anyhow::Result<SmtpClient> {
    let stream = connect_from(None, target, Duration::from_secs(10)).await?;
    Ok(SmtpClient::open(
        stream,
        None,
        "load.poolrelay.test",
        "relay",
        None,
        Timeouts::default(),
    )
    .await?)
}

/// One open connection: an SMTP session, or keep-alive HTTP to the SESv2 API.
enum Door {
    /// Boxed: an SMTP client is several times the size of the API's.
    Smtp(Box<SmtpClient>),
    Api(ApiClient),
}

impl Door {
    async fn open(plan: &LoadPlan) -> anyhow::Result<Self> {
        Ok(match plan.api {
            Some(_) => Door::Api(ApiClient::open(plan.target).await?),
            None => Door::Smtp(Box::new(open(plan.target).await?)),
        })
    }

    /// Sends message `n`: `Ok(true)` accepted, `Ok(false)` refused, `Err` the connection failed.
    async fn send(&mut self, plan: &LoadPlan, n: usize) -> anyhow::Result<bool> {
        let set = (!plan.configuration_sets.is_empty())
            .then(|| plan.configuration_sets[n % plan.configuration_sets.len()].as_str());
        let recipient = format!("user{n}@{}", plan.recipient_domain);
        match (self, &plan.api) {
            (Door::Api(client), Some(credentials)) => {
                // The set travels as ConfigurationSetName, not as a header.
                let content = sample_message(n, plan.size, None, &plan.recipient_domain);
                client.send(credentials, &content, &recipient, set).await
            }
            (Door::Smtp(client), _) => {
                let content = sample_message(n, plan.size, set, &plan.recipient_domain);
                let recipients = [recipient];
                let request = MailRequest {
                    sender: "load@poolrelay.test",
                    recipients: &recipients,
                    size: content.len() as u64,
                    eight_bit_mime: false,
                    smtputf8: false,
                };
                let outcome = client.send(&request, Content::Memory(&content)).await?;
                let first = outcome.replies.first();
                if !first.is_some_and(|r| r.is_positive()) {
                    tracing::debug!(reply = ?first, "refused");
                }
                Ok(first.is_some_and(|r| r.is_positive()))
            }
            (Door::Api(_), None) => Err(anyhow::anyhow!("an API connection without a key")),
        }
    }

    async fn close(self) {
        if let Door::Smtp(client) = self {
            client.quit().await;
        }
    }
}

async fn session(plan: Arc<LoadPlan>, counters: Arc<Counters>) -> Vec<u32> {
    let mut latencies = Vec::new();
    let mut door: Option<Door> = None;
    loop {
        let n = counters.next.fetch_add(1, Ordering::Relaxed);
        if n >= plan.messages {
            break;
        }
        if door.is_none() {
            match Door::open(&plan).await {
                Ok(opened) => door = Some(opened),
                Err(error) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%error, "connect failed");
                    continue;
                }
            }
        }
        let Some(active) = door.as_mut() else {
            continue;
        };
        let started = Instant::now();
        match active.send(&plan, n).await {
            Ok(true) => {
                latencies.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                counters.accepted.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {
                counters.refused.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::debug!(%error, "session failed");
                counters.errors.fetch_add(1, Ordering::Relaxed);
                door = None;
                continue;
            }
        }
        if plan.connection_per_message
            && let Some(done) = door.take()
        {
            done.close().await;
        }
    }
    if let Some(done) = door {
        done.close().await;
    }
    latencies
}

fn percentile(sorted: &[u32], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    f64::from(sorted[index.min(sorted.len() - 1)]) / 1000.0
}

/// Runs the plan, printing progress on stderr when `progress` is set.
pub async fn run(plan: LoadPlan, progress: bool) -> LoadReport {
    let plan = Arc::new(plan);
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..plan.connections.max(1) {
        tasks.spawn(session(plan.clone(), counters.clone()));
    }
    let reporter = progress.then(|| {
        let counters = counters.clone();
        let total = plan.messages;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let done = counters.accepted.load(Ordering::Relaxed);
                let failed = counters.refused.load(Ordering::Relaxed)
                    + counters.errors.load(Ordering::Relaxed);
                let seconds = started.elapsed().as_secs_f64();
                eprintln!(
                    "load: {done}/{total} accepted, {failed} failed, {:.0} msg/s, {seconds:.0}s",
                    done as f64 / seconds
                );
            }
        })
    });
    let mut latencies = Vec::with_capacity(plan.messages);
    while let Some(joined) = tasks.join_next().await {
        if let Ok(mut part) = joined {
            latencies.append(&mut part);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(reporter) = reporter {
        reporter.abort();
    }
    latencies.sort_unstable();
    let accepted = counters.accepted.load(Ordering::Relaxed);
    LoadReport {
        messages: plan.messages,
        accepted,
        refused: counters.refused.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        seconds,
        accepted_per_second: accepted as f64 / seconds,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().map_or(0.0, |&l| f64::from(l) / 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_messages_have_the_requested_size() {
        for size in [0, 200, 2048, 100 * 1024] {
            let message = sample_message(7, size, Some("promo"), "example.test");
            assert!(
                message.len() == size || (size < 200 && message.len() < 200),
                "{size}: {}",
                message.len()
            );
            assert!(message.ends_with(b"\r\n"));
            assert!(
                message
                    .windows(2)
                    .filter(|w| w[1] == b'\n')
                    .all(|w| w[0] == b'\r')
            );
        }
    }

    #[test]
    fn percentiles() {
        let sorted: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentile(&sorted, 0.5), 51.0);
        assert_eq!(percentile(&sorted, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
