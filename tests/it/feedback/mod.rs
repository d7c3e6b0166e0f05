//! The feedback loop end to end: return paths, bounces and abuse reports arriving from outside,
//! SES events, the suppression list (API and CLI) and forwarding, with real-world-shaped
//! reports (`tests/fixtures/feedback/`) and hostile ones.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde_json::Value;
use tokio::net::TcpSocket;

use crate::common::*;

mod hostile;
mod round_trip;
mod suppression_api;

pub(super) const BOUNCE_DOMAIN: &str = "bounce.example.test";
pub(super) const FEEDBACK_ADDRESS: &str = "fbl@example.test";
/// The only client allowed to relay; reports come from other loopback addresses.
pub(super) const OUTSIDER: &str = "127.0.0.9";

/// A relay sending everything to `sink`, with a bounce domain, a feedback-loop address, events,
/// an admin socket and two pools: `bulk` (127.0.0.3, set `marketing`) and the default pool
/// (127.0.0.2). Only 127.0.0.1 may relay.
pub(super) fn feedback_config(sink: SocketAddr, extra: &str) -> String {
    format!(
        r#"{}{}[admin]
socket = "var/admin.sock"
[events]
path = "var/events.jsonl"
[queue]
retry_interval = "1h"
[bounce]
domain = "{BOUNCE_DOMAIN}"
[feedback]
address = "{FEEDBACK_ADDRESS}"
[[pool]]
name = "bulk"
[[ip]]
address = "127.0.0.2"
[[ip]]
address = "127.0.0.3"
pool = "bulk"
[[configuration_set]]
name = "marketing"
sending_pool = "bulk"
{extra}
"#,
        smtp_section("relay_networks = [\"127.0.0.1/32\"]\nmax_message_bytes = 62914560"),
        catch_all_route(sink)
    )
}

/// A sink and a relay on [`feedback_config`]; the relay's folder and admin socket.
pub(super) async fn start_feedback_relay() -> (
    poolrelay::sink::Sink,
    TestRelay,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let sink = start_sink().await;
    let relay = TestRelay::start(&feedback_config(sink.addr(), "")).await;
    let dir = relay.dir.path().to_path_buf();
    let socket = admin_socket(&dir);
    (sink, relay, dir, socket)
}

pub(super) fn admin_socket(dir: &Path) -> std::path::PathBuf {
    dir.join("var/admin.sock")
}

/// A client connected from `source` (a loopback address), greeting read.
pub(super) async fn connect_from(source: &str, relay: SocketAddr) -> RawClient {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source.parse().expect("address"), 0))
        .expect("bind a loopback source");
    let stream = socket.connect(relay).await.expect("connect");
    let mut client = RawClient::over(stream);
    let greeting = client.reply().await;
    assert!(greeting.starts_with("220"), "{greeting}");
    client
}

/// A client from [`OUTSIDER`] that has said EHLO and `MAIL FROM:<sender>`.
pub(super) async fn outsider_in_mail(relay: SocketAddr, sender: &str) -> RawClient {
    let mut client = connect_from(OUTSIDER, relay).await;
    assert!(client.command("EHLO outside.test").await.starts_with("250"));
    let reply = client.command(&format!("MAIL FROM:<{sender}>")).await;
    assert!(reply.starts_with("250"), "{reply}");
    client
}

/// A fixture with its placeholders filled, as DATA content: CRLF line ends, dot-stuffed, ending
/// with the end marker.
pub(super) fn fixture(name: &str, fill: &[(&str, &str)]) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/feedback")
        .join(name);
    let mut text = std::fs::read_to_string(&path).expect("fixture");
    for (placeholder, value) in fill {
        text = text.replace(placeholder, value);
    }
    as_data(text.as_bytes())
}

/// Any content as DATA: CRLF line ends, dot-stuffed, end marker.
pub(super) fn as_data(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 64);
    for line in content.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Sends a report from an outside address; returns the final reply.
pub(super) async fn send_report(relay: SocketAddr, to: &str, content: &[u8]) -> String {
    let mut client = connect_from(OUTSIDER, relay).await;
    client.send_message("", &[to], content).await
}

/// Every event in the log so far.
pub(super) fn events(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("var/events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Waits for an event matching `wanted`.
pub(super) async fn wait_for_event(dir: &Path, wanted: impl Fn(&Value) -> bool) -> Value {
    eventually(|| events(dir).into_iter().find(|e| wanted(e)))
        .await
        .unwrap_or_else(|| panic!("no such event; events: {:#?}", events(dir)))
}

/// The Bounce event for `address` of bounce subtype `subtype`.
pub(super) fn is_bounce(event: &Value, address: &str, subtype: &str) -> bool {
    event["eventType"] == "Bounce"
        && event["bounce"]["bounceSubType"] == subtype
        && event["bounce"]["bouncedRecipients"][0]["emailAddress"] == address
}

/// Every address on the suppression list, following pages.
pub(super) async fn suppression_list(socket: &Path) -> Vec<String> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = "/v2/email/suppression/addresses?PageSize=1000".to_string();
        if let Some(token) = &token {
            path.push_str(&format!("&NextToken={token}"));
        }
        let (status, page) = http::call(socket, "GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        for entry in page["SuppressedDestinationSummaries"]
            .as_array()
            .into_iter()
            .flatten()
        {
            all.push(
                entry["EmailAddress"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        match page["NextToken"].as_str() {
            Some(next) => token = Some(next.to_string()),
            None => break,
        }
    }
    all.sort();
    all
}

pub(super) fn peer_ip(message: &poolrelay::sink::SinkMessage) -> IpAddr {
    message.peer.ip()
}
