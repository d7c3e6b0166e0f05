//! The demo's mail: numbered messages naming a configuration set, sent through the relay over
//! a few reused connections, and found again at the sink by their number.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::outbound::client::{Content, MailRequest, SmtpClient, Timeouts};
use crate::outbound::connect::connect_from;
use crate::registry::{PoolMembers, Registry};

/// Client connections used to send the demo mail.
const CLIENTS: usize = 8;

pub(super) struct Planned {
    pub(super) number: usize,
    pub(super) configuration_set: Option<String>,
    /// `Err` for a set the relay must refuse.
    pub(super) pool: Result<String, String>,
}

pub(super) struct Outcome {
    pub(super) relay_reply: String,
    pub(super) accepted: bool,
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

pub(super) fn demo_number(content: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(content);
    let start = text.find("Subject: poolrelay demo #")? + "Subject: poolrelay demo #".len();
    text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

pub(super) fn pool_addresses(registry: &Registry, pool: &str) -> Vec<IpAddr> {
    match registry.pool_members(pool) {
        PoolMembers::Addresses(list) => list.into_iter().map(|s| s.address).collect(),
        PoolMembers::HostDefault => Vec::new(),
    }
}

/// Sends `plans` through the relay over `CLIENTS` reused connections.
pub(super) async fn send_all(
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
