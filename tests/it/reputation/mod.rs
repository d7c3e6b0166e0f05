//! Health and shaping: a site refusing an IP suspends that (IP, site) pair while the pool's other
//! IPs deliver; an unbindable address is suspended until it can be bound; operators suspend and
//! resume by API; shaping limits hold under load without starving other sites.

mod health;
mod shaping;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use crate::common::http::call;
use crate::common::*;
use poolrelay::sink::Sink;
use serde_json::Value;

pub(super) const SPAMHAUS: &str =
    "554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.spamhaus.org";
pub(super) const TOO_MANY: &str = "421 4.7.0 Too many connections from your IP, closing";

/// Sends `count` messages for configuration set `set` to `recipient`, all accepted.
pub(super) async fn send(relay: SocketAddr, set: &str, recipient: &str, count: usize) {
    let (mut client, _) = RawClient::connect(relay).await;
    for n in 0..count {
        client
            .send_for_set(set, recipient, &format!("{set} {n}"))
            .await;
    }
}

/// A relay config: `[smtp]` on a free port, `sections` as written, a `[[route]]` per
/// (domain, next hop), and configuration set "s" sending from pool "p" of `ips`.
pub(super) fn config_with_pool(
    sections: &str,
    routes: &[(&str, SocketAddr)],
    ips: &[&str],
) -> String {
    let mut config = smtp_section("");
    config.push_str(sections);
    for (domain, next_hop) in routes {
        config.push_str(&format!(
            r#"
[[route]]
domain = "{domain}"
next_hop = "{next_hop}"
"#
        ));
    }
    config.push_str(
        r#"
[[pool]]
name = "p"
"#,
    );
    for address in ips {
        config.push_str(&format!(
            r#"[[ip]]
address = "{address}"
pool = "p"
"#
        ));
    }
    config.push_str(
        r#"[[configuration_set]]
name = "s"
sending_pool = "p"
"#,
    );
    config
}

pub(super) async fn ip_state(socket: &Path, address: &str) -> Value {
    let (status, body) = call(
        socket,
        "GET",
        &format!("/v2/email/dedicated-ips/{address}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["DedicatedIp"].clone()
}

/// Polls the API until `check` accepts the IP's state (or `WAIT` passes).
pub(super) async fn wait_for_ip_state(
    socket: &Path,
    address: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let check = &check;
    let accepted = eventually_async(move || async move {
        let state = ip_state(socket, address).await;
        check(&state).then_some(state)
    })
    .await;
    match accepted {
        Some(state) => state,
        None => ip_state(socket, address).await,
    }
}

pub(super) fn per_ip(messages: &[poolrelay::sink::SinkMessage]) -> BTreeMap<IpAddr, usize> {
    let mut counts = BTreeMap::new();
    for message in messages {
        *counts.entry(message.peer.ip()).or_default() += 1;
    }
    counts
}

pub(super) async fn sink_on(address: &str) -> Sink {
    Sink::start(format!("{address}:0").parse().expect("address"))
        .await
        .expect("sink starts")
}
