//! The console's changes besides the wizard: a dedicated IP moved, suspended, resumed or given
//! a warm-up percentage; configuration sets created, edited and deleted; queued messages
//! retried, held, released or deleted. Each form post becomes the admin API's own call with
//! the same JSON body a client would send, so the console cannot do what the API would refuse.

use maud::{Markup, html};
use serde_json::{Value, json};

use super::pages::layout;
use super::session::Session;
use crate::admin::body::Body;
use crate::admin::error::ApiError;
use crate::admin::state::AdminState;
use crate::queue::QueueEntry;
use crate::registry::{DEFAULT_POOL, Registry};
use crate::settings::console::Role;

/// A form's field.
pub fn field<'a>(form: &'a [(String, String)], key: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.trim())
        .unwrap_or("")
}

fn body(value: Value) -> Body {
    match value {
        Value::Object(map) => Body(map),
        _ => Body(Default::default()),
    }
}

/// `POST /console/ips/action`: move, suspend, resume, warmup.
pub async fn ip_action(admin: &AdminState, form: &[(String, String)]) -> Result<(), ApiError> {
    use crate::admin::ips;
    let ip = field(form, "ip");
    match field(form, "action") {
        "move" => {
            ips::move_to_pool(
                admin,
                ip,
                body(json!({"DestinationPoolName": field(form, "pool")})),
            )
            .await
        }
        "suspend" => ips::put_suspension(admin, ip, body(json!({"Suspended": true}))).await,
        "resume" => ips::put_suspension(admin, ip, body(json!({"Suspended": false}))).await,
        "warmup" => {
            let percentage: u64 = field(form, "percentage").parse().map_err(|_| {
                ApiError::BadRequest("the warm-up percentage is a number from 0 to 100".into())
            })?;
            ips::put_warmup(admin, ip, body(json!({"WarmupPercentage": percentage}))).await
        }
        other => Err(ApiError::BadRequest(format!("no IP action {other:?}"))),
    }
    .map(|_| ())
}

/// For each warming IP: messages sent today and today's cap.
pub fn todays_caps(
    admin: &AdminState,
    registry: &Registry,
) -> std::collections::BTreeMap<String, (u64, u64)> {
    use crate::outbound::warmup::{WarmupState, today};
    let day = today();
    registry
        .ips()
        .iter()
        .filter_map(
            |ip| match WarmupState::of(registry.warmup(), ip.warmup_started, day) {
                WarmupState::Warming { cap, .. } => {
                    let used = admin
                        .warmup
                        .as_ref()
                        .map_or(0, |l| l.used_today(ip.address, day));
                    Some((ip.address.to_string(), (used, cap)))
                }
                WarmupState::Warm => None,
            },
        )
        .collect()
}

/// The forms beside one dedicated IP (admins only).
pub fn ip_forms(session: &Session, ip: &str, registry: &Registry) -> Markup {
    if session.role != Role::Admin {
        return html! {};
    }
    let current = registry
        .ips()
        .iter()
        .find(|known| known.address.to_string() == ip)
        .and_then(|known| known.pool.as_deref())
        .unwrap_or(DEFAULT_POOL);
    html! {
        form.inline method="post" action="/console/ips/action" {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="ip" value=(ip);
            (pool_select(registry, current))
            button type="submit" name="action" value="move" { "Move" }
        }
        form.inline method="post" action="/console/ips/action" {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="ip" value=(ip);
            button type="submit" name="action" value="suspend" { "Suspend" }
            button type="submit" name="action" value="resume" { "Resume" }
        }
        form.inline method="post" action="/console/ips/action" {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="ip" value=(ip);
            input type="number" name="percentage" min="0" max="100" aria-label="Warm-up percentage";
            button type="submit" name="action" value="warmup" { "Set warm-up %" }
        }
    }
}

/// `POST /console/sets/action`: create, update, delete.
pub async fn set_action(admin: &AdminState, form: &[(String, String)]) -> Result<(), ApiError> {
    use crate::admin::configuration_sets as sets;
    let name = field(form, "name");
    let mut options =
        json!({ "SendingPoolName": field(form, "pool"), "TlsPolicy": field(form, "tls") });
    if let Ok(seconds) = field(form, "max_delivery_seconds").parse::<u64>() {
        options["MaxDeliverySeconds"] = seconds.into();
    }
    match field(form, "action") {
        "create" => {
            let request = json!({ "ConfigurationSetName": name, "DeliveryOptions": options });
            sets::create(admin, body(request)).await?;
        }
        "update" => {
            sets::put_delivery_options(admin, name, body(options)).await?;
            let enabled = field(form, "sending") == "enabled";
            sets::put_sending(admin, name, body(json!({ "SendingEnabled": enabled }))).await?;
        }
        "delete" => {
            sets::delete(admin, name).await?;
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "no configuration set action {other:?}"
            )));
        }
    }
    Ok(())
}

fn pool_select(registry: &Registry, selected: &str) -> Markup {
    let mut pools: Vec<&str> = registry.pool_names().collect();
    pools.push(DEFAULT_POOL);
    html! {
        select name="pool" aria-label="Sending pool" {
            @for pool in pools { option value=(pool) selected[pool == selected] { (pool) } }
        }
    }
}

/// Configuration sets: each with its pool, TLS policy, maximum delivery time and sending state.
pub fn sets_page(session: &Session, registry: &Registry, notice: Option<&str>) -> Markup {
    let admin = session.role == Role::Admin;
    let body = html! {
        @if let Some(notice) = notice { p.notice { (notice) } }
        table {
            thead { tr { th { "Configuration set" } th { "Sending pool" } th { "TLS policy" } th { "Max delivery (s)" } th { "Sending" } th {} } }
            tbody {
                @for set in registry.configuration_sets() {
                    @let pool = set.sending_pool.as_deref().unwrap_or(DEFAULT_POOL);
                    @let tls = set.tls_policy.map_or("OPTIONAL", |t| t.as_str());
                    tr {
                        td { (set.name) }
                        @if admin {
                            td colspan="5" {
                                form.inline method="post" action="/console/sets/action" {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    input type="hidden" name="name" value=(set.name);
                                    (pool_select(registry, pool))
                                    select name="tls" aria-label="TLS policy" {
                                        option value="OPTIONAL" selected[tls == "OPTIONAL"] { "OPTIONAL" }
                                        option value="REQUIRE" selected[tls == "REQUIRE"] { "REQUIRE" }
                                    }
                                    input type="number" name="max_delivery_seconds" min="300" max="50400"
                                        value=[set.max_delivery_seconds] aria-label="Maximum delivery seconds";
                                    select name="sending" aria-label="Sending" {
                                        option value="enabled" selected[!set.sending_paused] { "enabled" }
                                        option value="paused" selected[set.sending_paused] { "paused" }
                                    }
                                    button type="submit" name="action" value="update" { "Save" }
                                    button type="submit" name="action" value="delete" { "Delete" }
                                }
                            }
                        } @else {
                            td { (pool) } td { (tls) }
                            td { (set.max_delivery_seconds.map(|s| s.to_string()).unwrap_or_default()) }
                            td { (if set.sending_paused { "paused" } else { "enabled" }) } td {}
                        }
                    }
                }
            }
        }
        @if admin {
            h2 { "Create a configuration set" }
            form method="post" action="/console/sets/action" {
                input type="hidden" name="csrf" value=(session.csrf);
                label for="new-set-name" { "Configuration set name" }
                input id="new-set-name" type="text" name="name" maxlength="64" required;
                label { "Sending pool" } (pool_select(registry, DEFAULT_POOL))
                input type="hidden" name="tls" value="OPTIONAL";
                button type="submit" name="action" value="create" { "Create" }
            }
        }
    };
    layout("Configuration sets", Some(session), body)
}

/// `POST /console/queue/action`: retry, hold, release, delete.
pub async fn queue_action(admin: &AdminState, form: &[(String, String)]) -> Result<(), ApiError> {
    use crate::admin::queue;
    let id = field(form, "id");
    match field(form, "action") {
        "delete" => queue::delete(admin, id).await,
        action => queue::act(admin, id, action).await,
    }
    .map(|_| ())
}

/// The queue filters of a request: configuration set, pool, recipient domain.
#[derive(Debug, Default)]
pub struct QueueFilter {
    pub set: String,
    pub pool: String,
    pub domain: String,
}

impl QueueFilter {
    pub fn from_query(query: &[(String, String)]) -> Self {
        Self {
            set: field(query, "set").to_string(),
            pool: field(query, "pool").to_string(),
            domain: field(query, "domain").to_ascii_lowercase(),
        }
    }

    fn keeps(&self, entry: &QueueEntry) -> bool {
        (self.set.is_empty() || entry.configuration_set.as_deref() == Some(self.set.as_str()))
            && (self.pool.is_empty() || entry.pool == self.pool)
            && (self.domain.is_empty()
                || entry.recipients.iter().any(|r| {
                    r.address
                        .rsplit_once('@')
                        .is_some_and(|(_, d)| d.eq_ignore_ascii_case(&self.domain))
                }))
    }
}

/// Queue: counts by state and age, the filtered messages with their last reply and source IP.
pub fn queue_page(session: &Session, entries: &[QueueEntry], filter: &QueueFilter) -> Markup {
    let shown: Vec<&QueueEntry> = entries.iter().filter(|e| filter.keeps(e)).collect();
    let count = |state: &str| {
        shown
            .iter()
            .filter(|e| format!("{:?}", e.state).eq_ignore_ascii_case(state))
            .count()
    };
    let older = |seconds: u64| shown.iter().filter(|e| e.age_seconds >= seconds).count();
    let body = html! {
        form method="get" action="/console/queue" {
            label for="f-set" { "Configuration set" } input id="f-set" type="text" name="set" value=(filter.set);
            label for="f-pool" { "Pool" } input id="f-pool" type="text" name="pool" value=(filter.pool);
            label for="f-domain" { "Recipient domain" } input id="f-domain" type="text" name="domain" value=(filter.domain);
            button type="submit" { "Filter" }
        }
        p {
            (shown.len()) " messages: " (count("ready")) " ready, " (count("inflight")) " in flight, "
            (count("waiting")) " waiting, " (count("held")) " held; "
            (older(3600)) " older than an hour, " (older(86_400)) " older than a day"
        }
        table {
            thead { tr { th { "Message" } th { "Age (s)" } th { "State" } th { "Set / pool" } th { "Recipients" } th { "Last reply" } th { "Source IP" } th {} } }
            tbody {
                @for entry in &shown {
                    tr {
                        td { (entry.id) }
                        td { (entry.age_seconds) }
                        td { (format!("{:?}", entry.state).to_lowercase()) }
                        td { (entry.configuration_set.as_deref().unwrap_or("-")) " / " (entry.pool) }
                        td { @for r in &entry.recipients { div { (r.address) } } }
                        td { (entry.last_error.as_deref().unwrap_or("")) }
                        td { (entry.last_source_ip.map(|ip| ip.to_string()).unwrap_or_default()) }
                        td {
                            @if session.role == Role::Admin {
                                form.inline method="post" action="/console/queue/action" {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    input type="hidden" name="id" value=(entry.id);
                                    @for (action, label) in [("retry", "Retry"), ("hold", "Hold"), ("release", "Release"), ("delete", "Delete")] {
                                        button type="submit" name="action" value=(action) { (label) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout("Queue", Some(session), body)
}
