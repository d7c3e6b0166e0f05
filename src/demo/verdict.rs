//! What the demo concludes from what the relay answered and what the sink received.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::mail::{Outcome, Planned, demo_number, pool_addresses};
use crate::registry::Registry;
use crate::sink::SinkMessage;

/// One message's line in the table: number, set, pool, source IP, result.
pub(super) type Row = (usize, String, String, String, String);

/// The whole verdict of the first act.
#[derive(Default)]
pub(super) struct Verdict {
    pub(super) rows: Vec<Row>,
    /// Messages per source IP, per (configuration set, pool).
    pub(super) summary: BTreeMap<(String, String), BTreeMap<String, usize>>,
    pub(super) delivered: usize,
    pub(super) misrouted: usize,
    pub(super) missing: usize,
    pub(super) unexpected: usize,
}

impl Verdict {
    pub(super) fn judge(
        plans: &[Planned],
        outcomes: &BTreeMap<usize, Outcome>,
        received: &[SinkMessage],
        registry: &Registry,
    ) -> Self {
        // Where each message arrived from, whether it arrived clean, and over TLS.
        let mut arrived: BTreeMap<usize, (IpAddr, bool, bool)> = BTreeMap::new();
        for message in received {
            if let Some(number) = demo_number(&message.content) {
                let clean = message.violation.is_none()
                    && !String::from_utf8_lossy(&message.content).contains("X-SES-");
                arrived.insert(number, (message.peer.ip(), clean, message.tls));
            }
        }
        let mut verdict = Verdict {
            delivered: arrived.len(),
            ..Verdict::default()
        };
        for plan in plans {
            let set = plan
                .configuration_set
                .clone()
                .unwrap_or_else(|| "(none)".into());
            let pool = plan.pool.clone().unwrap_or_else(|_| "-".into());
            let outcome = outcomes.get(&plan.number);
            let (source, result) = verdict.one(plan, outcome, arrived.get(&plan.number), registry);
            *verdict
                .summary
                .entry((set.clone(), pool.clone()))
                .or_default()
                .entry(source.clone())
                .or_default() += 1;
            verdict.rows.push((plan.number, set, pool, source, result));
        }
        verdict
    }

    /// The source IP and result of one message, counting what went wrong.
    fn one(
        &mut self,
        plan: &Planned,
        outcome: Option<&Outcome>,
        arrived: Option<&(IpAddr, bool, bool)>,
        registry: &Registry,
    ) -> (String, String) {
        match (outcome, arrived, &plan.pool) {
            (Some(o), None, Err(_)) if !o.accepted => (
                "-".to_string(),
                format!("refused as expected: {}", o.relay_reply),
            ),
            (Some(o), Some(&(ip, clean, tls)), Ok(pool)) if o.accepted => {
                let allowed = pool_addresses(registry, pool);
                let result = if !allowed.is_empty() && !allowed.contains(&ip) {
                    self.misrouted += 1;
                    "WRONG POOL"
                } else if !clean {
                    self.unexpected += 1;
                    "delivered, but content not clean"
                } else if tls {
                    "delivered over TLS"
                } else {
                    "delivered"
                };
                (ip.to_string(), result.to_string())
            }
            (Some(o), None, Ok(_)) if o.accepted => {
                self.missing += 1;
                ("-".to_string(), "accepted but not delivered".to_string())
            }
            (outcome, _, _) => {
                self.unexpected += 1;
                let reply = outcome.map_or("no reply", |o| o.relay_reply.as_str());
                ("-".to_string(), format!("unexpected: {reply}"))
            }
        }
    }

    pub(super) fn is_clean(&self) -> bool {
        self.misrouted + self.missing + self.unexpected == 0
    }

    /// One line per message for a small run, one line per (set, pool) for a large one.
    pub(super) fn print(&self, per_message: bool) {
        if per_message {
            println!(
                "\n{:<4} {:<16} {:<28} {:<11} result",
                "msg", "configuration set", "pool", "source IP"
            );
            for (number, set, pool, source, result) in &self.rows {
                println!("{number:<4} {set:<16} {pool:<28} {source:<11} {result}");
            }
        } else {
            println!(
                "\n{:<16} {:<28} messages per source IP",
                "configuration set", "pool"
            );
            for ((set, pool), sources) in &self.summary {
                let spread: Vec<String> =
                    sources.iter().map(|(ip, n)| format!("{ip}: {n}")).collect();
                println!("{set:<16} {pool:<28} {}", spread.join(", "));
            }
        }
    }
}
