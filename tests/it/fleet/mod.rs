//! Fleet mode: several relays sharing one model through a real `redis-server` started here on a
//! free loopback port, each relay with its own folder, spool, admin socket and IPs.

pub mod failures;
mod limits;
mod model;
mod nodes;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::*;

/// A `redis-server` of this test: no persistence, its own folder, killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// A free loopback port (taken from the kernel, then released for the caller to bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

impl RedisServer {
    /// Starts one, or says the machine has none (a failure under CI).
    pub async fn start() -> Option<Self> {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !found {
            privilege_missing("run redis-server (Debian package redis-server)");
            return None;
        }
        let mut server = Self {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        server.run().await;
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server (again, on the same port) and waits until it answers PING.
    pub async fn run(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let port = self.port;
        let ready = eventually_async(|| async move { ping(port).await.then_some(()) }).await;
        assert!(ready.is_some(), "redis-server answers PING on port {port}");
    }

    /// Kills the server (as a crash would: no goodbye to clients).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn ping(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").await.is_ok()
        && stream.read_exact(&mut reply).await.is_ok()
        && &reply == b"+PONG\r\n"
}

/// A Redis, a sink every node routes to, and the folder with the shared key: what each test of
/// a fleet starts with.
pub struct TestFleet {
    pub redis: RedisServer,
    pub sink: poolrelay::sink::Sink,
    pub shared: tempfile::TempDir,
}

impl TestFleet {
    /// `None` (after saying why) when the machine has no redis-server.
    pub async fn start() -> Option<Self> {
        let redis = RedisServer::start().await?;
        Some(Self {
            redis,
            sink: start_sink().await,
            shared: tempfile::tempdir().expect("temp dir"),
        })
    }

    /// A node's config file (see [`node_config`]).
    pub fn config(&self, name: &str, ips: &[(&str, Option<&str>)], extra: &str) -> String {
        node_config(
            name,
            &self.redis.url(),
            self.shared.path(),
            self.sink.addr(),
            ips,
            extra,
        )
    }

    /// A node running in this process.
    pub async fn node(&self, name: &str, ips: &[(&str, Option<&str>)], extra: &str) -> TestRelay {
        TestRelay::start(&self.config(name, ips, extra)).await
    }
}

/// One node's config file: SMTP on a free port, its admin socket, `[cluster]` with the shared
/// secret in `shared`, its IPs (address, pool), every domain routed to `sink`, retries 1 s apart,
/// and `extra` (pools, sets, shaping...) at the end.
pub fn node_config(
    name: &str,
    redis: &str,
    shared: &Path,
    sink: SocketAddr,
    ips: &[(&str, Option<&str>)],
    extra: &str,
) -> String {
    let forward = free_port();
    let mut text = format!(
        r#"{}{}[queue]
retry_interval = "1s"
[admin]
socket = "var/admin.sock"
[events]
path = "var/events.jsonl"
[cluster]
redis = "{redis}"
node = "{name}"
forward_listen = "127.0.0.1:{forward}"
secret_file = "{}"
"#,
        smtp_section(""),
        catch_all_route(sink),
        shared.join("fleet.key").display()
    );
    for (address, pool) in ips {
        text.push_str(&format!("[[ip]]\naddress = \"{address}\"\n"));
        if let Some(pool) = pool {
            text.push_str(&format!("pool = \"{pool}\"\n"));
        }
    }
    text.push_str(extra);
    text
}

/// A node's admin socket.
pub fn admin_socket(node: &TestRelay) -> PathBuf {
    node.dir.path().join("var/admin.sock")
}

/// The subjects of messages at the sink, by the source IP they came from.
pub fn subjects_by_source(
    messages: &[poolrelay::sink::SinkMessage],
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut by_source: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for message in messages {
        let text = String::from_utf8_lossy(&message.content);
        let subject = text
            .lines()
            .find_map(|line| line.strip_prefix("Subject: "))
            .unwrap_or_default()
            .to_string();
        by_source
            .entry(message.peer.ip().to_string())
            .or_default()
            .push(subject);
    }
    by_source
}
