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

mod blocklist;
mod console;
mod mail;
mod verdict;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::{self, Config};
use crate::registry::Registry;
use crate::server::Relay;
use crate::settings::route::{DomainPattern, HostPort, Route};
use crate::sink::Sink;
use blocklist::blocklist_act;
use mail::{Planned, send_all};
use verdict::Verdict;

/// The name of a configuration set that is not in the config, to show the refusal.
const UNKNOWN_SET: &str = "no-such-set";

/// The config as the demo runs it: a temporary spool and event log, a free loopback port, no
/// admin socket or metrics listener, and every domain routed to the sink.
fn demo_config(config: &mut Config, sink: &Sink, spool: &Path) -> anyhow::Result<()> {
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
    Ok(())
}

/// `per_set` messages for every configuration set, for none, and for one that does not exist.
fn plan(registry: &Registry, per_set: usize) -> Vec<Planned> {
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
    plans
}

/// "3 Send, 3 Delivery, ..." from the event log.
fn event_counts(events: &str) -> String {
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
    kinds.join(", ")
}

/// Prints where the console is and how to sign in, then waits for Ctrl-C.
async fn keep_console_open(relay: &Relay, login: &console::ConsoleLogin) {
    if let Some(api) = relay.api_addrs().first() {
        println!("\nconsole: http://{api}/console/");
        println!(
            "sign in as {} with the one-time password {}",
            login.username, login.password
        );
        println!("(the relay keeps running; Ctrl-C stops it)");
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs the demo with `per_set` messages for each configuration set.
pub async fn run(config_path: &Path, per_set: usize, with_console: bool) -> anyhow::Result<()> {
    crate::server::install_crypto_provider();
    // The sink offers STARTTLS (self-signed), so sets with tls_policy = "REQUIRE" are delivered too.
    let sink = Sink::start_with_self_signed_tls("127.0.0.1:0".parse()?)
        .await
        .context("cannot start the sink")?;
    let spool: PathBuf =
        std::env::temp_dir().join(format!("poolrelay-demo-{}", std::process::id()));
    // With the console, the relay runs on a copy of the config (the console writes to it).
    let (loaded_from, login) = match with_console {
        true => {
            let api = "127.0.0.1:0".parse()?;
            let (path, login) = console::write_config(config_path, &spool, sink.addr(), api)?;
            (path, Some(login))
        }
        false => (config_path.to_path_buf(), None),
    };
    let mut config = config::load(&loaded_from).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    demo_config(&mut config, &sink, &spool)?;
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
    let plans = plan(&registry, per_set);
    let started = Instant::now();
    println!(
        "sending {} messages through the relay at {relay_addr} ...",
        plans.len()
    );
    let outcomes = send_all(relay_addr, &plans).await?;
    let accepted = outcomes.values().filter(|o| o.accepted).count();
    let received = sink.wait_for(accepted, Duration::from_secs(60)).await;
    let elapsed = started.elapsed();
    let verdict = Verdict::judge(&plans, &outcomes, &received, &registry);
    verdict.print(per_set == 1);
    println!(
        "\n{} sent, {} accepted, {} delivered to the sink in {:.2}s; {} from a wrong pool, {} missing",
        plans.len(),
        accepted,
        verdict.delivered,
        elapsed.as_secs_f64(),
        verdict.misrouted,
        verdict.missing
    );
    let isolation = if verdict.is_clean() {
        blocklist_act(&relay, &sink, &registry, per_set, accepted).await
    } else {
        Err(anyhow::anyhow!(
            "the demo found problems (see the table above)"
        ))
    };
    if let (Some(login), Ok(())) = (&login, &isolation) {
        keep_console_open(&relay, login).await;
    }
    relay.shutdown().await;
    let events = std::fs::read_to_string(spool.join("events.jsonl")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&spool);
    isolation?;
    println!("event log: {}", event_counts(&events));
    println!("every message left from an IP of its configuration set's pool");
    Ok(())
}
