//! Crash safety with the real binary: SIGKILL while clients send, SIGKILL between the next hop's
//! acceptance and the relay's record of it, and a spool that cannot be written.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::sync::{Arc, Mutex};

use crate::common::*;

fn kill(child: &mut Child) {
    // SIGKILL: no shutdown code runs.
    child.kill().expect("kill");
    child.wait().expect("reaped");
}

fn write_config(dir: &Path, sink: SocketAddr) {
    std::fs::write(
        dir.join("poolrelay.toml"),
        format!(
            r#"{}{}[queue]
retry_interval = "200ms"
max_retry_interval = "200ms"
[[ip]]
address = "127.0.0.2"
"#,
            smtp_section(""),
            catch_all_route(sink)
        ),
    )
    .unwrap();
}

fn body(client: usize, n: usize) -> String {
    let filler = "0123456789abcdef".repeat(8 * (1 + n % 5));
    format!("Subject: crash {client}-{n}\r\n\r\n{filler}\r\nEND {client}-{n}\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_eight_clients_send_loses_nothing_acknowledged() {
    stop_while_eight_clients_send(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_eight_clients_send_loses_nothing_acknowledged() {
    stop_while_eight_clients_send(true).await;
}

fn terminate(child: &mut Child) {
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().expect("reaped");
    assert!(status.success(), "a clean exit after SIGTERM: {status}");
}

type Acknowledged = Arc<Mutex<BTreeSet<String>>>;

/// Eight clients sending until the relay goes away; each acknowledged message is recorded as
/// `client-n`. Client numbers start at `first_client` so runs against restarted relays differ.
fn eight_clients(
    addr: SocketAddr,
    first_client: usize,
    acknowledged: &Acknowledged,
) -> Vec<tokio::task::JoinHandle<()>> {
    (first_client..first_client + 8)
        .map(|client| {
            let acknowledged = acknowledged.clone();
            tokio::spawn(async move {
                let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                    return;
                };
                let mut session = RawClientLoose::new(stream);
                if !session.expect("220").await || !session.command("EHLO crash.test", "250").await
                {
                    return;
                }
                for n in 0.. {
                    let ok = session.command("MAIL FROM:<app@example.test>", "250").await
                        && session
                            .command(&format!("RCPT TO:<c{client}@example.test>"), "250")
                            .await
                        && session.command("DATA", "354").await
                        && session
                            .command(&format!("{}.", body(client, n)), "250")
                            .await;
                    if !ok {
                        return;
                    }
                    acknowledged.lock().unwrap().insert(format!("{client}-{n}"));
                }
            })
        })
        .collect()
}

/// Checks every message the sink received against the body its subject names (no truncated,
/// altered or mixed-up body) and every acknowledged message was delivered; returns (distinct
/// messages delivered, duplicates).
fn check_deliveries(
    received: &[poolrelay::sink::SinkMessage],
    acknowledged: &BTreeSet<String>,
) -> (usize, usize) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for message in received {
        let text = String::from_utf8_lossy(&message.content);
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("Subject: crash "))
            .unwrap_or_default()
            .to_string();
        let (client, n) = key.split_once('-').expect("a crash test message");
        let expected = body(client.parse().unwrap(), n.parse().unwrap());
        assert!(
            text.ends_with(&expected),
            "no truncated, altered or mixed-up body is delivered: {key}"
        );
        *seen.entry(key).or_default() += 1;
    }
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|k| !seen.contains_key(*k))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged but never delivered: {lost:?}"
    );
    (seen.len(), seen.values().map(|n| n - 1).sum())
}

async fn stop_while_eight_clients_send(graceful: bool) {
    let sink = start_sink().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), sink.addr());
    let (mut relay, addr) = spawn_relay(dir.path());

    let acknowledged: Acknowledged = Arc::default();
    let clients = eight_clients(addr, 0, &acknowledged);
    // Kill the relay once a good number of messages were acknowledged, with clients mid-send.
    eventually(|| (acknowledged.lock().unwrap().len() >= 150).then_some(()))
        .await
        .expect("messages flow");
    if graceful {
        terminate(&mut relay);
    } else {
        kill(&mut relay);
    }
    for client in clients {
        let _ = client.await;
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    // Restart on the same spool and let it drain.
    let (mut relay, _) = spawn_relay(dir.path());
    let spool = dir.path().join("var/spool");
    eventually(|| spool_files(&spool, "queue").is_empty().then_some(()))
        .await
        .expect("the spool drains after restart");
    let (distinct, duplicates) = check_deliveries(&sink.messages(), &acknowledged);
    let quarantined = spool_files(&spool, "quarantine").len();
    println!(
        "{} test: {} acknowledged, {distinct} distinct delivered, {duplicates} duplicates, {quarantined} quarantined (unacknowledged partials), 0 lost",
        if graceful { "SIGTERM" } else { "SIGKILL" },
        acknowledged.len(),
    );
    kill(&mut relay);
}

/// Twenty SIGKILLs at random moments (while clients send, while the relay delivers, right after
/// a start while it recovers), each followed by a restart on the same spool: nothing
/// acknowledged is lost, no body is damaged or mixed up, and the duplicates are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sigkills_at_random_moments_lose_nothing_acknowledged() {
    use rand::{Rng, SeedableRng};
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("CRASH_SEED={seed}");
    let mut random = rand::rngs::StdRng::seed_from_u64(seed);
    let sink = start_sink().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), sink.addr());
    let acknowledged: Acknowledged = Arc::default();
    for round in 0..20 {
        let (mut relay, addr) = spawn_relay(dir.path());
        let clients = eight_clients(addr, round * 8, &acknowledged);
        // Every fifth kill comes right after the start, during recovery and the first deliveries.
        let moment = if round % 5 == 4 {
            0
        } else {
            random.random_range(20..400)
        };
        tokio::time::sleep(std::time::Duration::from_millis(moment)).await;
        kill(&mut relay);
        for client in clients {
            let _ = client.await;
        }
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 100,
        "the relay accepted mail between kills: {}",
        acknowledged.len()
    );
    let (mut relay, _) = spawn_relay(dir.path());
    let spool = dir.path().join("var/spool");
    eventually(|| spool_files(&spool, "queue").is_empty().then_some(()))
        .await
        .expect("the spool drains after the last restart");
    let (distinct, duplicates) = check_deliveries(&sink.messages(), &acknowledged);
    println!(
        "20 SIGKILLs (seed {seed}): {} acknowledged, {distinct} distinct delivered, {duplicates} duplicates, {} quarantined, 0 lost",
        acknowledged.len(),
        spool_files(&spool, "quarantine").len()
    );
    kill(&mut relay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_after_the_next_hop_accepted_redelivers_after_restart() {
    let sink = start_sink().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), sink.addr());
    let (mut relay, addr) = spawn_relay(dir.path());
    // The sink records the message but holds its 250: the relay cannot know it was accepted.
    sink.hold_final_replies(true);
    let (mut client, _) = RawClient::connect(addr).await;
    client
        .send_accepted(
            "app@example.test",
            &["b@example.test"],
            b"Subject: twice\r\n\r\nonce\r\n.\r\n",
        )
        .await;
    assert_eq!(sink.wait_for(1, WAIT).await.len(), 1);
    kill(&mut relay);
    sink.hold_final_replies(false);

    let (mut relay, _) = spawn_relay(dir.path());
    let received = sink.wait_for(2, WAIT).await;
    assert_eq!(
        received.len(),
        2,
        "delivered again: a duplicate, never a loss"
    );
    assert_eq!(received[0].content, received[1].content);
    let spool = dir.path().join("var/spool");
    eventually(|| spool_files(&spool, "queue").is_empty().then_some(()))
        .await
        .expect("recorded the second time");
    kill(&mut relay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_spool_gets_451_and_never_250() {
    let sink = start_sink().await;
    let relay = TestRelay::start(&format!(
        "{}{}[[ip]]\naddress = \"127.0.0.2\"\n",
        smtp_section(""),
        catch_all_route(sink.addr())
    ))
    .await;
    // Replace the queue folder by a file: every write into it fails (even for root).
    let queue = relay.spool_dir().join("queue");
    std::fs::remove_dir(&queue).unwrap();
    std::fs::write(&queue, b"not a folder").unwrap();
    let (mut client, _) = RawClient::connect(relay.addr).await;
    let reply = client
        .send_message(
            "app@example.test",
            &["b@example.test"],
            b"Subject: nowhere\r\n\r\nx\r\n.\r\n",
        )
        .await;
    assert!(reply.starts_with("451 4.3.0"), "{reply}");
    // Put the folder back: the next message is accepted and delivered; the refused one is not.
    std::fs::remove_file(&queue).unwrap();
    std::fs::create_dir(&queue).unwrap();
    client
        .send_accepted(
            "app@example.test",
            &["b@example.test"],
            b"Subject: somewhere\r\n\r\nx\r\n.\r\n",
        )
        .await;
    let received = sink.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1);
    assert!(String::from_utf8_lossy(&received[0].content).contains("Subject: somewhere"));
    relay.stop().await;
}

/// A client that reports failure instead of panicking (the relay is killed under it).
struct RawClientLoose {
    stream: tokio::net::TcpStream,
    buffer: Vec<u8>,
}

impl RawClientLoose {
    fn new(stream: tokio::net::TcpStream) -> Self {
        Self {
            stream,
            buffer: Vec::new(),
        }
    }

    async fn expect(&mut self, code: &str) -> bool {
        use tokio::io::AsyncReadExt;
        loop {
            while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                if line.len() >= 4 && line[3] == b'-' {
                    continue;
                }
                return line.starts_with(code.as_bytes());
            }
            let mut chunk = [0u8; 1024];
            match tokio::time::timeout(WAIT, self.stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buffer.extend_from_slice(&chunk[..n]),
                _ => return false,
            }
        }
    }

    async fn command(&mut self, line: &str, code: &str) -> bool {
        use tokio::io::AsyncWriteExt;
        if self
            .stream
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .is_err()
        {
            return false;
        }
        self.expect(code).await
    }
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).ok()?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .ok()?;
        status.success().then(|| Self(at.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gets_452_and_never_250() {
    let sink = start_sink().await;
    let dir = tempfile::tempdir().unwrap();
    // Needs permission to mount (root in CI); without it there is no full disk to test against.
    let Some(_disk) = SmallDisk::mount(&dir.path().join("var/spool"), "512k") else {
        privilege_missing("mount a small file system (needs root)");
        return;
    };
    let text = format!(
        "{}{}[[ip]]\naddress = \"127.0.0.2\"\n",
        smtp_section(""),
        catch_all_route(sink.addr())
    );
    let relay = TestRelay::start_in(dir, &text).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    let big = "x".repeat(76) + "\r\n";
    let content = format!(
        "Subject: too big for the disk\r\n\r\n{}.\r\n",
        big.repeat(1024 * 1024 / 78)
    );
    let reply = client
        .send_message("app@example.test", &["b@example.test"], content.as_bytes())
        .await;
    assert!(reply.starts_with("452 4.3.1"), "{reply}");
    assert!(
        relay.spool_files("queue").is_empty(),
        "no half file left visible"
    );
    // Small mail still fits and goes through.
    client
        .send_accepted(
            "app@example.test",
            &["b@example.test"],
            b"Subject: small\r\n\r\nx\r\n.\r\n",
        )
        .await;
    assert_eq!(sink.wait_for(1, WAIT).await.len(), 1);
    let dir = relay.stop().await;
    drop(_disk);
    drop(dir);
}
