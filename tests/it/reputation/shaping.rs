//! Traffic shaping per (IP, site): connection and message limits and rates, fairness.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::*;
use poolrelay::sink::{Refusal, Sink};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_hold_under_load_per_ip_and_per_site() {
    let site_a = sink_on("127.0.0.1").await;
    let site_b = sink_on("127.0.1.1").await;
    // Slow final replies make deliveries overlap, so an unenforced limit would show.
    site_a.delay_final_replies(Duration::from_millis(50));
    site_b.delay_final_replies(Duration::from_millis(50));
    let config = config_with_pool(
        r#"[[shaping]]
site = "*"
max_connections = 3
max_messages_per_connection = 4
[[shaping]]
site = "127.0.1.1"
max_connections = 1
"#,
        &[("a.test", site_a.addr()), ("b.test", site_b.addr())],
        &["127.0.0.2", "127.0.0.3"],
    );
    let relay = TestRelay::start(&config).await;
    let mut senders = Vec::new();
    for domain in ["a.test", "a.test", "b.test", "b.test"] {
        let addr = relay.addr;
        senders.push(tokio::spawn(async move {
            send(addr, "s", &format!("user@{domain}"), 30).await;
        }));
    }
    for sender in senders {
        sender.await.expect("sender");
    }
    let at_a = site_a.wait_for(60, WAIT).await;
    let at_b = site_b.wait_for(60, WAIT).await;
    assert_eq!((at_a.len(), at_b.len()), (60, 60));
    let peak_a = site_a.peak_connections();
    let peak_b = site_b.peak_connections();
    eprintln!(
        "peak connections per source IP: site A (limit 3) {peak_a:?}, site B (limit 1) {peak_b:?}"
    );
    assert!(peak_a.values().all(|&n| n <= 3), "site A: {peak_a:?}");
    assert!(peak_b.values().all(|&n| n <= 1), "site B: {peak_b:?}");
    // The limits were reached (so the checks above measured something), from both IPs.
    assert_eq!(peak_a.values().max(), Some(&3), "{peak_a:?}");
    assert_eq!(peak_a.len(), 2, "{peak_a:?}");
    // max_messages_per_connection = 4: from each IP, at most 4 messages per connection.
    for (address, messages) in per_ip(&at_a) {
        let connections = site_a
            .connections()
            .iter()
            .filter(|c| c.ip() == address)
            .count();
        assert!(
            connections * 4 >= messages,
            "{address}: {messages} messages over {connections} connections"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_rate_holds() {
    let sink = start_sink().await;
    let config = config_with_pool(
        r#"[[shaping]]
site = "*"
max_message_rate = "10/s"
"#,
        &[("*", sink.addr())],
        &["127.0.0.2"],
    );
    let relay = TestRelay::start(&config).await;
    send(relay.addr, "s", "user@example.test", 25).await;
    let attempts = sink.wait_for_rcpt_attempts(25, WAIT).await;
    assert_eq!(attempts.len(), 25);
    // A bucket of 10 refilled at 10/s: any n consecutive messages span at least (n - 10) / 10 s.
    let times: Vec<std::time::Instant> = attempts.iter().map(|a| a.at).collect();
    for i in 0..times.len() {
        for j in i + 10..times.len() {
            let span = times[j].duration_since(times[i]).as_secs_f64();
            let allowed = 10.0 + 10.0 * span + 1.0; // one message of slack for timer rounding
            assert!(
                (j - i + 1) as f64 <= allowed,
                "{} messages in {span:.3}s",
                j - i + 1
            );
        }
    }
    let total = times[24].duration_since(times[0]).as_secs_f64();
    eprintln!("25 messages at max_message_rate 10/s: {total:.3}s from first to last");
    assert!(
        total >= 1.3,
        "25 messages at 10/s after a burst of 10 took only {total:.3}s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_at_its_limit_does_not_starve_other_sites() {
    let slow = sink_on("127.0.0.1").await;
    let fast = sink_on("127.0.1.1").await;
    // The slow site takes mail but never finishes a transaction until released.
    slow.hold_final_replies(true);
    let config = config_with_pool(
        r#"[queue]
max_concurrent_deliveries = 2
[[shaping]]
site = "127.0.0.1"
max_connections = 1
"#,
        &[("slow.test", slow.addr()), ("fast.test", fast.addr())],
        &["127.0.0.2"],
    );
    let relay = TestRelay::start(&config).await;
    send(relay.addr, "s", "user@slow.test", 6).await;
    slow.wait_for(1, WAIT).await;
    send(relay.addr, "s", "user@fast.test", 5).await;
    // Five messages behind one held connection would fill both delivery slots if waiting held
    // them; the fast site still gets all of its mail.
    assert_eq!(fast.wait_for(5, WAIT).await.len(), 5);
    assert_eq!(slow.messages().len(), 1);
    slow.hold_final_replies(false);
    assert_eq!(slow.wait_for(6, WAIT).await.len(), 6);
    assert_eq!(slow.peak_connections().get(&ip("127.0.0.2")), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domains_sharing_mx_hosts_are_one_site() {
    use crate::common::dns::{DnsStub, Entry};
    use std::net::Ipv4Addr;
    // Two domains hosted on the same MX ("google"), one elsewhere; same port, two addresses.
    let google = sink_on("127.0.0.1").await;
    let port = google.addr().port();
    let elsewhere = Sink::start(format!("127.0.1.1:{port}").parse().expect("address"))
        .await
        .expect("sink on the same port");
    google.refuse(
        ip("127.0.0.2"),
        Some(Refusal {
            at_greeting: false,
            reply: SPAMHAUS.into(),
        }),
    );
    let dns = DnsStub::start(vec![
        ("gmail.test", Entry::Mx(5, "mx.google.test.")),
        ("hosted.test", Entry::Mx(10, "mx.google.test.")),
        ("mx.google.test", Entry::A(Ipv4Addr::new(127, 0, 0, 1))),
        ("other.test", Entry::Mx(10, "mx.other.test.")),
        ("mx.other.test", Entry::A(Ipv4Addr::new(127, 0, 1, 1))),
    ])
    .await;
    let config = config_with_pool(
        &format!(
            r#"[dns]
nameservers = ["{}"]
[outbound]
mx_port = {port}
[admin]
socket = "var/admin.sock"
"#,
            dns.addr
        ),
        &[],
        &["127.0.0.2", "127.0.0.3"],
    );
    let relay = TestRelay::start(&config).await;
    let socket = relay.dir.path().join("var/admin.sock");
    // gmail.test meets the refusal; 127.0.0.2 is then suspended for the whole site.
    send(relay.addr, "s", "user@gmail.test", 4).await;
    google.wait_for(4, WAIT).await;
    let state = wait_for_ip_state(&socket, "127.0.0.2", |s| {
        s["Suspension"]["Status"] == "SITES"
    })
    .await;
    assert_eq!(
        state["Suspension"]["Sites"][0]["Site"], "mx.google.test",
        "{state}"
    );
    let refused_before = google
        .rcpt_attempts()
        .iter()
        .filter(|a| a.code == 554)
        .count();
    assert!(refused_before >= 1);

    // hosted.test shares the MX: 127.0.0.2 is not even tried. other.test is another site.
    send(relay.addr, "s", "user@hosted.test", 6).await;
    send(relay.addr, "s", "user@other.test", 6).await;
    let at_google = google.wait_for(10, WAIT).await;
    let at_other = elsewhere.wait_for(6, WAIT).await;
    assert!(at_google.iter().all(|m| m.peer.ip() == ip("127.0.0.3")));
    let refused_after = google
        .rcpt_attempts()
        .iter()
        .filter(|a| a.code == 554)
        .count();
    assert_eq!(
        refused_after, refused_before,
        "no new attempt from the suspended IP"
    );
    assert_eq!(
        per_ip(&at_other),
        BTreeMap::from([(ip("127.0.0.2"), 3), (ip("127.0.0.3"), 3)]),
        "the other site still gets mail from both IPs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_rate_holds() {
    let sink = start_sink().await;
    // One message per connection, so every message needs a new connection.
    let config = config_with_pool(
        r#"[[shaping]]
site = "*"
max_connection_rate = "5/s"
max_messages_per_connection = 1
"#,
        &[("*", sink.addr())],
        &["127.0.0.2"],
    );
    let relay = TestRelay::start(&config).await;
    send(relay.addr, "s", "user@example.test", 12).await;
    let attempts = sink.wait_for_rcpt_attempts(12, WAIT).await;
    assert_eq!(attempts.len(), 12);
    assert_eq!(sink.connections().len(), 12, "one connection per message");
    // A burst of 5, then 5 per second: the 12th connection comes at least 7/5 s after the first.
    let span = attempts[11].at.duration_since(attempts[0].at).as_secs_f64();
    eprintln!("12 connections at max_connection_rate 5/s: {span:.3}s from first to last");
    assert!(span >= 1.3, "12 connections at 5/s took only {span:.3}s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_an_idle_connection_to_another_mx_makes_room() {
    use crate::common::dns::{DnsStub, Entry};
    use std::net::Ipv4Addr;
    // The preferred MX is down at first, so the only allowed connection goes to the second one
    // and stays idle in the cache (for 5 minutes).
    let backup = sink_on("127.0.1.1").await;
    let port = backup.addr().port();
    let dns = DnsStub::start(vec![
        ("site.test", Entry::Mx(10, "mx1.site.test.")),
        ("site.test", Entry::Mx(20, "mx2.site.test.")),
        ("mx1.site.test", Entry::A(Ipv4Addr::new(127, 0, 0, 1))),
        ("mx2.site.test", Entry::A(Ipv4Addr::new(127, 0, 1, 1))),
    ])
    .await;
    let config = config_with_pool(
        &format!(
            r#"[dns]
nameservers = ["{}"]
[outbound]
mx_port = {port}
[queue]
connection_idle_timeout = "5m"
[[shaping]]
site = "*"
max_connections = 1
"#,
            dns.addr
        ),
        &[],
        &["127.0.0.2"],
    );
    let relay = TestRelay::start(&config).await;
    send(relay.addr, "s", "user@site.test", 1).await;
    assert_eq!(backup.wait_for(1, WAIT).await.len(), 1);

    // The preferred MX comes up: the next message goes there at once, the idle connection to the
    // backup giving up its place instead of holding it until its idle timeout.
    let preferred = Sink::start(format!("127.0.0.1:{port}").parse().expect("address"))
        .await
        .expect("sink on the preferred MX's address");
    send(relay.addr, "s", "user@site.test", 1).await;
    assert_eq!(preferred.wait_for(1, WAIT).await.len(), 1);
    assert_eq!(backup.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_deliveries_held_back_by_shaping() {
    let sink = start_sink().await;
    let limited = config_with_pool(
        r#"[events]
path = "var/events.jsonl"
[[shaping]]
site = "*"
max_message_rate = "1/min"
"#,
        &[("*", sink.addr())],
        &["127.0.0.2"],
    );
    let relay = TestRelay::start(&limited).await;
    send(relay.addr, "s", "user@example.test", 4).await;
    assert_eq!(sink.wait_for(1, WAIT).await.len(), 1);
    let spool = relay.spool_dir();
    let queued = || {
        poolrelay::spool::queued(&spool.join("queue"))
            .map(|q| q.len())
            .unwrap_or_default()
    };
    eventually(|| (queued() == 3).then_some(()))
        .await
        .expect("the first message leaves the spool");

    // Three deliveries wait about a minute for rate tokens. Shutdown stops them at once instead
    // of waiting out its 10 s grace for deliveries in progress.
    let dir = tokio::time::timeout(Duration::from_secs(8), relay.stop())
        .await
        .expect("shutdown does not wait for throttled deliveries");
    assert_eq!(queued(), 3, "the waiting messages stay in the spool");
    let events = std::fs::read_to_string(dir.path().join("var/events.jsonl")).unwrap_or_default();
    assert!(
        !events.contains("DeliveryDelay"),
        "nothing was attempted, so nothing was delayed: {events}"
    );

    // Without the limit they all go after a restart.
    let unlimited = config_with_pool("", &[("*", sink.addr())], &["127.0.0.2"]);
    let _relay = TestRelay::start_in(dir, &unlimited).await;
    assert_eq!(sink.wait_for(4, WAIT).await.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_waiting_for_shaping_can_be_deleted_or_held_at_once() {
    use poolrelay::queue::operations::EntryState;
    let sink = start_sink().await;
    let config = config_with_pool(
        r#"[[shaping]]
site = "*"
max_message_rate = "1/min"
"#,
        &[("*", sink.addr())],
        &["127.0.0.2"],
    );
    let relay = TestRelay::start(&config).await;
    send(relay.addr, "s", "user@example.test", 3).await;
    assert_eq!(sink.wait_for(1, WAIT).await.len(), 1);
    let queue = relay.relay.as_ref().expect("running").queue();
    let waiting = eventually_async(move || async move {
        let list = queue.list().await.expect("queue lists");
        let in_flight = list.iter().all(|e| e.state == EntryState::InFlight);
        (list.len() == 2 && in_flight).then_some(list)
    })
    .await
    .expect("both remaining messages wait for a rate token");

    // Both wait about a minute for a rate token; the operator does not have to.
    let quick = Duration::from_secs(5);
    tokio::time::timeout(quick, queue.delete(&waiting[0].id))
        .await
        .expect("delete answers at once")
        .expect("deleted");
    tokio::time::timeout(quick, queue.hold(&waiting[1].id))
        .await
        .expect("hold answers at once")
        .expect("held");
    let list = queue.list().await.expect("queue lists");
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        (list[0].id.as_str(), list[0].state),
        (waiting[1].id.as_str(), EntryState::Held)
    );
    assert_eq!(list[0].attempts, 0, "the stopped wait is not an attempt");
    // The deleted message's "done" record reaches its segment.
    let queue_dir = relay.spool_dir().join("queue");
    eventually(|| {
        let messages = poolrelay::spool::queued(&queue_dir).ok()?;
        (!messages.iter().any(|m| m.id == waiting[0].id)).then_some(())
    })
    .await
    .expect("the deleted message is done in the spool");
    assert_eq!(sink.messages().len(), 1);
}

/// At a pair's connection limit, connections go to the deliveries that waited longest: a
/// delivery started later does not take a connection as it comes back, so mail leaves in order
/// of arrival. Failed before: newcomers took returned connections ahead of waiting deliveries
/// (after a restart with a million queued messages, the first 20,000 deliveries reached message
/// 241,009).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_mail_leaves_in_order_of_arrival() {
    let site = sink_on("127.0.0.1").await;
    site.delay_final_replies(Duration::from_millis(20));
    let config = config_with_pool(
        r#"[queue]
max_concurrent_deliveries = 2
[[shaping]]
site = "127.0.0.1"
max_connections = 1
"#,
        &[("site.test", site.addr())],
        &["127.0.0.2"],
    );
    let relay = TestRelay::start(&config).await;
    send(relay.addr, "s", "user@site.test", 30).await;
    let received = site.wait_for(30, WAIT).await;
    let order: Vec<usize> = received
        .iter()
        .filter_map(|m| {
            let text = String::from_utf8_lossy(&m.content);
            text.lines()
                .find_map(|l| l.strip_prefix("Subject: s "))
                .and_then(|n| n.trim().parse().ok())
        })
        .collect();
    assert_eq!(order, (0..30).collect::<Vec<_>>(), "order of arrival");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_new_limits_to_mail_already_waiting_for_them() {
    let sink = start_sink().await;
    let limited = config_with_pool(
        r#"[[shaping]]
site = "*"
max_message_rate = "1/h"
"#,
        &[("*", sink.addr())],
        &["127.0.0.2"],
    );
    let relay = TestRelay::start(&limited).await;
    send(relay.addr, "s", "user@example.test", 4).await;
    assert_eq!(sink.wait_for(1, WAIT).await.len(), 1);
    // The other three wait for the next token, an hour away, until a reload raises the rate.
    let raised = limited.replace("\"1/h\"", "\"100/s\"");
    std::fs::write(relay.dir.path().join("poolrelay.toml"), raised).expect("config");
    relay
        .relay
        .as_ref()
        .expect("running")
        .reload()
        .await
        .expect("reloaded");
    assert_eq!(sink.wait_for(4, WAIT).await.len(), 4);
}
