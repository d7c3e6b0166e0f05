//! The console's pages, rendered on the server with maud (every value escaped on output):
//! the frame around each page, sign-in, Dedicated IPs and IP pools. The data comes from the
//! admin API's own functions, so the console shows exactly what the API reports.

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use super::session::Session;
use crate::settings::console::Role;

/// The page frame: navigation, who is signed in, Sign out.
pub fn layout(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " — poolrelay" }
                link rel="stylesheet" href="/console/style.css";
            }
            body {
                header {
                    strong { "poolrelay" }
                    @if let Some(session) = session {
                        nav {
                            a href="/console/overview" { "Overview" }
                            a href="/console/ips" { "Dedicated IPs" }
                            a href="/console/pools" { "IP pools" }
                            a href="/console/sets" { "Configuration sets" }
                            a href="/console/queue" { "Queue" }
                        }
                        form.signout method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(session.csrf);
                            span { (session.username) " (" (role_name(session.role)) ") " }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Viewer => "viewer",
    }
}

pub fn sign_in(error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            @if let Some(error) = error { p.error { (error) } }
            form method="post" action="/console/login" {
                label for="username" { "Username" }
                input id="username" name="username" type="text" autocomplete="username" required;
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// A suspension's end, from Unix seconds, in UTC.
fn until(value: &Value) -> String {
    value
        .as_i64()
        .and_then(|seconds| chrono::DateTime::from_timestamp(seconds, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Dedicated IPs: every IP as GetDedicatedIps reports it.
/// What the Dedicated IPs page shows beside GetDedicatedIps.
pub struct IpExtras<'a> {
    /// Delivered, deferred and bounced in the last hour.
    pub hour: &'a std::collections::BTreeMap<std::net::IpAddr, crate::events::history::Counts>,
    /// For warming IPs: (sent today, today's cap), by address.
    pub caps: &'a std::collections::BTreeMap<String, (u64, u64)>,
    /// The forms beside an IP.
    pub actions: &'a dyn Fn(&str) -> Markup,
}

pub fn dedicated_ips(session: &Session, ips: &[Value], extras: &IpExtras<'_>) -> Markup {
    let IpExtras {
        hour,
        caps,
        actions,
    } = extras;
    layout(
        "Dedicated IPs",
        Some(session),
        html! {
            table {
                thead { tr {
                    th { "IP" } th { "Pool" } th { "Weight" } th { "EHLO name" }
                    th { "Warm-up" } th { "Suspension" } th { "Last hour" } th {}
                } }
                tbody {
                    @for ip in ips {
                        tr {
                            td { (text(&ip["Ip"])) }
                            td { (text(&ip["PoolName"])) }
                            td { (text(&ip["Weight"])) }
                            td { (text(&ip["EhloHostname"])) }
                            td {
                                (text(&ip["WarmupStatus"])) " "
                                @if let Some((used, cap)) = caps.get(&text(&ip["Ip"])) {
                                    progress max=(cap) value=(used) {}
                                    " " (used) " of today's " (cap) "; "
                                } @else {
                                    progress max="100" value=(text(&ip["WarmupPercentage"])) {}
                                }
                                " " (text(&ip["WarmupPercentage"])) "%"
                            }
                            td {
                                (text(&ip["Suspension"]["Status"]))
                                @if let Some(sites) = ip["Suspension"]["Sites"].as_array() {
                                    @for site in sites {
                                        div.site {
                                            (text(&site["Site"])) ": " (text(&site["Reply"]))
                                            " (until " (until(&site["Until"])) ")"
                                        }
                                    }
                                }
                            }
                            td {
                                @let counts = text(&ip["Ip"]).parse().ok().and_then(|a| hour.get(&a)).copied().unwrap_or_default();
                                span.delivered { (counts.delivered) " delivered" } ", "
                                span.deferred { (counts.deferred) " deferred" } ", "
                                span.bounced { (counts.bounced) " bounced" }
                            }
                            td { (actions(&text(&ip["Ip"]))) }
                        }
                    }
                }
            }
        },
    )
}

/// IP pools: each named pool, its IPs and the sets that send through it.
pub fn pools(
    session: &Session,
    pools: &[(String, Vec<String>, Vec<String>)],
    notice: Option<&str>,
) -> Markup {
    layout(
        "IP pools",
        Some(session),
        html! {
            @if let Some(notice) = notice { p.notice { (notice) } }
            @if session.role == Role::Admin {
                p { a.button href="/console/pools/new" { "Create a New IP Pool" } }
            }
            table {
                thead { tr { th { "Pool name" } th { "Dedicated IPs" } th { "Configuration sets" } th {} } }
                tbody {
                    @for (name, ips, sets) in pools {
                        tr {
                            td { (name) }
                            td { (ips.join(", ")) }
                            td { (sets.join(", ")) }
                            td {
                                @if session.role == Role::Admin && ips.is_empty() && sets.is_empty() {
                                    form method="post" action="/console/pools/delete" {
                                        input type="hidden" name="csrf" value=(session.csrf);
                                        input type="hidden" name="pool" value=(name);
                                        button type="submit" { "Delete" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}
