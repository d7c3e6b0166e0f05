//! AUTH under attack: password checks take turns (memory stays flat however many clients try at
//! once), and a client address that keeps failing is refused across sessions.

use std::path::Path;

use crate::common::*;
use crate::tls::{b64, certificate, start_tls_client};

/// A relay config with TLS, one user, and the given extra `[smtp]` lines.
fn auth_config(dir: &Path, smtp_extra: &str) -> String {
    let files = certificate(dir, "relay.test");
    let hash = poolrelay::password::hash("right password").expect("hash");
    format!(
        r#"{}[smtp.tls]
cert = "{}"
key = "{}"
[[smtp.user]]
username = "app1"
password_hash = "{hash}"
"#,
        smtp_section(smtp_extra),
        files.cert.display(),
        files.key.display()
    )
}

/// The relay process's peak resident memory (VmHWM), in MiB.
fn peak_memory_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib / 1024
}

/// 48 TLS sessions send a wrong password at the same moment. Each argon2 check takes ~19 MiB;
/// before checks took turns, the relay grew from 12 MB to 947 MB. Every client gets its 535 and
/// the relay's peak memory stays under 150 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_password_checks_take_turns_and_memory_stays_flat() {
    let dir = tempfile::tempdir().unwrap();
    let config = auth_config(dir.path(), "auth_failures_per_ip = 1000\n");
    std::fs::write(dir.path().join("poolrelay.toml"), config).unwrap();
    let (mut relay, addr) = spawn_relay(dir.path());
    let mut clients = Vec::new();
    for _ in 0..48 {
        clients.push(start_tls_client(addr).await);
    }
    let mut attempts = tokio::task::JoinSet::new();
    for mut client in clients {
        attempts.spawn(async move {
            assert!(client.command("EHLO c.test").await.starts_with("250"));
            client
                .command(&format!("AUTH PLAIN {}", b64("\0app1\0wrong")))
                .await
        });
    }
    let mut refused = 0;
    while let Some(reply) = attempts.join_next().await {
        let reply = reply.expect("client task");
        assert!(reply.starts_with("535 5.7.8"), "{reply}");
        refused += 1;
    }
    assert_eq!(refused, 48);
    let peak = peak_memory_mib(relay.id());
    eprintln!("relay peak memory after 48 concurrent wrong passwords: {peak} MiB");
    relay.kill().unwrap();
    relay.wait().unwrap();
    assert!(peak < 150, "peak memory {peak} MiB");
}

/// After `auth_failures_per_ip` failures an address is refused without a check, in a new
/// session too (the per-session limit alone lets a client reconnect and go on guessing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_keeps_failing_is_refused_across_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let config = auth_config(dir.path(), "auth_failures_per_ip = 3\n");
    let relay = TestRelay::start_in(dir, &config).await;
    for _ in 0..3 {
        let mut client = start_tls_client(relay.addr).await;
        assert!(client.command("EHLO c.test").await.starts_with("250"));
        let reply = client
            .command(&format!("AUTH PLAIN {}", b64("\0app1\0wrong")))
            .await;
        assert!(reply.starts_with("535 5.7.8"), "{reply}");
    }
    let mut client = start_tls_client(relay.addr).await;
    assert!(client.command("EHLO c.test").await.starts_with("250"));
    let reply = client
        .command(&format!("AUTH PLAIN {}", b64("\0app1\0right password")))
        .await;
    assert!(
        reply.starts_with("421 4.7.0"),
        "even the right password: {reply}"
    );
    relay.stop().await;
}
