//! `poolrelay demo`: the relay on the example config, end to end, in one command.
//!
//! It starts a recording sink on 127.0.0.1, starts the relay with the config's pools, IPs and
//! configuration sets (listening on a free loopback port, spooling to a temporary folder, every
//! domain routed to the sink), sends mail through each configuration set (plus one message
//! without the header and one naming a set that does not exist) and shows where each message
//! left from. Then the sink starts refusing one IP of a pool with a blocklist reply, as a
//! receiver listing it would: that pool's mail moves to its other IPs, nothing bounces, the other
//! pools carry on, and the IP shows as suspended for the sink's site. It fails if any message
//! arrives from an address outside its pool, or if any of that does not hold.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::config;
use crate::outbound::client::{Content, MailRequest, SmtpClient, Timeouts};
use crate::outbound::connect::connect_from;
use crate::registry::{PoolMembers, Registry};
use crate::server::Relay;
use crate::settings::route::{DomainPattern, HostPort, Route};
use crate::sink::Sink;

/// The name of a configuration set that is not in the config, to show the refusal.
const UNKNOWN_SET: &str = "no-such-set";
/// Client connections used to send the demo mail.
const CLIENTS: usize = 8;

struct Planned {
    number: usize,
    configuration_set: Option<String>,
    /// `Err` for a set the relay must refuse.
    pool: Result<String, String>,
}

struct Outcome {
    relay_reply: String,
    accepted: bool,
}

fn message_content(number: usize, configuration_set: Option<&str>) -> Vec<u8> {
    let mut content = String::new();
    content.push_str("From: Demo Sender <demo@example.test>\r\n");
    content.push_str(&format!("To: user{number}@example.test\r\n"));
    content.push_str(&format!("Subject: poolrelay demo #{number}\r\n"));
    content.push_str(&format!("Message-ID: <demo-{number}@example.test>\r\n"));
    if let Some(set) = configuration_set {
        content.push_str(&format!("X-SES-CONFIGURATION-SET: {set}\r\n"));
        content.push_str("X-SES-MESSAGE-TAGS: campaign=demo\r\n");
    }
    content.push_str("\r\nHello from poolrelay.\r\n.a line that starts with a dot\r\n");
    content.into_bytes()
}

fn demo_number(content: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(content);
    let start = text.find("Subject: poolrelay demo #")? + "Subject: poolrelay demo #".len();
    text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn pool_addresses(registry: &Registry, pool: &str) -> Vec<IpAddr> {
    match registry.pool_members(pool) {
        PoolMembers::Addresses(list) => list.into_iter().map(|s| s.address).collect(),
        PoolMembers::HostDefault => Vec::new(),
    }
}

/// Sends `plans` through the relay over `CLIENTS` reused connections.
async fn send_all(
    relay: SocketAddr,
    plans: &[Planned],
) -> anyhow::Result<BTreeMap<usize, Outcome>> {
    let plans: Arc<Vec<(usize, Option<String>)>> = Arc::new(
        plans
            .iter()
            .map(|p| (p.number, p.configuration_set.clone()))
            .collect(),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for client_index in 0..CLIENTS.min(plans.len()) {
        let plans = plans.clone();
        tasks.spawn(async move {
            let mut outcomes = Vec::new();
            let stream = connect_from(None, relay, Duration::from_secs(10)).await?;
            let mut client = SmtpClient::open(
                stream,
                None,
                "demo.client.test",
                "relay",
                None,
                Timeouts::default(),
            )
            .await?;
            for (number, set) in plans.iter().skip(client_index).step_by(CLIENTS) {
                let content = message_content(*number, set.as_deref());
                let recipients = [format!("user{number}@example.test")];
                let request = MailRequest {
                    sender: "demo@example.test",
                    recipients: &recipients,
                    size: content.len() as u64,
                    eight_bit_mime: false,
                    smtputf8: false,
                };
                let outcome = client.send(&request, Content::Memory(&content)).await?;
                let reply = outcome.replies.first().cloned();
                let accepted = reply.as_ref().is_some_and(|r| r.is_positive());
                outcomes.push((
                    *number,
                    Outcome {
                        relay_reply: reply.map_or_else(|| "no reply".into(), |r| r.to_string()),
                        accepted,
                    },
                ));
            }
            client.quit().await;
            anyhow::Ok(outcomes)
        });
    }
    let mut all = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        for (number, outcome) in joined.context("demo client failed")?? {
            all.insert(number, outcome);
        }
    }
    Ok(all)
}

/// Runs the demo with `per_set` messages for each configuration set.
pub async fn run(config_path: &Path, per_set: usize) -> anyhow::Result<()> {
    let mut config = config::load(config_path).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    crate::server::install_crypto_provider();
    // The sink offers STARTTLS (self-signed), so sets with tls_policy = "REQUIRE" are delivered too.
    let sink = Sink::start_with_self_signed_tls("127.0.0.1:0".parse()?)
        .await
        .context("cannot start the sink")?;
    let spool = std::env::temp_dir().join(format!("poolrelay-demo-{}", std::process::id()));
    config.spool_dir = spool.join("spool");
    config.events_path = Some(spool.join("events.jsonl"));
    config.admin.socket = None;
    config.metrics_listen = None;
    config.smtp.listen = vec!["127.0.0.1:0".parse()?];
    config.routes = vec![Route {
        domain: DomainPattern::Any,
        next_hop: HostPort {
            host: sink.addr().ip().to_string(),
            port: sink.addr().port(),
        },
        require_tls: false,
        verify_tls: false,
    }];
    let registry = config.registry.clone();
    println!("poolrelay demo — config {}", config_path.display());
    println!(
        "recording sink on {}; spool in {}\n",
        sink.addr(),
        spool.display()
    );
    print!("{}", config.summary());
    println!();

    let relay = Relay::start(config).await?;
    let relay_addr = relay.smtp_addrs()[0];

    let mut sets: Vec<Option<String>> = registry
        .configuration_sets()
        .map(|s| Some(s.name.clone()))
        .collect();
    sets.push(None);
    sets.push(Some(UNKNOWN_SET.to_string()));
    let mut plans = Vec::new();
    for set in &sets {
        for _ in 0..per_set {
            let pool = registry.pool_for(set.as_deref()).map_err(|e| e.to_string());
            plans.push(Planned {
                number: plans.len() + 1,
                configuration_set: set.clone(),
                pool,
            });
        }
    }
    let started = Instant::now();
    println!(
        "sending {} messages through the relay at {relay_addr} ...",
        plans.len()
    );
    let outcomes = send_all(relay_addr, &plans).await?;
    let accepted = outcomes.values().filter(|o| o.accepted).count();
    let received = sink.wait_for(accepted, Duration::from_secs(60)).await;
    let elapsed = started.elapsed();

    let mut tls_of: BTreeMap<usize, bool> = BTreeMap::new();
    let mut source_of: BTreeMap<usize, (IpAddr, bool)> = BTreeMap::new();
    for message in &received {
        if let Some(number) = demo_number(&message.content) {
            let clean = message.violation.is_none()
                && !String::from_utf8_lossy(&message.content).contains("X-SES-");
            source_of.insert(number, (message.peer.ip(), clean));
            tls_of.insert(number, message.tls);
        }
    }

    let mut misrouted = 0;
    let mut missing = 0;
    let mut unexpected = 0;
    let mut rows = Vec::new();
    let mut summary: BTreeMap<(String, String), BTreeMap<String, usize>> = BTreeMap::new();
    for plan in &plans {
        let outcome = outcomes.get(&plan.number);
        let set = plan
            .configuration_set
            .clone()
            .unwrap_or_else(|| "(none)".into());
        let pool = plan.pool.clone().unwrap_or_else(|_| "-".into());
        let (source, result) = match (outcome, source_of.get(&plan.number), &plan.pool) {
            (Some(o), None, Err(_)) if !o.accepted => (
                "-".to_string(),
                format!("refused as expected: {}", o.relay_reply),
            ),
            (Some(o), Some((ip, clean)), Ok(pool)) if o.accepted => {
                let allowed = pool_addresses(&registry, pool);
                if !allowed.is_empty() && !allowed.contains(ip) {
                    misrouted += 1;
                    (ip.to_string(), "WRONG POOL".to_string())
                } else if !clean {
                    unexpected += 1;
                    (
                        ip.to_string(),
                        "delivered, but content not clean".to_string(),
                    )
                } else if tls_of.get(&plan.number) == Some(&true) {
                    (ip.to_string(), "delivered over TLS".to_string())
                } else {
                    (ip.to_string(), "delivered".to_string())
                }
            }
            (Some(o), None, Ok(_)) if o.accepted => {
                missing += 1;
                ("-".to_string(), "accepted but not delivered".to_string())
            }
            (outcome, _, _) => {
                unexpected += 1;
                (
                    "-".to_string(),
                    format!(
                        "unexpected: {}",
                        outcome.map_or("no reply", |o| o.relay_reply.as_str())
                    ),
                )
            }
        };
        *summary
            .entry((set.clone(), pool.clone()))
            .or_default()
            .entry(source.clone())
            .or_default() += 1;
        rows.push((plan.number, set, pool, source, result));
    }

    if per_set == 1 {
        println!(
            "\n{:<4} {:<16} {:<28} {:<11} result",
            "msg", "configuration set", "pool", "source IP"
        );
        for (number, set, pool, source, result) in &rows {
            println!("{number:<4} {set:<16} {pool:<28} {source:<11} {result}");
        }
    } else {
        println!(
            "\n{:<16} {:<28} messages per source IP",
            "configuration set", "pool"
        );
        for ((set, pool), sources) in &summary {
            let spread: Vec<String> = sources.iter().map(|(ip, n)| format!("{ip}: {n}")).collect();
            println!("{set:<16} {pool:<28} {}", spread.join(", "));
        }
    }
    println!(
        "\n{} sent, {} accepted, {} delivered to the sink in {:.2}s; {} from a wrong pool, {} missing",
        plans.len(),
        accepted,
        source_of.len(),
        elapsed.as_secs_f64(),
        misrouted,
        missing
    );
    let isolation = if misrouted + missing + unexpected > 0 {
        Err(anyhow::anyhow!(
            "the demo found problems (see the table above)"
        ))
    } else {
        blocklist_act(&relay, &sink, &registry, per_set, accepted).await
    };
    relay.shutdown().await;
    let events = std::fs::read_to_string(spool.join("events.jsonl")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&spool);
    isolation?;
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for line in events.lines() {
        if let Ok(event) = serde_json::from_str::<serde_json::Value>(line) {
            let kind = event["eventType"].as_str().unwrap_or("?").to_string();
            *kinds.entry(kind).or_default() += 1;
        }
    }
    let kinds: Vec<String> = kinds
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    println!("event log: {}", kinds.join(", "));
    println!("every message left from an IP of its configuration set's pool");
    Ok(())
}

/// The second act: the receiver blocklists one IP of a pool with two or more. Mail of that pool
/// moves to its other IPs (nothing bounced), other pools carry on as before, and the relay shows
/// the IP suspended for that site. Returns an error if any of that does not hold.
async fn blocklist_act(
    relay: &Relay,
    sink: &Sink,
    registry: &Registry,
    per_set: usize,
    already: usize,
) -> anyhow::Result<()> {
    let Some((pool, blocked)) = registry.pool_names().find_map(|pool| {
        let addresses = pool_addresses(registry, pool);
        (addresses.len() >= 2).then(|| (pool.to_string(), addresses[0]))
    }) else {
        return Ok(());
    };
    let reply = format!(
        "554 5.7.1 Service unavailable; Client host [{blocked}] blocked using zen.spamhaus.org"
    );
    println!(
        "
the receiver now refuses {blocked} (pool {pool}): \"{reply}\""
    );
    sink.refuse(
        blocked,
        Some(crate::sink::Refusal {
            at_greeting: false,
            reply,
        }),
    );
    let mut plans = Vec::new();
    for set in registry.configuration_sets() {
        let Ok(set_pool) = registry.pool_for(Some(&set.name)) else {
            continue;
        };
        for _ in 0..per_set.max(3) {
            plans.push(Planned {
                number: 10_000 + plans.len(),
                configuration_set: Some(set.name.clone()),
                pool: Ok(set_pool.clone()),
            });
        }
    }
    let outcomes = send_all(relay.smtp_addrs()[0], &plans).await?;
    let accepted = outcomes.values().filter(|o| o.accepted).count();
    let received = sink
        .wait_for(already + accepted, Duration::from_secs(60))
        .await;
    let mut per_set: BTreeMap<String, BTreeMap<IpAddr, usize>> = BTreeMap::new();
    let mut problems = Vec::new();
    for message in &received {
        if message.sender.is_empty() {
            problems.push("a bounce was sent".to_string());
        }
        let Some(number) = demo_number(&message.content).filter(|n| *n >= 10_000) else {
            continue;
        };
        let Some(plan) = plans.iter().find(|p| p.number == number) else {
            continue;
        };
        let set = plan.configuration_set.clone().unwrap_or_default();
        let pool = plan.pool.clone().unwrap_or_default();
        let source = message.peer.ip();
        if source == blocked || !pool_addresses(registry, &pool).contains(&source) {
            problems.push(format!("{set} left from {source}"));
        }
        *per_set.entry(set).or_default().entry(source).or_default() += 1;
    }
    let delivered: usize = per_set.values().flat_map(|m| m.values()).sum();
    if delivered != accepted {
        problems.push(format!("{accepted} accepted, {delivered} delivered"));
    }
    println!("{:<16} messages per source IP", "configuration set");
    for (set, sources) in &per_set {
        let spread: Vec<String> = sources.iter().map(|(ip, n)| format!("{ip}: {n}")).collect();
        println!("{set:<16} {}", spread.join(", "));
    }
    let health = relay.ip_health(blocked);
    match health.sites.first() {
        Some(site) => println!(
            "{blocked} is suspended for site {} for {} s (rule {}); nothing bounced",
            site.site,
            site.until.saturating_sub(crate::spool::unix_now()),
            site.rule
        ),
        None => problems.push(format!("{blocked} was not suspended")),
    }
    if !problems.is_empty() {
        bail!("the blocklist act found problems: {}", problems.join("; "));
    }
    println!("the other pools did not notice: reputation stays isolated per pool");
    Ok(())
}
