//! Shared pieces for the black-box tests: a relay on loopback with a real config file and spool,
//! a recording sink, a raw SMTP client for byte-exact protocol tests, and Python's smtplib as an
//! independent real client.

pub mod dns;
pub mod http;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use poolrelay::config;
use poolrelay::server::Relay;
use poolrelay::sink::Sink;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const WAIT: Duration = Duration::from_secs(20);

/// A relay running in this process with its own folder (config file + spool).
pub struct TestRelay {
    pub relay: Option<Relay>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

/// The `[smtp]` table with a free port; `extra` lines are appended to it.
pub fn smtp_section(extra: &str) -> String {
    format!(
        r#"[smtp]
listen = ["127.0.0.1:0"]
hostname = "relay.test"
{extra}
"#
    )
}

/// A route sending every domain to `next_hop`.
pub fn catch_all_route(next_hop: SocketAddr) -> String {
    format!(
        r#"[[route]]
domain = "*"
next_hop = "{next_hop}"
"#
    )
}

/// A relay config whose mail waits: the only next hop is a port nothing listens on (until the
/// test starts a sink there, see the address returned), retries an hour apart, one IP.
pub async fn config_with_next_hop_down() -> (String, SocketAddr) {
    // Take a free port from a sink, then stop that sink.
    let next_hop = start_sink().await.addr();
    let config = format!(
        "{}{}[queue]\nretry_interval = \"1h\"\n[[ip]]\naddress = \"127.0.0.2\"\n",
        smtp_section(""),
        catch_all_route(next_hop)
    );
    (config, next_hop)
}

impl TestRelay {
    /// Writes `toml` to `<dir>/poolrelay.toml` (spool in `<dir>/var/spool`) and starts the relay.
    pub async fn start(toml: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, toml).await
    }

    pub async fn start_in(dir: tempfile::TempDir, toml: &str) -> Self {
        // RUST_LOG=debug shows the relay's log in a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let path = dir.path().join("poolrelay.toml");
        std::fs::write(&path, toml).expect("write config");
        let config = config::load(&path).unwrap_or_else(|errors| panic!("{errors}"));
        let relay = Relay::start(config).await.expect("relay starts");
        let addr = relay.smtp_addrs()[0];
        Self {
            relay: Some(relay),
            addr,
            dir,
        }
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.dir.path().join("var/spool")
    }

    /// Files in a spool subfolder (`queue`, `quarantine`, `tmp`).
    pub fn spool_files(&self, sub: &str) -> Vec<String> {
        spool_files(&self.spool_dir(), sub)
    }

    /// Stops the relay and hands back its folder (to restart on the same spool).
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(relay) = self.relay.take() {
            relay.shutdown().await;
        }
        self.dir
    }
}

/// The messages queued in the spool at `spool`, with their latest envelopes (read-only; the
/// relay may be running).
pub fn queued_envelopes(spool: &Path) -> Vec<poolrelay::spool::Envelope> {
    poolrelay::spool::queued(&spool.join("queue")).unwrap_or_default()
}

pub fn spool_files(spool: &Path, sub: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(spool.join(sub))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Polls `check` until it returns `Some` or `WAIT` passes. A readiness check for state the relay
/// only exposes through files (the spool), not a fixed sleep.
pub async fn eventually<T>(mut check: impl FnMut() -> Option<T>) -> Option<T> {
    eventually_async(move || std::future::ready(check())).await
}

/// [`eventually`] for checks that have to wait themselves (an API call, a queue listing).
pub async fn eventually_async<T, F: Future<Output = Option<T>>>(
    mut check: impl FnMut() -> F,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An address that cannot be bound on this host (so a pool using it must defer). Candidates are
/// documentation ranges (RFC 5737); a machine may have one assigned, so each is checked first.
pub fn unassigned_addresses(count: usize) -> Vec<IpAddr> {
    let found: Vec<IpAddr> = [
        "198.51.100.7",
        "203.0.113.7",
        "192.0.2.77",
        "198.51.100.201",
        "203.0.113.201",
    ]
    .iter()
    .map(|a| ip(a))
    .filter(|&a| poolrelay::outbound::connect::source_available(a).is_err())
    .take(count)
    .collect();
    assert_eq!(
        found.len(),
        count,
        "enough documentation addresses are unassigned on this host"
    );
    found
}

pub async fn start_sink() -> Sink {
    Sink::start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("sink starts")
}

pub fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// An SMTP client that sends exactly the bytes it is given, over TCP or (after STARTTLS) TLS.
pub struct RawClient<S = TcpStream> {
    pub stream: S,
    buffer: Vec<u8>,
}

impl RawClient {
    /// Connects and reads the greeting.
    pub async fn connect(addr: SocketAddr) -> (Self, String) {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let mut client = Self::over(stream);
        let greeting = client.reply().await;
        (client, greeting)
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> RawClient<S> {
    /// A client on an already open stream (no greeting is read).
    pub fn over(stream: S) -> Self {
        Self {
            stream,
            buffer: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads one complete reply (all its lines), or "" if the server closed the connection.
    pub async fn reply(&mut self) -> String {
        let mut reply = String::new();
        loop {
            while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line).into_owned();
                reply.push_str(&line);
                if line.len() < 4 || line.as_bytes()[3] != b'-' {
                    return reply;
                }
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
                .await
                .expect("reply within the wait")
                .unwrap_or(0);
            if read == 0 {
                return reply;
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    /// Sends a command and returns the reply.
    pub async fn command(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// EHLO, MAIL, RCPT for each recipient, DATA; panics unless all succeed.
    pub async fn start_message(&mut self, sender: &str, recipients: &[&str]) {
        assert!(self.command("EHLO client.test").await.starts_with("250"));
        let reply = self.command(&format!("MAIL FROM:<{sender}>")).await;
        assert!(reply.starts_with("250"), "{reply}");
        for rcpt in recipients {
            let reply = self.command(&format!("RCPT TO:<{rcpt}>")).await;
            assert!(reply.starts_with("250"), "{reply}");
        }
        let reply = self.command("DATA").await;
        assert!(reply.starts_with("354"), "{reply}");
    }

    /// A whole transaction with `content` sent raw (already ending with CRLF.CRLF); returns the
    /// final reply.
    pub async fn send_message(
        &mut self,
        sender: &str,
        recipients: &[&str],
        raw_content: &[u8],
    ) -> String {
        self.start_message(sender, recipients).await;
        self.send(raw_content).await;
        self.reply().await
    }

    /// [`RawClient::send_message`] that must be accepted (`250`); returns the reply.
    pub async fn send_accepted(
        &mut self,
        sender: &str,
        recipients: &[&str],
        raw_content: &[u8],
    ) -> String {
        let reply = self.send_message(sender, recipients, raw_content).await;
        assert!(reply.starts_with("250"), "{reply}");
        reply
    }

    /// Sends a small message from app@example.test to `recipient` naming configuration set
    /// `set`, with `subject`; panics unless it is accepted.
    pub async fn send_for_set(&mut self, set: &str, recipient: &str, subject: &str) {
        let content =
            format!("X-SES-CONFIGURATION-SET: {set}\r\nSubject: {subject}\r\n\r\nx\r\n.\r\n");
        let reply = self
            .send_message("app@example.test", &[recipient], content.as_bytes())
            .await;
        assert!(reply.starts_with("250"), "{set}: {reply}");
    }
}

/// Sends messages with Python's smtplib (a client poolrelay's code had no part in), one session
/// each. Returns one line per message: "OK <code> <reply>" or "ERROR <exception>".
pub fn python_send(
    addr: SocketAddr,
    sender: &str,
    recipients: &[&str],
    contents: &[String],
) -> Vec<String> {
    let script = r#"
import smtplib, sys, json
host, port, sender = sys.argv[1], int(sys.argv[2]), sys.argv[3]
job = json.load(sys.stdin)
for content in job["contents"]:
    try:
        with smtplib.SMTP(host, port, timeout=20) as s:
            s.ehlo("python.client.test")
            s.mail(sender)
            for r in job["recipients"]:
                code, msg = s.rcpt(r)
                if code >= 400: raise Exception(f"rcpt {code} {msg}")
            code, msg = s.data(content.encode())
            print("OK", code, msg.decode())
    except Exception as e:
        print("ERROR", e)
"#;
    let job = serde_json::json!({ "recipients": recipients, "contents": contents });
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            &addr.ip().to_string(),
            &addr.port().to_string(),
            sender,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(job.to_string().as_bytes())
            .expect("write to python");
    }
    let output = child.wait_with_output().expect("python finishes");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The content after poolrelay's own Received header (its first header, three lines long).
pub fn without_trace_header(content: &[u8]) -> &[u8] {
    assert!(
        content.starts_with(b"Received: from "),
        "content starts with our trace header"
    );
    let mut at = 0;
    // The header is one line plus its continuation lines (starting with a tab).
    loop {
        let end = content[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| at + p + 1)
            .unwrap_or(content.len());
        at = end;
        if content.get(at) != Some(&b'\t') {
            return &content[at..];
        }
    }
}

/// A relay process, killed (SIGKILL) when the test ends, however it ends.
pub struct KilledOnDrop(pub std::process::Child);

impl KilledOnDrop {
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The relay binary running on `dir/poolrelay.toml`; returns the process and its SMTP address,
/// read from its log line "poolrelay is accepting mail listen=[...]".
pub fn spawn_relay(dir: &Path) -> (std::process::Child, SocketAddr) {
    spawn_relay_with(dir, &[])
}

/// [`spawn_relay`] with more environment variables.
pub fn spawn_relay_with(dir: &Path, env: &[(&str, &Path)]) -> (std::process::Child, SocketAddr) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_poolrelay"))
        .args(["serve", "--config"])
        .arg(dir.join("poolrelay.toml"))
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("relay binary starts");
    let stderr = child.stderr.take().expect("stderr");
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if !sent && let Some(start) = line.find("listen=[") {
                let rest = &line[start + 8..];
                if let Some(end) = rest.find(']') {
                    let _ = found.send(rest[..end].to_string());
                    sent = true;
                }
            }
        }
    });
    let address = address
        .recv_timeout(WAIT)
        .expect("the relay reports its address");
    (child, address.parse().expect("an address"))
}

/// A Python that can import `modules`: `POOLRELAY_TEST_PYTHON`, else the repository's `.venv`
/// (`.ci/run` makes it), else `python3`; `None` (after saying `what` is missing, see
/// [`privilege_missing`]) when they are not there.
pub fn python_with(modules: &str, what: &str) -> Option<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let python = std::env::var_os("POOLRELAY_TEST_PYTHON")
        .map(PathBuf::from)
        .or_else(|| venv.exists().then_some(venv))
        .unwrap_or_else(|| PathBuf::from("python3"));
    let found = std::process::Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if found {
        Some(python)
    } else {
        privilege_missing(what);
        None
    }
}

/// A test cannot do what it needs (a privilege the machine does not give): under `CI` that is a
/// failure, so a CI run never passes without having tested; elsewhere the test is skipped and
/// says why.
pub fn privilege_missing(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but this machine cannot {what}: the test cannot run");
    }
    eprintln!("skipped: cannot {what} here");
}

/// A next hop that answers each command line with `script(line)` (in upper case; the end of
/// the content is "."), takes the content between DATA and "." without replying, and records
/// every command line exactly as it arrived.
pub async fn scripted_next_hop(
    script: fn(&str) -> &'static [u8],
) -> (SocketAddr, std::sync::Arc<parking_lot::Mutex<Vec<String>>>) {
    use tokio::io::AsyncBufReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("bound");
    let lines = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let recorded = lines.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let (reader, mut writer) = stream.into_split();
                let mut input = tokio::io::BufReader::new(reader).lines();
                let _ = writer.write_all(b"220 next-hop.test ESMTP\r\n").await;
                let mut in_data = false;
                while let Ok(Some(line)) = input.next_line().await {
                    if in_data && line != "." {
                        continue;
                    }
                    if !in_data {
                        recorded.lock().push(line.clone());
                    }
                    let command = line.to_ascii_uppercase();
                    in_data = command == "DATA";
                    if writer.write_all(script(&command)).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, lines)
}

/// Runs the Python script `script` (a path under `tests/it/`) with `args` on a blocking thread
/// (an in-process relay answers on the test's runtime) and returns the JSON it prints.
pub async fn python_json(python: PathBuf, script: &str, args: Vec<String>) -> serde_json::Value {
    let script = format!("{}/tests/it/{script}", env!("CARGO_MANIFEST_DIR"));
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&python)
            .arg(&script)
            .args(&args)
            .output()
            .expect("python runs")
    })
    .await
    .expect("joined");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON results")
}
