//! Request handling: peer check, bounded body, JSON in and out, routing to the resource files.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;

use super::body::Body;
use super::error::ApiError;
use super::paging::PageRequest;
use super::state::AdminState;
use super::{account, configuration_sets, identities, ips, pools, queue, status, suppression};
use super::{tags, templates};

/// Largest request body accepted.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Who is on the other end of the socket (SO_PEERCRED).
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub uid: u32,
    pub pid: Option<i32>,
    pub allowed: bool,
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// `GET /metrics` in the Prometheus text format.
pub async fn metrics_response(state: &AdminState) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(status::metrics_text(state).await)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn read_body(request: Request<Incoming>) -> Result<Body, ApiError> {
    let bytes = Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|_| {
            ApiError::TooLarge(format!(
                "request body over {MAX_BODY_BYTES} bytes or unreadable"
            ))
        })?
        .to_bytes();
    Body::parse(&bytes)
}

/// The first value of `key` in the query, percent-decoded.
fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    query_pairs(query)
        .into_iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value)
}

/// Every `key=value` pair of a query string, percent-decoded (`+` is a space), in order.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let decode_part = |part: &str| decode(&part.replace('+', " "));
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_part(key), decode_part(value))
        })
        .collect()
}

/// A path segment with its percent-escapes decoded (an address identity's `@` arrives as `%40`).
fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

pub async fn handle(
    state: Arc<AdminState>,
    peer: Peer,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    if peer.allowed && method == Method::GET && path == "/metrics" {
        return Ok(metrics_response(&state).await);
    }
    let result = if !peer.allowed {
        Err(ApiError::AccessDenied(format!(
            "uid {} may not use the admin socket",
            peer.uid
        )))
    } else {
        match read_body(request).await {
            Ok(body) => route(&state, &method, &path, query.as_deref(), body).await,
            Err(error) => Err(error),
        }
    };
    let (status, body) = match result {
        Ok(body) => (StatusCode::OK, body),
        Err(error) => (error.status(), error.body()),
    };
    if method != Method::GET {
        tracing::info!(uid = peer.uid, pid = ?peer.pid, %method, path, status = status.as_u16(), "admin request");
    }
    Ok(json_response(status, &body))
}

/// Default and largest `PageSize` where SES's model says none.
const PAGE_LIMITS: (usize, usize) = (100, 1000);
/// ListEmailTemplates: 1-100, 10 by default.
const TEMPLATE_PAGE_LIMITS: (usize, usize) = (10, 100);

/// `PageSize` and `NextToken` from the query (GET lists).
fn page_from_query(query: Option<&str>, limits: (usize, usize)) -> Result<PageRequest, ApiError> {
    let size = query_value(query, "PageSize");
    let token = query_value(query, "NextToken");
    PageRequest::new(size.as_deref(), token.as_deref(), limits)
}

/// `PageSize` and `NextToken` from the JSON body (the POST lists of newer SDKs).
fn page_from_body(body: &Body) -> Result<PageRequest, ApiError> {
    body.only(&["PageSize", "NextToken"])?;
    let size = body.number("PageSize")?.map(|n| n.to_string());
    let token = body.string("NextToken")?;
    PageRequest::new(size.as_deref(), token.as_deref(), PAGE_LIMITS)
}

pub(crate) async fn route(
    state: &AdminState,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: Body,
) -> Result<Value, ApiError> {
    // Every segment percent-decoded once: SDKs encode `@` in identities and `:` in IPv6 IPs.
    let decoded: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect();
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let unknown = || ApiError::UnknownOperation(format!("no operation {method} {path}"));
    let Some(rest) = segments.strip_prefix(&["v2", "email"]) else {
        return Err(unknown());
    };
    match (method, rest) {
        (&Method::GET, ["dedicated-ip-pools"]) => {
            pools::list(state, &page_from_query(query, PAGE_LIMITS)?)
        }
        (&Method::POST, ["dedicated-ip-pools"]) => pools::create(state, body).await,
        (&Method::GET, ["dedicated-ip-pools", name]) => pools::get(state, name),
        (&Method::DELETE, ["dedicated-ip-pools", name]) => pools::delete(state, name).await,
        (&Method::GET, ["dedicated-ips"]) => {
            let page = page_from_query(query, PAGE_LIMITS)?;
            ips::list(state, query_value(query, "PoolName"), &page)
        }
        (&Method::POST, ["dedicated-ips"]) => ips::add(state, body).await,
        (&Method::GET, ["dedicated-ips", ip]) => ips::get(state, ip),
        (&Method::DELETE, ["dedicated-ips", ip]) => ips::remove(state, ip).await,
        (&Method::PUT, ["dedicated-ips", ip, "pool"]) => ips::move_to_pool(state, ip, body).await,
        (&Method::PUT, ["dedicated-ips", ip, "warmup"]) => ips::put_warmup(state, ip, body).await,
        (&Method::PUT, ["dedicated-ips", ip, "suspension"]) => {
            ips::put_suspension(state, ip, body).await
        }
        (&Method::PUT, ["account", "dedicated-ips", "warmup"]) => {
            ips::put_account_warmup(state, body).await
        }
        (&Method::GET, ["configuration-sets"]) => {
            configuration_sets::list(state, &page_from_query(query, PAGE_LIMITS)?)
        }
        (&Method::POST, ["list-configuration-sets"]) => {
            configuration_sets::list(state, &page_from_body(&body)?)
        }
        (&Method::PUT, ["configuration-sets", name, "sending"]) => {
            configuration_sets::put_sending(state, name, body).await
        }
        (&Method::PUT, ["configuration-sets", _, "tracking-options"]) => Err(ApiError::BadRequest(
            "TrackingOptions (open and click tracking) is not supported by poolrelay".into(),
        )),
        (&Method::POST, ["configuration-sets"]) => configuration_sets::create(state, body).await,
        (&Method::GET, ["configuration-sets", name]) => configuration_sets::get(state, name),
        (&Method::DELETE, ["configuration-sets", name]) => {
            configuration_sets::delete(state, name).await
        }
        (&Method::PUT, ["configuration-sets", name, "delivery-options"]) => {
            configuration_sets::put_delivery_options(state, name, body).await
        }
        _ => route_more(state, method, rest, query, body, unknown).await,
    }
}

/// Identities, the account, tags, templates, the suppression list, the queue and status.
async fn route_more(
    state: &AdminState,
    method: &Method,
    rest: &[&str],
    query: Option<&str>,
    body: Body,
    unknown: impl Fn() -> ApiError,
) -> Result<Value, ApiError> {
    match (method, rest) {
        (&Method::GET, ["identities"]) => {
            identities::list(state, &page_from_query(query, PAGE_LIMITS)?)
        }
        (&Method::POST, ["list-identities"]) => identities::list(state, &page_from_body(&body)?),
        (&Method::GET, ["account"]) => account::get(state).await,
        (&Method::GET, ["poolrelay", "history"]) => Ok(serde_json::json!({
            "Minutes": state.history.last_hour(),
        })),
        (&Method::PUT, ["account", "sending"]) => account::put_sending(state, body).await,
        (&Method::POST, ["tags"]) => tags::tag(state, body).await,
        (&Method::DELETE, ["tags"]) => tags::untag(state, &query_pairs(query)).await,
        (&Method::GET, ["tags"]) => tags::list(state, &query_pairs(query)),
        (&Method::GET, ["templates"]) => {
            templates::list(state, &page_from_query(query, TEMPLATE_PAGE_LIMITS)?)
        }
        (&Method::POST, ["templates"]) => templates::create(state, body).await,
        (&Method::GET, ["templates", name]) => templates::get(state, name),
        (&Method::PUT, ["templates", name]) => templates::update(state, name, body).await,
        (&Method::DELETE, ["templates", name]) => templates::delete(state, name).await,
        (&Method::POST, ["templates", name, "render"]) => templates::test_render(state, name, body),
        (&Method::POST, ["identities"]) => identities::create(state, body).await,
        (&Method::GET, ["identities", name]) => identities::get(state, name),
        (&Method::DELETE, ["identities", name]) => identities::delete(state, name).await,
        (&Method::PUT, ["identities", name, "dkim"]) => {
            identities::put_dkim(state, name, body).await
        }
        (&Method::PUT, ["identities", name, "dkim", "signing"]) => {
            identities::put_dkim_signing(state, name, body).await
        }
        (&Method::PUT, ["identities", name, "configuration-set"]) => {
            identities::put_configuration_set(state, name, body).await
        }
        (&Method::PUT, ["suppression", "addresses"]) => suppression::put(state, body).await,
        (&Method::POST, ["suppression", "addresses", "batch"]) => {
            suppression::put_batch(state, body).await
        }
        (&Method::GET, ["suppression", "addresses"]) => {
            suppression::list(state, &query_pairs(query)).await
        }
        (&Method::GET, ["suppression", "addresses", address]) => {
            suppression::get(state, address).await
        }
        (&Method::DELETE, ["suppression", "addresses", address]) => {
            suppression::delete(state, address).await
        }
        (&Method::PUT, ["account", "suppression"]) => suppression::put_account(state, body).await,
        (&Method::PUT, ["configuration-sets", name, "suppression-options"]) => {
            suppression::put_configuration_set(state, name, body).await
        }
        (&Method::GET, ["queue"]) => queue::list(state).await,
        (&Method::DELETE, ["queue", id]) => queue::delete(state, id).await,
        (&Method::POST, ["queue", id, action]) => queue::act(state, id, action).await,
        (&Method::GET, ["status"]) => status::get(state).await,
        (&Method::POST, ["reload"]) => state.reload().await.map(|()| serde_json::json!({})),
        _ => Err(unknown()),
    }
}
