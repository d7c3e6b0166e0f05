//! The HTTP(S) listener of the SESv2 API: HTTP/1.1 with keep-alive, every request verified
//! with SigV4 against the `[[api.key]]` keys, then served by the admin API's operations.
//! Errors are SES's: `__type` in the body and `x-amzn-ErrorType` in the headers.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::bulk::send_bulk;
use super::request::Member;
use super::send::{Caller, send_email};
use super::sigv4::{self, SigV4Error};
use crate::admin::body::Body;
use crate::admin::error::ApiError;
use crate::admin::http::route;
use crate::admin::state::AdminState;
use crate::settings::api::{ApiKey, ApiSettings};

/// Largest request body (SendEmail with a raw message is the largest there is).
const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
const MAX_CONNECTIONS: usize = 1024;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECTION_LIFETIME: Duration = Duration::from_secs(600);

/// What every API connection shares.
pub struct ApiContext {
    pub admin: Arc<AdminState>,
    /// What SendEmail shares with SMTP sessions: the spool, the queue, the model.
    pub inbound: Arc<crate::inbound::InboundContext>,
    /// The console at `/console/` (signed in with `[[admin.user]]`, not SigV4).
    pub console: crate::console::Console,
    pub settings: ApiSettings,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Serves one listener until shutdown.
pub async fn serve(listener: TcpListener, ctx: Arc<ApiContext>, shutdown: CancellationToken) {
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "API listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(place) = places.clone().try_acquire_owned() else {
            tracing::warn!("API connection refused: {MAX_CONNECTIONS} already open");
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let acceptor = ctx.tls.clone();
            let served = match acceptor {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => serve_connection(tls, ctx, peer.ip()).await,
                    Err(error) => Err(error.to_string()),
                },
                None => serve_connection(stream, ctx, peer.ip()).await,
            };
            if let Err(error) = served {
                tracing::debug!(%error, "API connection ended with an error");
            }
            drop(place);
        });
    }
}

/// HTTP/1.1 on one connection (plain or TLS), keep-alive, bounded in time.
async fn serve_connection<I>(io: I, ctx: Arc<ApiContext>, peer: IpAddr) -> Result<(), String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let service = service_fn(move |request| handle(ctx.clone(), peer, request));
    let connection = builder.serve_connection(TokioIo::new(io), service);
    match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err("connection lifetime reached".into()),
    }
}

fn response(status: StatusCode, body: &Value, error_type: Option<&str>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if let Some(kind) = error_type.and_then(|k| hyper::header::HeaderValue::from_str(k).ok()) {
        headers.insert("x-amzn-errortype", kind);
    }
    response
}

async fn handle(
    ctx: Arc<ApiContext>,
    peer: IpAddr,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    if parts.uri.path() == "/console" || parts.uri.path().starts_with("/console/") {
        return Ok(console(&ctx, peer, &parts, body).await);
    }
    let result = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => serve_request(&ctx, peer, &parts, &collected.to_bytes()).await,
        Err(_) => Err(ApiError::TooLarge(format!(
            "request body over {MAX_BODY_BYTES} bytes or unreadable"
        ))),
    };
    Ok(match result {
        Ok(body) => response(StatusCode::OK, &body, None),
        Err(error) => {
            let kind = error.kind();
            tracing::info!(method = %parts.method, path = parts.uri.path(), status = error.status().as_u16(), kind, "API request refused");
            response(error.status(), &error.body(), Some(kind))
        }
    })
}

/// A console request: its body read within the same limit, then served by the console.
async fn console(
    ctx: &ApiContext,
    peer: IpAddr,
    parts: &hyper::http::request::Parts,
    body: Incoming,
) -> Response<Full<Bytes>> {
    let Ok(collected) = Limited::new(body, MAX_BODY_BYTES).collect().await else {
        let mut response = Response::new(Full::new(Bytes::from_static(b"request too large")));
        *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        return response;
    };
    let body = collected.to_bytes();
    let cookie = parts
        .headers
        .get(hyper::header::COOKIE)
        .and_then(|v| v.to_str().ok());
    let request = crate::console::ConsoleRequest {
        method: &parts.method,
        path: parts.uri.path(),
        query: parts.uri.query(),
        cookie,
        body: &body,
        client: peer,
    };
    crate::console::serve(&ctx.console, &ctx.admin, request).await
}

/// Checks the signature and the key's rights, then runs the operation.
async fn serve_request(
    ctx: &ApiContext,
    peer: IpAddr,
    parts: &hyper::http::request::Parts,
    body: &[u8],
) -> Result<Value, ApiError> {
    let key = authenticate(ctx, parts, body)?;
    let path = parts.uri.path().trim_end_matches('/');
    let sending = match path {
        "/v2/email/outbound-emails" => Some(false),
        "/v2/email/outbound-bulk-emails" => Some(true),
        _ => None,
    };
    if let (Some(bulk), &Method::POST) = (sending, &parts.method) {
        if !key.send {
            return Err(denied(format!(
                "key {} may not send (allow = [\"send\"] is needed)",
                key.access_key_id
            )));
        }
        let json = serde_json::Value::Object(Body::parse(body)?.0);
        let request = Member::root(&json);
        let caller = Caller { key, ip: peer };
        return match bulk {
            false => send_email(&ctx.admin, &ctx.inbound, &caller, request).await,
            true => send_bulk(&ctx.admin, &ctx.inbound, &caller, request).await,
        };
    }
    if !key.admin {
        return Err(denied(format!(
            "key {} may not call {} {} (allow = [\"admin\"] is needed)",
            key.access_key_id,
            parts.method,
            parts.uri.path()
        )));
    }
    let parsed = Body::parse(body)?;
    route(
        &ctx.admin,
        &parts.method,
        parts.uri.path(),
        parts.uri.query(),
        parsed,
    )
    .await
}

fn denied(message: String) -> ApiError {
    ApiError::Unauthorized {
        kind: "AccessDeniedException",
        message,
    }
}

/// The key that signed the request, if the signature is right.
fn authenticate<'a>(
    ctx: &'a ApiContext,
    parts: &hyper::http::request::Parts,
    body: &[u8],
) -> Result<&'a ApiKey, ApiError> {
    let refused = |kind: &'static str, error: SigV4Error| ApiError::Unauthorized {
        kind,
        message: error.to_string(),
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_string(), value)
        })
        .collect();
    let Some((_, value)) = headers.iter().find(|(name, _)| name == "authorization") else {
        return Err(refused(
            "MissingAuthenticationTokenException",
            SigV4Error::Missing,
        ));
    };
    let authorization =
        sigv4::parse_authorization(value).map_err(|e| refused("InvalidSignatureException", e))?;
    let Some(key) = ctx.settings.key(&authorization.access_key_id) else {
        return Err(ApiError::Unauthorized {
            kind: "UnrecognizedClientException",
            message: "The security token included in the request is invalid.".into(),
        });
    };
    let request = sigv4::Request {
        method: parts.method.as_str(),
        raw_path: parts.uri.path(),
        raw_query: parts.uri.query(),
        headers: &headers,
        body,
    };
    let now = chrono::Utc::now();
    match sigv4::verify(
        &request,
        &authorization,
        &key.secret,
        &ctx.settings.region,
        now,
    ) {
        Ok(()) => Ok(key),
        Err(error @ SigV4Error::Mismatch) => Err(refused("SignatureDoesNotMatchException", error)),
        Err(error @ SigV4Error::WrongScope(_)) => Err(refused("AccessDeniedException", error)),
        Err(error) => Err(refused("InvalidSignatureException", error)),
    }
}
