//! A small HTTP/1.1 client over a Unix socket for the admin API tests (one request per
//! connection, `Connection: close`), and Python's http.client as an independent one.

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Sends raw bytes and returns the status code and the body as text.
pub async fn exchange(socket: &Path, request: &[u8]) -> (u16, String) {
    let mut stream = UnixStream::connect(socket)
        .await
        .expect("admin socket accepts");
    stream.write_all(request).await.expect("request written");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Sends raw bytes and returns the status code and the body parsed as JSON.
pub async fn raw(socket: &Path, request: &[u8]) -> (u16, serde_json::Value) {
    let (status, body) = exchange(socket, request).await;
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

pub async fn call(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: poolrelay\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    raw(socket, request.as_bytes()).await
}

/// GET with Python's http.client over the socket: (status, body).
pub fn python_get(socket: &Path, path: &str) -> (u16, serde_json::Value) {
    let script = r#"
import http.client, socket, sys, json
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(sys.argv[1])
c = Unix("poolrelay")
c.request("GET", sys.argv[2])
r = c.getresponse()
print(r.status)
print(r.read().decode())
"#;
    let output = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(socket)
        .arg(path)
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (status, body) = text.split_once('\n').unwrap_or(("0", ""));
    (
        status.trim().parse().unwrap_or(0),
        serde_json::from_str(body.trim()).unwrap_or(serde_json::Value::Null),
    )
}

/// GET returning the body as text (for `/metrics`).
pub async fn get_text(socket: &Path, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: poolrelay\r\nConnection: close\r\n\r\n");
    exchange(socket, request.as_bytes()).await
}

/// Calls the API and checks that it answers `status` with SES error type `error_type`; returns
/// the body for further checks.
pub async fn call_expecting_error(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
    (status, error_type): (u16, &str),
) -> serde_json::Value {
    let (got, answer) = call(socket, method, path, body).await;
    assert_eq!(
        (got, answer["__type"].as_str()),
        (status, Some(error_type)),
        "{method} {path}: {answer}"
    );
    answer
}
