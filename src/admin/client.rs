//! The command-line side of the admin socket: `poolrelay pools|ips|config-sets|queue|status`.
//!
//! Each command is one HTTP request over the Unix socket (hyper's client on a `UnixStream`).
//! Output is a table for people or, with `--json`, the API's JSON for scripts. An API error is
//! printed as `NotFoundException: ...` and makes the command exit non-zero.

use std::path::Path;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::UnixStream;

/// One admin action, as the CLI parsed it.
#[derive(Debug, Clone)]
pub enum Action {
    PoolsList,
    PoolsCreate(String),
    PoolsDelete(String),
    IpsList(Option<String>),
    IpsAdd {
        ip: String,
        pool: Option<String>,
        ehlo_hostname: Option<String>,
        weight: Option<u32>,
    },
    IpsMove {
        ip: String,
        pool: String,
    },
    IpsRemove(String),
    IpsSuspend {
        ip: String,
        suspended: bool,
    },
    SetsList,
    SetsCreate {
        name: String,
        pool: Option<String>,
    },
    SetsDelete(String),
    SetsSetPool {
        name: String,
        pool: String,
    },
    IdentitiesList,
    IdentitiesShow(String),
    QueueList,
    QueueAct {
        id: String,
        action: String,
    },
    QueueDelete(String),
    Status,
    Reload,
}

impl Action {
    fn request(&self) -> (&'static str, String, Option<Value>) {
        let base = "/v2/email";
        match self {
            Self::PoolsList => ("GET", format!("{base}/dedicated-ip-pools"), None),
            Self::PoolsCreate(name) => (
                "POST",
                format!("{base}/dedicated-ip-pools"),
                Some(json!({"PoolName": name})),
            ),
            Self::PoolsDelete(name) => {
                ("DELETE", format!("{base}/dedicated-ip-pools/{name}"), None)
            }
            Self::IpsList(None) => ("GET", format!("{base}/dedicated-ips"), None),
            Self::IpsList(Some(pool)) => {
                ("GET", format!("{base}/dedicated-ips?PoolName={pool}"), None)
            }
            Self::IpsAdd {
                ip,
                pool,
                ehlo_hostname,
                weight,
            } => (
                "POST",
                format!("{base}/dedicated-ips"),
                Some(
                    json!({"Ip": ip, "PoolName": pool, "EhloHostname": ehlo_hostname, "Weight": weight}),
                ),
            ),
            Self::IpsMove { ip, pool } => (
                "PUT",
                format!("{base}/dedicated-ips/{ip}/pool"),
                Some(json!({"DestinationPoolName": pool})),
            ),
            Self::IpsRemove(ip) => ("DELETE", format!("{base}/dedicated-ips/{ip}"), None),
            Self::IpsSuspend { ip, suspended } => (
                "PUT",
                format!("{base}/dedicated-ips/{ip}/suspension"),
                Some(json!({"Suspended": suspended})),
            ),
            Self::SetsList => ("GET", format!("{base}/configuration-sets"), None),
            Self::SetsCreate { name, pool } => (
                "POST",
                format!("{base}/configuration-sets"),
                Some(
                    json!({"ConfigurationSetName": name, "DeliveryOptions": {"SendingPoolName": pool}}),
                ),
            ),
            Self::SetsDelete(name) => ("DELETE", format!("{base}/configuration-sets/{name}"), None),
            Self::SetsSetPool { name, pool } => (
                "PUT",
                format!("{base}/configuration-sets/{name}/delivery-options"),
                Some(json!({"SendingPoolName": pool})),
            ),
            Self::IdentitiesList => ("GET", format!("{base}/identities"), None),
            Self::IdentitiesShow(name) => (
                "GET",
                format!(
                    "{base}/identities/{}",
                    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
                ),
                None,
            ),
            Self::QueueList => ("GET", format!("{base}/queue"), None),
            Self::QueueAct { id, action } => ("POST", format!("{base}/queue/{id}/{action}"), None),
            Self::QueueDelete(id) => ("DELETE", format!("{base}/queue/{id}"), None),
            Self::Status => ("GET", format!("{base}/status"), None),
            Self::Reload => ("POST", format!("{base}/reload"), None),
        }
    }
}

/// Sends one request; returns the HTTP status and the JSON body.
pub async fn call(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let stream = UnixStream::connect(socket)
        .await
        .with_context(|| format!("cannot connect to the admin socket {}", socket.display()))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "poolrelay")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, value))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|list| {
            list.iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A human rendering of a successful reply.
fn render(action: &Action, body: &Value) -> String {
    match action {
        Action::PoolsList => strings(&body["DedicatedIpPools"]).join("\n"),
        Action::SetsList => strings(&body["ConfigurationSets"]).join("\n"),
        Action::IpsList(_) => render_ips(body),
        Action::IdentitiesList => render_identities(body),
        Action::IdentitiesShow(name) => render_identity(name, body),
        Action::QueueList => {
            let mut out = format!(
                "{:<24} {:<9} {:>7} {:<24} {:<20} last error\n",
                "id", "state", "age", "pool", "sender"
            );
            for m in body["Messages"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "{:<24} {:<9} {:>6}s {:<24} {:<20} {}\n",
                    text(&m["id"]),
                    text(&m["state"]),
                    text(&m["age_seconds"]),
                    text(&m["pool"]),
                    text(&m["sender"]),
                    text(&m["last_error"])
                ));
            }
            out.trim_end().to_string()
        }
        Action::Status => format!(
            "poolrelay {}, up {}s, listening on {}, {} queued (oldest {}s)",
            text(&body["Version"]),
            text(&body["UptimeSeconds"]),
            strings(&body["Listeners"]).join(", "),
            text(&body["QueueSize"]),
            text(&body["OldestMessageAgeSeconds"])
        ),
        _ => "ok".into(),
    }
}

/// The `ips list` table.
fn render_ips(body: &Value) -> String {
    let mut out = format!(
        "{:<40} {:<28} {:>6}  {:<16} {:<32} suspension\n",
        "IP", "pool", "weight", "warm-up", "reverse DNS"
    );
    for ip in body["DedicatedIps"].as_array().into_iter().flatten() {
        let suspension = &ip["Suspension"];
        let sites: Vec<String> = suspension["Sites"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| text(&s["Site"]))
            .collect();
        let status = match text(&suspension["Status"]).as_str() {
            "SITES" => format!("SITES: {}", sites.join("; ")),
            other => other.to_string(),
        };
        let reverse = &ip["ReverseDns"];
        let reverse = match (&reverse["Ptr"], &reverse["ForwardConfirmed"]) {
            (Value::Null, Value::Null) => "not checked".to_string(),
            (Value::Null, _) => "no PTR".to_string(),
            (ptr, confirmed) => format!(
                "{} ({}{})",
                text(ptr),
                if confirmed == &Value::Bool(true) {
                    "FCrDNS ok"
                } else {
                    "not confirmed"
                },
                if reverse["MatchesEhlo"] == Value::Bool(true) {
                    ""
                } else {
                    ", not the EHLO name"
                }
            ),
        };
        out.push_str(&format!(
            "{:<40} {:<28} {:>6}  {:<16} {:<32} {}\n",
            text(&ip["Ip"]),
            text(&ip["PoolName"]),
            text(&ip["Weight"]),
            format!(
                "{} {}%",
                text(&ip["WarmupStatus"]),
                text(&ip["WarmupPercentage"])
            ),
            reverse,
            status
        ));
    }
    out.trim_end().to_string()
}
/// The `identities list` table.
fn render_identities(body: &Value) -> String {
    let mut out = format!("{:<40} {:<14} status\n", "identity", "type");
    for identity in body["EmailIdentities"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<40} {:<14} {}\n",
            text(&identity["IdentityName"]),
            text(&identity["IdentityType"]),
            text(&identity["VerificationStatus"])
        ));
    }
    out.trim_end().to_string()
}

fn render_identity(name: &str, body: &Value) -> String {
    let dkim = &body["DkimAttributes"];
    let mut out = format!(
        "{name} ({})\n  default configuration set: {}\n  DKIM: signing {}, status {}, selector {}, key {} ({})\n",
        text(&body["IdentityType"]),
        text(&body["ConfigurationSetName"]),
        if dkim["SigningEnabled"] == Value::Bool(true) {
            "on"
        } else {
            "off"
        },
        text(&dkim["Status"]),
        strings(&dkim["Tokens"]).join(", "),
        text(&dkim["CurrentSigningKeyLength"]),
        text(&dkim["SigningAttributesOrigin"]),
    );
    for record in dkim["DnsRecords"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  publish: {} {} \"{}\"\n",
            text(&record["Name"]),
            text(&record["Type"]),
            text(&record["Value"])
        ));
    }
    out.trim_end().to_string()
}

/// Runs one action and prints the result; an API error becomes an `Err` with its message.
pub async fn run(socket: &Path, action: Action, json_output: bool) -> anyhow::Result<()> {
    let (method, path, body) = action.request();
    let (status, reply) = call(socket, method, &path, body).await?;
    if status != 200 {
        bail!("{}: {}", text(&reply["__type"]), text(&reply["message"]));
    }
    if json_output {
        println!("{reply}");
    } else {
        println!("{}", render(&action, &reply));
    }
    Ok(())
}
