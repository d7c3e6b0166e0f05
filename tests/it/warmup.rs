//! Warm-up: a warming IP sends exactly its cap for the day; the rest goes to the pool's other
//! IPs, to its overflow pool, or waits.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::common::http::call;
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warming_ips_send_exactly_their_cap_then_overflow_or_wait() {
    let sink = start_sink().await;
    let today = chrono::Utc::now().date_naive();
    let config = format!(
        r#"{}{}[queue]
retry_interval = "1h"
[warmup]
schedule = [3, 1000]
[admin]
socket = "var/admin.sock"

[[pool]]
name = "p"
[[pool]]
name = "q"
overflow_pool = "ses-shared-pool"
[[pool]]
name = "r"
[[ip]]
address = "127.0.0.2"
pool = "p"
[[ip]]
address = "127.0.0.3"
pool = "p"
warmup_started = "{today}"
[[ip]]
address = "127.0.0.4"
pool = "q"
warmup_started = "{today}"
[[ip]]
address = "127.0.0.5"
pool = "r"
warmup_started = "{today}"
[shared_pool]
ips = ["127.0.0.9"]
[[configuration_set]]
name = "sp"
sending_pool = "p"
[[configuration_set]]
name = "sq"
sending_pool = "q"
[[configuration_set]]
name = "sr"
sending_pool = "r"
"#,
        smtp_section(""),
        catch_all_route(sink.addr())
    );
    let relay = TestRelay::start(&config).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    for (set, count) in [("sp", 10), ("sq", 5), ("sr", 5)] {
        for n in 0..count {
            client
                .send_for_set(set, "user@example.test", &format!("{set}-{n}"))
                .await;
        }
    }
    // 10 + 5 + 3 delivered; 2 of pool r wait for tomorrow's cap.
    let received = sink.wait_for(18, WAIT).await;
    assert_eq!(received.len(), 18);
    let mut per_set_ip: BTreeMap<(String, IpAddr), usize> = BTreeMap::new();
    for message in &received {
        let text = String::from_utf8_lossy(&message.content);
        let subject = text
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or_default();
        let set = subject.split('-').next().unwrap_or_default().to_string();
        *per_set_ip.entry((set, message.peer.ip())).or_default() += 1;
    }
    let count = |set: &str, address: &str| {
        per_set_ip
            .get(&(set.to_string(), ip(address)))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(
        count("sp", "127.0.0.3"),
        3,
        "the warming IP sends exactly its cap: {per_set_ip:?}"
    );
    assert_eq!(
        count("sp", "127.0.0.2"),
        7,
        "the rest goes to the warm IP: {per_set_ip:?}"
    );
    assert_eq!(count("sq", "127.0.0.4"), 3, "{per_set_ip:?}");
    assert_eq!(
        count("sq", "127.0.0.9"),
        2,
        "excess overflows to ses-shared-pool: {per_set_ip:?}"
    );
    assert_eq!(count("sr", "127.0.0.5"), 3, "{per_set_ip:?}");

    let spool = relay.spool_dir();
    let waiting = eventually(|| {
        let reasons: Vec<String> = queued_envelopes(&spool)
            .into_iter()
            .filter(|e| e.attempts > 0)
            .filter_map(|e| e.recipients[0].last_reply.clone())
            .collect();
        (reasons.len() == 2).then_some(reasons)
    })
    .await
    .expect("two messages of pool r wait");
    assert!(
        waiting
            .iter()
            .all(|r| r.starts_with("451 4.7.0 every IP of pool r is at its warm-up limit")),
        "{waiting:?}"
    );

    // The API reports the warm-up.
    let sock = relay.dir.path().join("var/admin.sock");
    let (_, body) = call(&sock, "GET", "/v2/email/dedicated-ips/127.0.0.3", None).await;
    assert_eq!(body["DedicatedIp"]["WarmupStatus"], "IN_PROGRESS");
    assert_eq!(body["DedicatedIp"]["WarmupPercentage"], 0);
    let (_, body) = call(&sock, "GET", "/v2/email/dedicated-ips/127.0.0.2", None).await;
    assert_eq!(body["DedicatedIp"]["WarmupStatus"], "DONE");

    // SES's warm-up writes: an IP set to 100% is warm at once (new mail for pool r flows again),
    // and turning automatic warm-up off lifts every cap; both are written to the config file.
    let (status, body) = call(
        &sock,
        "PUT",
        "/v2/email/dedicated-ips/127.0.0.5/warmup",
        Some(serde_json::json!({"WarmupPercentage": 100})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = call(&sock, "GET", "/v2/email/dedicated-ips/127.0.0.5", None).await;
    assert_eq!(body["DedicatedIp"]["WarmupStatus"], "DONE");
    let content = b"X-SES-CONFIGURATION-SET: sr\r\nSubject: sr-after\r\n\r\nx\r\n.\r\n";
    assert!(
        client
            .send_message("app@example.test", &["user@example.test"], content)
            .await
            .starts_with("250")
    );
    let received = sink.wait_for(19, WAIT).await;
    assert!(received.iter().any(|m| {
        String::from_utf8_lossy(&m.content).contains("Subject: sr-after")
            && m.peer.ip() == ip("127.0.0.5")
    }));
    let (status, _) = call(
        &sock,
        "PUT",
        "/v2/email/dedicated-ips/127.0.0.3/warmup",
        Some(serde_json::json!({"WarmupPercentage": 50})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, body) = call(&sock, "GET", "/v2/email/dedicated-ips/127.0.0.3", None).await;
    assert_eq!(
        (
            body["DedicatedIp"]["WarmupStatus"].as_str(),
            body["DedicatedIp"]["WarmupPercentage"].as_u64()
        ),
        (Some("IN_PROGRESS"), Some(50))
    );
    assert_eq!(
        call(
            &sock,
            "PUT",
            "/v2/email/dedicated-ips/127.0.0.3/warmup",
            Some(serde_json::json!({"WarmupPercentage": 101}))
        )
        .await
        .0,
        400
    );
    assert_eq!(
        call(
            &sock,
            "PUT",
            "/v2/email/dedicated-ips/127.0.0.99/warmup",
            Some(serde_json::json!({"WarmupPercentage": 10}))
        )
        .await
        .0,
        404
    );
    // AutoWarmupEnabled is optional in SES's model: without it nothing changes.
    assert_eq!(
        call(
            &sock,
            "PUT",
            "/v2/email/account/dedicated-ips/warmup",
            Some(serde_json::json!({}))
        )
        .await
        .0,
        200
    );
    let (_, body) = call(&sock, "GET", "/v2/email/dedicated-ips/127.0.0.3", None).await;
    assert_eq!(body["DedicatedIp"]["WarmupStatus"], "IN_PROGRESS");
    assert_eq!(
        call(
            &sock,
            "PUT",
            "/v2/email/account/dedicated-ips/warmup",
            Some(serde_json::json!({"AutoWarmupEnabled": "yes"}))
        )
        .await
        .0,
        400
    );
    let (status, _) = call(
        &sock,
        "PUT",
        "/v2/email/account/dedicated-ips/warmup",
        Some(serde_json::json!({"AutoWarmupEnabled": false})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, body) = call(&sock, "GET", "/v2/email/dedicated-ips/127.0.0.3", None).await;
    assert_eq!(
        body["DedicatedIp"]["WarmupStatus"], "DONE",
        "no caps with warm-up off"
    );
    let text = std::fs::read_to_string(relay.dir.path().join("poolrelay.toml")).unwrap();
    assert!(text.contains("enabled = false"), "{text}");
    assert!(
        !text.contains("address = \"127.0.0.5\"\npool = \"r\"\nwarmup_started"),
        "{text}"
    );

    // The day's counts are saved for a restart.
    let dir = relay.stop().await;
    let saved: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("var/spool/warmup.json")).expect("counts saved"),
    )
    .unwrap();
    assert_eq!(saved["counts"]["127.0.0.3"], 3);
}

/// Mail that overflows to another pool leaves with the overflow IP's own EHLO name, not the
/// relay's default name (the name is looked up with the IP it belongs to, not in the message's
/// own pool).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_mail_greets_with_the_overflow_ips_own_name() {
    let sink = start_sink().await;
    let today = chrono::Utc::now().date_naive();
    let config = format!(
        r#"{}{}[queue]
retry_interval = "1h"
[warmup]
schedule = [1, 1000]

[[pool]]
name = "home"
overflow_pool = "spill"
[[pool]]
name = "spill"

[[ip]]
address = "127.0.0.6"
pool = "home"
ehlo_hostname = "home.example.test"
warmup_started = "{today}"
[[ip]]
address = "127.0.0.7"
pool = "spill"
ehlo_hostname = "spill.example.test"

[[configuration_set]]
name = "campaign"
sending_pool = "home"
"#,
        smtp_section(""),
        catch_all_route(sink.addr())
    );
    let relay = TestRelay::start(&config).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    for n in 0..3 {
        client
            .send_for_set("campaign", "user@example.test", &format!("c-{n}"))
            .await;
    }
    let received = sink.wait_for(3, WAIT).await;
    let greetings: BTreeMap<String, (String, usize)> =
        received.iter().fold(BTreeMap::new(), |mut seen, message| {
            let entry = seen
                .entry(message.peer.ip().to_string())
                .or_insert((message.helo.clone(), 0));
            assert_eq!(entry.0, message.helo, "one name per source IP");
            entry.1 += 1;
            seen
        });
    assert_eq!(
        greetings.get("127.0.0.6"),
        Some(&("home.example.test".to_string(), 1)),
        "{greetings:?}"
    );
    assert_eq!(
        greetings.get("127.0.0.7"),
        Some(&("spill.example.test".to_string(), 2)),
        "the overflow IP greets with its own name: {greetings:?}"
    );
    relay.stop().await;
}
