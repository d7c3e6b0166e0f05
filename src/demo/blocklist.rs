//! The demo's second act: a receiver blocklists one IP.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::bail;

use super::mail::{Planned, demo_number, pool_addresses, send_all};
use crate::registry::Registry;
use crate::server::Relay;
use crate::sink::{Sink, SinkMessage};

/// The second act: the receiver blocklists one IP of a pool with two or more. Mail of that pool
/// moves to its other IPs (nothing bounced), other pools carry on as before, and the relay shows
/// the IP suspended for that site. Returns an error if any of that does not hold.
pub(super) async fn blocklist_act(
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
    let plans = plan(registry, per_set.max(3));
    let outcomes = send_all(relay.smtp_addrs()[0], &plans).await?;
    let accepted = outcomes.values().filter(|o| o.accepted).count();
    let received = sink
        .wait_for(already + accepted, Duration::from_secs(60))
        .await;
    let (per_set, mut problems) = sources(&received, &plans, registry, blocked);
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

/// `count` messages for every configuration set with a pool, numbered from 10,000.
fn plan(registry: &Registry, count: usize) -> Vec<Planned> {
    let mut plans = Vec::new();
    for set in registry.configuration_sets() {
        let Ok(set_pool) = registry.pool_for(Some(&set.name)) else {
            continue;
        };
        for _ in 0..count {
            plans.push(Planned {
                number: 10_000 + plans.len(),
                configuration_set: Some(set.name.clone()),
                pool: Ok(set_pool.clone()),
            });
        }
    }
    plans
}

/// Messages per source IP per configuration set in the second act, and what went wrong: a
/// bounce, or mail from the blocked IP or from outside its pool.
fn sources(
    received: &[SinkMessage],
    plans: &[Planned],
    registry: &Registry,
    blocked: IpAddr,
) -> (BTreeMap<String, BTreeMap<IpAddr, usize>>, Vec<String>) {
    let mut per_set: BTreeMap<String, BTreeMap<IpAddr, usize>> = BTreeMap::new();
    let mut problems = Vec::new();
    for message in received {
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
    (per_set, problems)
}
