//! The console: SES's Dedicated IPs pages in a browser, served at `/console/` on the `[api]`
//! listener. Sign-in with `[[admin.user]]` (`session`), pages rendered on the server (`pages`,
//! `wizard`), every change made through the admin API's own functions. Forms work without
//! JavaScript; every POST carries the session's CSRF token; a viewer changes nothing.

mod charts;
mod manage;
mod overview;
pub mod pages;
pub mod session;
pub mod wizard;

use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use maud::{Markup, html};

use crate::admin::http::query_pairs;
use crate::admin::paging::PageRequest;
use crate::admin::state::AdminState;
use crate::registry::DEFAULT_POOL;
use crate::settings::console::{ConsoleUser, Role};
use session::{Session, Sessions, token_from_cookies};

const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("app.js");

/// One console: its users and sessions.
pub struct Console {
    pub sessions: Sessions,
}

impl Console {
    pub fn new(users: Vec<ConsoleUser>, https: bool) -> Self {
        Self {
            sessions: Sessions::new(users, https),
        }
    }
}

/// What a console request is, read from the HTTP request.
pub struct ConsoleRequest<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub cookie: Option<&'a str>,
    pub body: &'a [u8],
    pub client: IpAddr,
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let set = |headers: &mut hyper::HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(name, hyper::header::HeaderValue::from_static(value));
    };
    set(headers, "content-type", content_type);
    set(headers, "cache-control", "no-store");
    set(headers, "x-frame-options", "DENY");
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "referrer-policy", "no-referrer");
    set(
        headers,
        "content-security-policy",
        "default-src 'self'; form-action 'self'; frame-ancestors 'none'",
    );
    response
}

fn page(status: StatusCode, markup: Markup) -> Response<Full<Bytes>> {
    respond(status, "text/html; charset=utf-8", markup.into_string())
}

fn redirect(to: &str, cookie: Option<String>) -> Response<Full<Bytes>> {
    let mut response = respond(StatusCode::SEE_OTHER, "text/plain", String::new());
    if let Ok(location) = hyper::header::HeaderValue::from_str(to) {
        response.headers_mut().insert("location", location);
    }
    if let Some(cookie) = cookie.and_then(|c| hyper::header::HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert("set-cookie", cookie);
    }
    response
}

fn refused(session: Option<&Session>, status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    page(
        status,
        pages::layout("Not allowed", session, html! { p.error { (message) } }),
    )
}

/// Serves one request under `/console`.
pub async fn serve(
    console: &Console,
    admin: &AdminState,
    request: ConsoleRequest<'_>,
) -> Response<Full<Bytes>> {
    let form = query_pairs(std::str::from_utf8(request.body).ok());
    let path = request.path.trim_end_matches('/');
    match (request.method, path) {
        (&Method::GET, "/console/style.css") => {
            return respond(StatusCode::OK, "text/css", STYLE.into());
        }
        (&Method::GET, "/console/app.js") => {
            return respond(StatusCode::OK, "text/javascript", SCRIPT.into());
        }
        (&Method::GET, "/console/login") => return page(StatusCode::OK, pages::sign_in(None)),
        (&Method::POST, "/console/login") => return sign_in(console, &request, &form).await,
        _ => {}
    }
    let token = request.cookie.and_then(token_from_cookies);
    let Some(session) = token.and_then(|t| console.sessions.find(t)) else {
        return redirect("/console/login", None);
    };
    if request.method == Method::POST {
        let csrf = form
            .iter()
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.as_str());
        if !Sessions::csrf_ok(&session, csrf) {
            return refused(
                Some(&session),
                StatusCode::FORBIDDEN,
                "This form has no valid CSRF token; reload the page and try again.",
            );
        }
        if path == "/console/logout" {
            if let Some(token) = token {
                console.sessions.sign_out(token);
            }
            return redirect("/console/login", Some(console.sessions.cookie(None)));
        }
        if session.role != Role::Admin {
            return refused(
                Some(&session),
                StatusCode::FORBIDDEN,
                "A viewer cannot change anything.",
            );
        }
    }
    route(admin, &session, &request, path, &form).await
}

async fn sign_in(
    console: &Console,
    request: &ConsoleRequest<'_>,
    form: &[(String, String)],
) -> Response<Full<Bytes>> {
    let field = |key: &str| {
        form.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    match console
        .sessions
        .sign_in(request.client, field("username"), field("password"))
        .await
    {
        Some(token) => redirect("/console/ips", Some(console.sessions.cookie(Some(&token)))),
        None => page(
            StatusCode::UNAUTHORIZED,
            pages::sign_in(Some("Wrong username or password.")),
        ),
    }
}

async fn route(
    admin: &AdminState,
    session: &Session,
    request: &ConsoleRequest<'_>,
    path: &str,
    form: &[(String, String)],
) -> Response<Full<Bytes>> {
    if request.method == Method::POST {
        return post_action(admin, session, path, form).await;
    }
    let admin_only = |session: &Session| session.role != Role::Admin;
    match (request.method, path) {
        (&Method::GET, "/console") => redirect("/console/overview", None),
        (&Method::GET, "/console/overview") => {
            let queue = admin.queue.list().await.unwrap_or_default();
            let minutes = admin.history.last_hour();
            page(
                StatusCode::OK,
                overview::overview(session, &minutes, &queue),
            )
        }
        (&Method::GET, "/console/ips") => ips_page(admin, session),
        (&Method::GET, "/console/pools") => {
            let created = query_pairs(request.query)
                .into_iter()
                .find(|(k, _)| k == "created")
                .map(|(_, v)| v);
            let notice = created.map(|name| format!("Pool {name} was created."));
            page(
                StatusCode::OK,
                pages::pools(session, &pool_rows(admin), notice.as_deref()),
            )
        }
        (&Method::GET, "/console/pools/new") if admin_only(session) => refused(
            Some(session),
            StatusCode::FORBIDDEN,
            "A viewer cannot create pools.",
        ),
        (&Method::GET, "/console/pools/new") => {
            let registry = admin.registry.load();
            let answers = wizard::Answers::default();
            page(
                StatusCode::OK,
                wizard::render(session, wizard::Step::Name, &answers, &registry, None),
            )
        }
        (&Method::GET, "/console/sets") => {
            let done = query_pairs(request.query);
            let notice = (!manage::field(&done, "done").is_empty()).then_some("Saved.");
            let registry = admin.registry.load();
            page(
                StatusCode::OK,
                manage::sets_page(session, &registry, notice),
            )
        }
        (&Method::GET, "/console/queue") => {
            let filter = manage::QueueFilter::from_query(&query_pairs(request.query));
            let entries = admin.queue.list().await.unwrap_or_default();
            page(
                StatusCode::OK,
                manage::queue_page(session, &entries, &filter),
            )
        }
        _ => refused(
            Some(session),
            StatusCode::NOT_FOUND,
            "There is no such page.",
        ),
    }
}

/// Dedicated IPs as GetDedicatedIps reports them, with the last hour and (for admins) actions.
fn ips_page(admin: &AdminState, session: &Session) -> Response<Full<Bytes>> {
    let all = PageRequest::new(Some("1000"), None, (1000, 1000));
    match all.and_then(|page| crate::admin::ips::list(admin, None, &page)) {
        Ok(listed) => {
            let ips = listed["DedicatedIps"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let hour = admin.history.hour_by_ip();
            let registry = admin.registry.load();
            let actions = |ip: &str| manage::ip_forms(session, ip, &registry);
            let caps = manage::todays_caps(admin, &registry);
            let extras = pages::IpExtras {
                hour: &hour,
                caps: &caps,
                actions: &actions,
            };
            page(StatusCode::OK, pages::dedicated_ips(session, &ips, &extras))
        }
        Err(error) => refused(
            Some(session),
            error.status(),
            &error.body()["message"].to_string(),
        ),
    }
}

/// A form post (the session, its CSRF token and its role are already checked).
async fn post_action(
    admin: &AdminState,
    session: &Session,
    path: &str,
    form: &[(String, String)],
) -> Response<Full<Bytes>> {
    match path {
        "/console/pools/new" => wizard_step(admin, session, form).await,
        "/console/ips/action" => done(
            session,
            manage::ip_action(admin, form).await,
            "/console/ips",
        ),
        "/console/sets/action" => done(
            session,
            manage::set_action(admin, form).await,
            "/console/sets?done=1",
        ),
        "/console/queue/action" => done(
            session,
            manage::queue_action(admin, form).await,
            "/console/queue",
        ),
        "/console/pools/delete" => {
            let name = form
                .iter()
                .find(|(k, _)| k == "pool")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            match crate::admin::pools::delete(admin, &name).await {
                Ok(_) => redirect("/console/pools", None),
                Err(error) => refused(
                    Some(session),
                    error.status(),
                    &error.body()["message"].to_string(),
                ),
            }
        }
        _ => refused(
            Some(session),
            StatusCode::NOT_FOUND,
            "There is no such form.",
        ),
    }
}

/// After a change: back to the page it was made on, or the refusal.
fn done(
    session: &Session,
    result: Result<(), crate::admin::error::ApiError>,
    back: &str,
) -> Response<Full<Bytes>> {
    match result {
        Ok(()) => redirect(back, None),
        Err(error) => {
            let message = error.body()["message"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            refused(Some(session), error.status(), &message)
        }
    }
}

/// Each named pool (and the default pool) with its IPs and the sets that send through it.
fn pool_rows(admin: &AdminState) -> Vec<(String, Vec<String>, Vec<String>)> {
    let registry = admin.registry.load();
    let mut names: Vec<String> = registry.pool_names().map(str::to_string).collect();
    names.push(DEFAULT_POOL.to_string());
    names
        .into_iter()
        .map(|name| {
            let in_pool = |pool: &Option<String>| pool.as_deref().unwrap_or(DEFAULT_POOL) == name;
            let ips = registry
                .ips()
                .iter()
                .filter(|ip| in_pool(&ip.pool))
                .map(|ip| ip.address.to_string())
                .collect();
            let sets = registry
                .configuration_sets()
                .filter(|set| in_pool(&set.sending_pool))
                .map(|set| set.name.clone())
                .collect();
            (name, ips, sets)
        })
        .collect()
}

/// A posted wizard form: back, on (after checking this step), or create.
async fn wizard_step(
    admin: &AdminState,
    session: &Session,
    form: &[(String, String)],
) -> Response<Full<Bytes>> {
    let answers = wizard::Answers::from_form(form);
    let (step, action) = wizard::posted_step(form);
    let registry = admin.registry.load_full();
    let show = |step, error: Option<&str>| {
        page(
            StatusCode::OK,
            wizard::render(session, step, &answers, &registry, error),
        )
    };
    match action {
        "previous" => show(wizard::moved(step, action), None),
        "create" => {
            let plan = match answers.plan() {
                Ok(plan) => plan,
                Err((step, error)) => return show(step, Some(&error)),
            };
            let name = plan.name.clone();
            match crate::admin::pools::create_and_assign(admin, plan).await {
                Ok(()) => redirect(&format!("/console/pools?created={name}"), None),
                Err((part, error)) => {
                    let message = error.body()["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    show(wizard::step_of(part), Some(&message))
                }
            }
        }
        _ => match wizard::check(step, &answers, &registry) {
            Ok(()) => show(wizard::moved(step, action), None),
            Err(error) => show(step, Some(&error)),
        },
    }
}
