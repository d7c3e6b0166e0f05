//! Recovery benchmark: a spool holding MESSAGES queued messages (1 million by default), then the
//! release binary started on it. Reports how long the relay takes to accept mail again, its
//! memory when it is ready, and whether delivery resumes in order of arrival per pool.
//!
//!     cargo build --release && cargo bench --bench recovery -- [MESSAGES] [--keep DIR]
//!
//! 1. Fill: MESSAGES messages of 2 KB, alternating two configuration sets (pool_a, pool_b), are
//!    committed through the spool's own writer by 64 concurrent tasks (group commit, as the
//!    relay does), each numbered in order of arrival in its subject.
//! 2. The page cache is dropped (when the machine lets us), so recovery reads from disk.
//! 3. `target/release/poolrelay serve` starts on that spool with a sink as next hop; the time to
//!    its first accepted connection, and its VmRSS/VmHWM then, are reported.
//! 4. The first 20,000 deliveries are checked per source IP (pool): how far a message came out
//!    of its order of arrival (concurrent deliveries overtake each other a little).
//!
//! Loopback only. Needs a few GB of disk for a million messages (2.5 KB each in segments).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use poolrelay::spool::{Envelope, Recipient, Spool, new_message_id, unix_now};

const CONCURRENT_WRITERS: u64 = 64;
const CHECKED_DELIVERIES: usize = 20_000;
/// The relay's `max_concurrent_deliveries` in this bench: deliveries in flight overtake each
/// other by up to about this many places.
const CONCURRENT_DELIVERIES: usize = 64;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let messages: u64 = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let keep = args
        .iter()
        .position(|a| a == "--keep")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/poolrelay");
    if !binary.exists() {
        return Err("build the relay first: cargo build --release".into());
    }
    let scratch = tempfile::tempdir()?;
    let dir = keep.unwrap_or_else(|| scratch.path().to_path_buf());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let spool_dir = dir.join("spool");
        let began = Instant::now();
        fill(&spool_dir, messages).await?;
        let took = began.elapsed().as_secs_f64();
        let bytes = folder_bytes(&spool_dir.join("queue"))?;
        println!(
            "filled: {messages} messages in {took:.1} s ({:.0} msg/s), {:.2} GB in segments",
            messages as f64 / took,
            bytes as f64 / 1e9
        );
        let cold = std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok();
        println!(
            "page cache: {}",
            if cold {
                "dropped (recovery reads from disk)"
            } else {
                "not dropped (no permission): recovery reads from the page cache"
            }
        );
        restart_and_watch(&binary, &dir, messages).await
    })
}

/// Commits `messages` messages into a new spool at `spool_dir`.
async fn fill(spool_dir: &Path, messages: u64) -> Result<(), Box<dyn std::error::Error>> {
    let spool = Spool::open(spool_dir)?;
    let next = Arc::new(std::sync::Mutex::new(0u64));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENT_WRITERS {
        let (spool, next, done) = (spool.clone(), next.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                // The number and the id together, so the id order is the number order.
                let (n, id) = {
                    let mut next = next.lock().expect("not poisoned");
                    if *next >= messages {
                        return Ok::<(), std::io::Error>(());
                    }
                    *next += 1;
                    (*next - 1, new_message_id())
                };
                let pool = if n % 2 == 0 { "pool_a" } else { "pool_b" };
                let mut writer = spool.writer();
                let content = message(n, pool);
                writer.buffer().extend_from_slice(content.as_bytes());
                let envelope = Envelope {
                    id,
                    received_at: unix_now(),
                    sender: "app@example.test".into(),
                    recipients: vec![Recipient::new(format!("user{n}@example.test"))],
                    pool: pool.into(),
                    client_ip: "127.0.0.1".parse().expect("an address"),
                    client_helo: "bench".into(),
                    size: writer.size(),
                    expires_at: unix_now() + 86_400,
                    ..Envelope::default()
                };
                writer.commit(envelope).await?;
                let count = done.fetch_add(1, Ordering::Relaxed) + 1;
                if count % 100_000 == 0 {
                    eprintln!("fill: {count}/{messages}");
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    spool.settle().await;
    Ok(())
}

fn message(n: u64, pool: &str) -> String {
    let filler = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n";
    format!(
        "Subject: recovery {n}\r\nX-Bench-Pool: {pool}\r\n\r\n{}",
        filler.repeat(2048 / filler.len())
    )
}

fn folder_bytes(folder: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(folder)? {
        total += entry?.metadata()?.len();
    }
    Ok(total)
}

/// Starts the relay on the filled spool and reports readiness, memory and delivery order.
async fn restart_and_watch(
    binary: &Path,
    dir: &Path,
    messages: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let sink_addr = free_port()?;
    let sink = poolrelay::sink::Sink::start(sink_addr).await?;
    let listen = free_port()?;
    std::fs::write(dir.join("relay.toml"), config(listen, sink_addr))?;
    let began = Instant::now();
    let mut relay = std::process::Command::new(binary)
        .args(["serve", "--config"])
        .arg(dir.join("relay.toml"))
        .env("RUST_LOG", "warn")
        .spawn()?;
    let ready = loop {
        if tokio::net::TcpStream::connect(listen).await.is_ok() {
            break began.elapsed();
        }
        if began.elapsed() > Duration::from_secs(600) {
            let _ = relay.kill();
            return Err("the relay did not start within 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let memory = memory_of(relay.id());
    println!(
        "ready: accepting mail {:.2} s after start with {messages} messages recovered; {memory}",
        ready.as_secs_f64()
    );
    let want = CHECKED_DELIVERIES.min(messages as usize);
    let delivered = sink.wait_for(want, Duration::from_secs(600)).await;
    let first = began.elapsed();
    println!(
        "delivered: first {} messages {:.2} s after start ({:.0} msg/s after ready)",
        delivered.len(),
        first.as_secs_f64(),
        delivered.len() as f64 / (first - ready).as_secs_f64()
    );
    report_order(&delivered);
    let _ = relay.kill();
    let _ = relay.wait();
    Ok(())
}

/// Per source IP: how many deliveries came before one that arrived earlier, and how far.
fn report_order(delivered: &[poolrelay::sink::SinkMessage]) {
    let mut per_ip: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for message in delivered {
        let text = String::from_utf8_lossy(&message.content);
        if let Some(n) = text
            .lines()
            .find_map(|l| l.strip_prefix("Subject: recovery "))
            .and_then(|n| n.trim().parse().ok())
        {
            per_ip
                .entry(message.peer.ip().to_string())
                .or_default()
                .push(n);
        }
    }
    for (ip, numbers) in per_ip {
        let mut sorted = numbers.clone();
        sorted.sort_unstable();
        let mut distances: Vec<usize> = numbers
            .iter()
            .enumerate()
            .map(|(at, n)| at.abs_diff(sorted.binary_search(n).unwrap_or(at)))
            .collect();
        if std::env::var_os("RECOVERY_DEBUG").is_some() {
            let late: Vec<(usize, u64)> = numbers
                .iter()
                .enumerate()
                .filter(|(at, _)| distances[*at] > 2 * CONCURRENT_DELIVERIES)
                .map(|(at, n)| (at, *n))
                .take(20)
                .collect();
            eprintln!("{ip}: out of place (position, number): {late:?}");
        }
        let far = distances
            .iter()
            .filter(|d| **d > 2 * CONCURRENT_DELIVERIES)
            .count();
        distances.sort_unstable();
        let p99 = distances[distances.len() * 99 / 100];
        let displacement = distances.last().copied().unwrap_or(0);
        let pools: std::collections::BTreeSet<u64> = numbers.iter().map(|n| n % 2).collect();
        println!(
            "order from {ip}: {} messages, numbers {}..={}, one pool: {}, distance from arrival order: p99 {p99}, max {displacement} places, {far} more than {} places",
            numbers.len(),
            sorted.first().unwrap_or(&0),
            sorted.last().unwrap_or(&0),
            pools.len() == 1,
            2 * CONCURRENT_DELIVERIES
        );
    }
}

fn memory_of(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    format!("VmRSS {}, VmHWM {}", field("VmRSS:"), field("VmHWM:"))
}

fn free_port() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// The benches' relay config (`benches/two-pools.toml.in`) with this bench's addresses.
fn config(listen: SocketAddr, sink: SocketAddr) -> String {
    let text = include_str!("two-pools.toml.in")
        .replace("LISTEN", &listen.to_string())
        .replace("SINK", &sink.to_string())
        .replace("SPOOL", "spool");
    format!("{text}[queue]\nmax_concurrent_deliveries = {CONCURRENT_DELIVERIES}\n")
}
