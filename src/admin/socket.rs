//! Creating the admin socket safely and serving connections on it.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::UnixListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::http::{Peer, handle};
use super::state::AdminState;

/// Headers and request line together may not exceed this.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The group id of a group name. Uses the reentrant `getgrnam_r`: several relays (tests) may
/// start at once in one process, and `getgrnam`'s static buffer would be shared between them.
fn group_id(name: &str) -> io::Result<libc::gid_t> {
    let cname =
        std::ffi::CString::new(name).map_err(|_| io::Error::other("group name contains NUL"))?;
    let mut size = 16 * 1024;
    loop {
        // SAFETY: `group` is plain data that getgrnam_r fills in; all-zero is a valid value.
        let mut group: libc::group = unsafe { std::mem::zeroed() };
        let mut buffer: Vec<libc::c_char> = vec![0; size];
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is to memory this function owns, `buffer.len()` is its real
        // size, and `cname` is NUL-terminated; the strings in `group` point into `buffer`, which
        // outlives the only field read (`gr_gid`, a plain integer).
        let code = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut group,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        match code {
            0 if found.is_null() => return Err(io::Error::other(format!("no group named {name}"))),
            0 => return Ok(group.gr_gid),
            libc::ERANGE if size < 1024 * 1024 => size *= 4,
            code => return Err(io::Error::from_raw_os_error(code)),
        }
    }
}

/// Binds the admin socket at `path` with mode 0600 (0660 and the given group with `group`).
/// Refuses a path that exists and is not a socket (a symlink, a plain file), and a folder that
/// anyone but its owner may write to. A stale socket from an earlier run is replaced.
pub fn bind_admin_socket(path: &Path, group: Option<&str>) -> io::Result<UnixListener> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // Only the owner may write in the folder: anyone else could swap the socket for a link
    // between its creation and its chown.
    let dir_mode = std::fs::metadata(dir)?.permissions().mode();
    if dir_mode & 0o022 != 0 {
        return Err(io::Error::other(format!(
            "the admin socket's folder {} is writable by others than its owner (mode {:o}); use a private folder",
            dir.display(),
            dir_mode & 0o7777
        )));
    }
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::other(format!(
                "{} exists and is not a socket: refusing to replace it",
                path.display()
            )));
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    // Created with its final mode (no window in which others could connect, and no chmod by
    // path afterwards, which would follow a link put in its place).
    let mask = if group.is_some() { 0o117 } else { 0o177 };
    // SAFETY: umask only changes this process's file creation mask; it is restored right after.
    let previous = unsafe { libc::umask(mask) };
    let listener = UnixListener::bind(path);
    unsafe { libc::umask(previous) };
    let listener = listener?;
    if let Some(group) = group {
        // lchown: never follows a link.
        std::os::unix::fs::lchown(path, None, Some(group_id(group)?))?;
    }
    Ok(listener)
}

/// Connections served at once, per server (admin socket, metrics listener); past it a new
/// connection is closed at once.
const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a connection is kept, requests included (a scraper simply reconnects).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// An accepted connection's place among [`MAX_CONNECTIONS`], or `None`: close it.
fn admit(places: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    places.clone().try_acquire_owned().ok()
}

/// An HTTP/1.1 connection builder with the header timeout and size limits.
fn http_builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES.max(8192));
    builder
}

/// An accept error (usually EMFILE): wait a moment instead of spinning.
async fn accept_failed(what: &str, error: io::Error) {
    tracing::warn!(%error, "{what}: accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Serves admin connections until shutdown.
pub async fn serve(listener: UnixListener, state: Arc<AdminState>, shutdown: CancellationToken) {
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                accept_failed("admin socket", error).await;
                continue;
            }
        };
        let Some(place) = admit(&places) else {
            tracing::warn!("admin connection refused: {MAX_CONNECTIONS} already open");
            continue;
        };
        let peer = match stream.peer_cred() {
            Ok(cred) => Peer {
                uid: cred.uid(),
                pid: cred.pid(),
                allowed: state.allowed_uids.contains(&cred.uid()),
            },
            Err(_) => Peer {
                uid: u32::MAX,
                pid: None,
                allowed: false,
            },
        };
        if !peer.allowed {
            tracing::warn!(uid = peer.uid, pid = ?peer.pid, "admin connection refused: uid not allowed");
        }
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(state.clone(), peer, request));
            let connection = http_builder().serve_connection(TokioIo::new(stream), service);
            if let Ok(Err(error)) = tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                tracing::debug!(%error, "admin connection ended with an error");
            }
            drop(place);
        });
    }
}

/// Serves `GET /metrics` (and nothing else) on TCP, for `[metrics] listen`.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: Arc<AdminState>,
    shutdown: CancellationToken,
) {
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::{Response, StatusCode};
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                accept_failed("metrics listener", error).await;
                continue;
            }
        };
        let Some(place) = admit(&places) else {
            tracing::warn!("metrics connection refused: {MAX_CONNECTIONS} already open");
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let state = state.clone();
                async move {
                    if request.method() == hyper::Method::GET && request.uri().path() == "/metrics"
                    {
                        Ok::<_, std::convert::Infallible>(
                            super::http::metrics_response(&state).await,
                        )
                    } else {
                        let mut response =
                            Response::new(Full::new(Bytes::from_static(b"only /metrics here\n")));
                        *response.status_mut() = StatusCode::NOT_FOUND;
                        Ok(response)
                    }
                }
            });
            let connection = http_builder().serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
            drop(place);
        });
    }
}
