//! Health: (IP, site) suspensions after refusals, operator suspensions, unbindable addresses.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::common::http::{call, get_text};
use crate::common::*;
use poolrelay::sink::Refusal;
use serde_json::json;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_ip_is_suspended_for_that_site_only_while_the_other_ip_delivers() {
    // Two sites: A refuses 127.0.0.2 at RCPT (blocklist), B refuses 127.0.0.3 at the greeting.
    let site_a = sink_on("127.0.0.1").await;
    let site_b = sink_on("127.0.1.1").await;
    site_a.refuse(
        ip("127.0.0.2"),
        Some(Refusal {
            at_greeting: false,
            reply: SPAMHAUS.into(),
        }),
    );
    site_b.refuse(
        ip("127.0.0.3"),
        Some(Refusal {
            at_greeting: true,
            reply: TOO_MANY.into(),
        }),
    );
    let config = config_with_pool(
        r#"[admin]
socket = "var/admin.sock"
[queue]
retry_interval = "1h"
"#,
        &[("a.test", site_a.addr()), ("b.test", site_b.addr())],
        &["127.0.0.2", "127.0.0.3"],
    );
    let relay = TestRelay::start(&config).await;
    let socket = relay.dir.path().join("var/admin.sock");
    send(relay.addr, "s", "user@a.test", 10).await;
    send(relay.addr, "s", "user@b.test", 10).await;

    let at_a = site_a.wait_for(10, WAIT).await;
    let at_b = site_b.wait_for(10, WAIT).await;
    assert_eq!(
        per_ip(&at_a),
        BTreeMap::from([(ip("127.0.0.3"), 10)]),
        "site A only from the IP it accepts"
    );
    assert_eq!(
        per_ip(&at_b),
        BTreeMap::from([(ip("127.0.0.2"), 10)]),
        "site B only from the IP it accepts"
    );
    // The refusals really happened, and were not bounces: nothing came back to the sender.
    assert!(
        site_a
            .rcpt_attempts()
            .iter()
            .any(|a| a.peer.ip() == ip("127.0.0.2") && a.code == 554),
        "site A refused 127.0.0.2 at least once"
    );
    assert!(
        site_b
            .connections()
            .iter()
            .any(|c| c.ip() == ip("127.0.0.3"))
    );
    for message in at_a.iter().chain(&at_b) {
        assert_ne!(message.sender, "", "no bounce was sent");
    }

    // The API says which IP is suspended for which site, and why.
    let two = ip_state(&socket, "127.0.0.2").await;
    assert_eq!(two["Suspension"]["Status"], "SITES", "{two}");
    let sites = two["Suspension"]["Sites"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(sites.len(), 1, "{two}");
    assert_eq!(sites[0]["Site"], "127.0.0.1");
    assert_eq!(sites[0]["Rule"], "blocklist");
    assert_eq!(sites[0]["Level"], 1);
    assert!(
        sites[0]["Until"].as_u64() > sites[0]["Since"].as_u64(),
        "{two}"
    );
    let three = ip_state(&socket, "127.0.0.3").await;
    let sites = three["Suspension"]["Sites"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(sites.len(), 1, "{three}");
    assert_eq!(sites[0]["Site"], "127.0.1.1");
    assert_eq!(sites[0]["Rule"], "too-many-connections");

    // So do the metrics.
    let (status, metrics) = get_text(&socket, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("poolrelay_ip_suspended_sites{source_ip=\"127.0.0.2\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("poolrelay_ip_suspended_sites{source_ip=\"127.0.0.3\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("poolrelay_ip_unbindable{source_ip=\"127.0.0.2\"} 0"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_refused_everywhere_waits_instead_of_bouncing_and_an_operator_can_resume_it() {
    let sink = start_sink().await;
    sink.refuse(
        ip("127.0.0.4"),
        Some(Refusal {
            at_greeting: false,
            reply: SPAMHAUS.replace("127.0.0.2", "127.0.0.4"),
        }),
    );
    let config = config_with_pool(
        r#"[admin]
socket = "var/admin.sock"
[queue]
retry_interval = "1h"
[events]
path = "var/events.jsonl"
"#,
        &[("*", sink.addr())],
        &["127.0.0.4"],
    );
    let relay = TestRelay::start(&config).await;
    let socket = relay.dir.path().join("var/admin.sock");
    send(relay.addr, "s", "user@example.test", 1).await;
    let attempts = sink.wait_for_rcpt_attempts(1, WAIT).await;
    assert_eq!(attempts[0].code, 554);

    // The 5xx is about the IP: the message stays queued, deferred with a 4.7.0 reason.
    let queue = relay.relay.as_ref().expect("running").queue();
    let entry = eventually_async(move || async move {
        let list = queue.list().await.expect("queue lists");
        list.into_iter()
            .find(|e| e.attempts >= 1 && e.last_error.is_some())
    })
    .await
    .expect("the message stays queued with a reason");
    let reason = entry.last_error.clone().unwrap_or_default();
    assert!(
        reason.starts_with("451 4.7.0") && reason.contains("blocked using zen.spamhaus.org"),
        "{reason}"
    );
    assert_eq!(
        ip_state(&socket, "127.0.0.4").await["Suspension"]["Status"],
        "SITES"
    );
    // The event log says why, in SES's words.
    let events = relay.dir.path().join("var/events.jsonl");
    let delay = eventually(|| {
        std::fs::read_to_string(&events)
            .ok()?
            .lines()
            .find(|l| l.contains("\"DeliveryDelay\""))
            .map(str::to_string)
    })
    .await
    .expect("a DeliveryDelay event");
    assert!(delay.contains("\"delayType\":\"IPFailure\""), "{delay}");

    // The receiver delists the IP; the operator resumes it and retries the message.
    sink.refuse(ip("127.0.0.4"), None);
    let (status, body) = call(
        &socket,
        "PUT",
        "/v2/email/dedicated-ips/127.0.0.4/suspension",
        Some(json!({"Suspended": false})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        ip_state(&socket, "127.0.0.4").await["Suspension"]["Status"],
        "NONE"
    );
    // The resume retries the pool's waiting mail at once (its retry time is an hour away).
    let received = sink.wait_for(1, WAIT).await;
    assert_eq!(per_ip(&received), BTreeMap::from([(ip("127.0.0.4"), 1)]));
    assert!(
        sink.messages().iter().all(|m| !m.sender.is_empty()),
        "no bounce"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_suspension_takes_the_ip_out_of_rotation_and_is_saved() {
    let sink = start_sink().await;
    let config = config_with_pool(
        "[admin]\nsocket = \"var/admin.sock\"\n",
        &[("*", sink.addr())],
        &["127.0.0.2", "127.0.0.3"],
    );
    let relay = TestRelay::start(&config).await;
    let socket = relay.dir.path().join("var/admin.sock");
    for (body, expected) in [(json!({"Suspended": "yes"}), 400), (json!({}), 400)] {
        let (status, _) = call(
            &socket,
            "PUT",
            "/v2/email/dedicated-ips/127.0.0.2/suspension",
            Some(body),
        )
        .await;
        assert_eq!(status, expected);
    }
    let (status, _) = call(
        &socket,
        "PUT",
        "/v2/email/dedicated-ips/127.0.0.77/suspension",
        Some(json!({"Suspended": true})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = call(
        &socket,
        "PUT",
        "/v2/email/dedicated-ips/127.0.0.2/suspension",
        Some(json!({"Suspended": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let state = ip_state(&socket, "127.0.0.2").await;
    assert_eq!(state["Suspension"]["Status"], "OPERATOR", "{state}");
    assert_eq!(state["Suspension"]["Operator"], true);
    let saved = std::fs::read_to_string(relay.dir.path().join("poolrelay.toml")).expect("config");
    assert!(saved.contains("suspended = true"), "{saved}");
    let (_, metrics) = get_text(&socket, "/metrics").await;
    assert!(
        metrics.contains("poolrelay_ip_operator_suspended{source_ip=\"127.0.0.2\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("poolrelay_ip_warmup_percentage{source_ip=\"127.0.0.2\"} 100"),
        "{metrics}"
    );

    send(relay.addr, "s", "user@example.test", 6).await;
    let received = sink.wait_for(6, WAIT).await;
    assert_eq!(per_ip(&received), BTreeMap::from([(ip("127.0.0.3"), 6)]));

    let (status, _) = call(
        &socket,
        "PUT",
        "/v2/email/dedicated-ips/127.0.0.2/suspension",
        Some(json!({"Suspended": false})),
    )
    .await;
    assert_eq!(status, 200);
    let saved = std::fs::read_to_string(relay.dir.path().join("poolrelay.toml")).expect("config");
    assert!(!saved.contains("suspended"), "{saved}");
    send(relay.addr, "s", "user@example.test", 4).await;
    let received = sink.wait_for(10, WAIT).await;
    assert_eq!(
        per_ip(&received).get(&ip("127.0.0.2")),
        Some(&2),
        "back in rotation"
    );
}

/// Adds an address to the loopback interface for one test and removes it when dropped.
struct LoopbackAddress(IpAddr);

impl LoopbackAddress {
    fn add(address: IpAddr) -> Option<Self> {
        let added = std::process::Command::new("ip")
            .args(["addr", "add", &format!("{address}/32"), "dev", "lo"])
            .status()
            .is_ok_and(|s| s.success());
        added.then_some(Self(address))
    }
}

impl Drop for LoopbackAddress {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["addr", "del", &format!("{}/32", self.0), "dev", "lo"])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_address_is_suspended_and_comes_back_when_added() {
    let sink = start_sink().await;
    let address = unassigned_addresses(1)[0];
    let config = config_with_pool(
        r#"[admin]
socket = "var/admin.sock"
[queue]
retry_interval = "1h"
[health]
bind_recheck = "100ms"
"#,
        &[("*", sink.addr())],
        &[&address.to_string()],
    );
    let relay = TestRelay::start(&config).await;
    let socket = relay.dir.path().join("var/admin.sock");
    send(relay.addr, "s", "user@example.test", 1).await;
    let text = address.to_string();
    let state = wait_for_ip_state(&socket, &text, |s| {
        s["Suspension"]["Status"] == "UNBINDABLE"
    })
    .await;
    assert_eq!(state["Suspension"]["Status"], "UNBINDABLE", "{state}");
    assert!(
        state["Suspension"]["Unbindable"]["Reason"]
            .as_str()
            .is_some_and(|r| r.contains("not assigned")),
        "{state}"
    );
    let (_, metrics) = get_text(&socket, "/metrics").await;
    assert!(
        metrics.contains(&format!(
            "poolrelay_ip_unbindable{{source_ip=\"{text}\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        sink.connections().is_empty(),
        "nothing left from another address"
    );

    let Some(_added) = LoopbackAddress::add(address) else {
        privilege_missing(
            "add an address to lo for the second half (needs CAP_NET_ADMIN and iproute2)",
        );
        return;
    };
    // The periodic re-check binds it again: back in rotation without any operator action, and
    // the waiting message goes at once (its retry time is an hour away).
    let state = wait_for_ip_state(&socket, &text, |s| s["Suspension"]["Status"] == "NONE").await;
    assert_eq!(state["Suspension"]["Status"], "NONE", "{state}");
    let received = sink.wait_for(1, WAIT).await;
    assert_eq!(per_ip(&received), BTreeMap::from([(address, 1)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_suspension_survives_a_restart() {
    let sink = start_sink().await;
    sink.refuse(
        ip("127.0.0.2"),
        Some(Refusal {
            at_greeting: false,
            reply: SPAMHAUS.into(),
        }),
    );
    let config = config_with_pool(
        "[admin]\nsocket = \"var/admin.sock\"\n",
        &[("*", sink.addr())],
        &["127.0.0.2", "127.0.0.3"],
    );
    let relay = TestRelay::start(&config).await;
    send(relay.addr, "s", "user@example.test", 4).await;
    assert_eq!(sink.wait_for(4, WAIT).await.len(), 4);
    let refused = || {
        sink.rcpt_attempts()
            .iter()
            .filter(|a| a.peer.ip() == ip("127.0.0.2"))
            .count()
    };
    let refused_before = refused();
    assert!(refused_before >= 1);

    let dir = relay.stop().await;
    let relay = TestRelay::start_in(dir, &config).await;
    let socket = relay.dir.path().join("var/admin.sock");
    let state = ip_state(&socket, "127.0.0.2").await;
    assert_eq!(state["Suspension"]["Status"], "SITES", "{state}");
    send(relay.addr, "s", "user@example.test", 4).await;
    let received = sink.wait_for(8, WAIT).await;
    assert_eq!(per_ip(&received), BTreeMap::from([(ip("127.0.0.3"), 8)]));
    assert_eq!(
        refused(),
        refused_before,
        "the suspended IP was not tried again"
    );
}

/// A recipient whose address contains a blocklist's name is refused as any unknown user is: the
/// sender gets a bounce and the IP stays in rotation (the server echoes the address back, and
/// `550 5.1.1` is about the mailbox). Failed before: the IP was suspended for the site and the
/// recipient retried for days.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_naming_a_blocklist_bounces_and_never_suspends_the_ip() {
    let sink = start_sink().await;
    let config = config_with_pool("", &[("*", sink.addr())], &["127.0.0.2"]);
    let relay = TestRelay::start(&config).await;
    send(relay.addr, "s", "reject.spamhaus@example.test", 1).await;
    let received = sink.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1, "one bounce");
    assert_eq!(received[0].sender, "", "a bounce, from <>");
    let text = String::from_utf8_lossy(&received[0].content).into_owned();
    assert!(text.contains("Status: 5.1.1"), "{text}");
    let health = relay
        .relay
        .as_ref()
        .expect("running")
        .ip_health(ip("127.0.0.2"));
    assert!(health.sites.is_empty(), "no site suspension: {health:?}");
    relay.stop().await;
}
