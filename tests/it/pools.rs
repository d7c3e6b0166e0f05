//! Mail leaves from the IPs of its configuration set's pool, and from nowhere else.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::common::*;

fn pools_config(sink: std::net::SocketAddr) -> String {
    format!(
        "{}{}
[[pool]]
name = \"transactional\"
[[pool]]
name = \"marketing\"

[[ip]]
address = \"127.0.0.2\"
pool = \"transactional\"
ehlo_hostname = \"mta-2.test\"
[[ip]]
address = \"127.0.0.3\"
pool = \"transactional\"
[[ip]]
address = \"127.0.0.4\"
pool = \"marketing\"
[[ip]]
address = \"127.0.0.5\"

[shared_pool]
ips = [\"127.0.0.6\"]

[[configuration_set]]
name = \"reset\"
sending_pool = \"transactional\"
[[configuration_set]]
name = \"promo\"
sending_pool = \"marketing\"
[[configuration_set]]
name = \"plain\"
[[configuration_set]]
name = \"shared\"
sending_pool = \"ses-shared-pool\"
",
        smtp_section(""),
        catch_all_route(sink)
    )
}

fn message(subject: &str, set: Option<&str>) -> String {
    let header = set
        .map(|s| format!("X-SES-CONFIGURATION-SET: {s}\r\n"))
        .unwrap_or_default();
    format!(
        "From: app@example.test\r\nTo: user@example.test\r\nSubject: {subject}\r\n{header}\r\nbody of {subject}\r\n"
    )
}

fn subject_of(content: &[u8]) -> String {
    let text = String::from_utf8_lossy(content);
    text.lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_configuration_set_leaves_from_its_pool_only() {
    let sink = start_sink().await;
    let relay = TestRelay::start(&pools_config(sink.addr())).await;
    let sets = [
        Some("reset"),
        Some("promo"),
        Some("plain"),
        Some("shared"),
        None,
    ];
    let per_set = 10;
    let addr = relay.addr;
    let mut expected = BTreeMap::new();
    let mut contents = Vec::new();
    for (index, set) in sets.iter().enumerate() {
        for n in 0..per_set {
            let subject = format!("set{index}-{n}");
            expected.insert(subject.clone(), *set);
            contents.push(message(&subject, *set));
        }
    }
    // Python's smtplib: a real client independent of poolrelay's code.
    let results = tokio::task::spawn_blocking(move || {
        python_send(addr, "app@example.test", &["user@example.test"], &contents)
    })
    .await
    .unwrap();
    assert_eq!(results.len(), expected.len(), "{results:?}");
    assert!(
        results.iter().all(|r| r.starts_with("OK 250")),
        "{results:?}"
    );
    let received = sink.wait_for(expected.len(), WAIT).await;
    assert_eq!(received.len(), expected.len());

    let mut sources: BTreeMap<&str, BTreeSet<IpAddr>> = BTreeMap::new();
    for message in &received {
        let set = expected[&subject_of(&message.content)].unwrap_or("(none)");
        sources.entry(set).or_default().insert(message.peer.ip());
        assert_eq!(message.violation, None, "relay sent clean CRLF");
    }
    let allowed = |list: &[&str]| list.iter().map(|a| ip(a)).collect::<BTreeSet<_>>();
    // Both IPs of the two-IP pool are used, and nothing else.
    assert_eq!(sources["reset"], allowed(&["127.0.0.2", "127.0.0.3"]));
    assert_eq!(sources["promo"], allowed(&["127.0.0.4"]));
    // A set without sending_pool and a message without the header: ses-default-dedicated-pool.
    assert_eq!(sources["plain"], allowed(&["127.0.0.5"]));
    assert_eq!(sources["(none)"], allowed(&["127.0.0.5"]));
    assert_eq!(sources["shared"], allowed(&["127.0.0.6"]));

    // The per-IP EHLO name is used.
    let helo_from_2 = received
        .iter()
        .find(|m| m.peer.ip() == ip("127.0.0.2"))
        .map(|m| m.helo.clone());
    assert_eq!(helo_from_2.as_deref(), Some("mta-2.test"));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_configuration_set_is_refused_and_nothing_is_spooled() {
    let sink = start_sink().await;
    let relay = TestRelay::start(&pools_config(sink.addr())).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    let content = message("refused", Some("Does-Not-Exist"));
    let reply = client
        .send_message(
            "app@example.test",
            &["user@example.test"],
            format!("{content}.\r\n").as_bytes(),
        )
        .await;
    assert_eq!(
        reply,
        "554 5.3.0 Configuration set \"Does-Not-Exist\" does not exist\r\n"
    );
    assert!(relay.spool_files("queue").is_empty());
    assert!(relay.spool_files("tmp").is_empty());

    // Names are matched exactly: "RESET" is not "reset".
    let content = message("refused-case", Some("RESET"));
    let reply = client
        .send_message(
            "app@example.test",
            &["user@example.test"],
            format!("{content}.\r\n").as_bytes(),
        )
        .await;
    assert!(reply.starts_with("554 5.3.0"), "{reply}");

    // The session goes on, and the next message (case-insensitive header name) is accepted.
    let content = "x-ses-configuration-set: promo\r\nSubject: after\r\n\r\nok\r\n.\r\n";
    let reply = client
        .send_message(
            "app@example.test",
            &["user@example.test"],
            content.as_bytes(),
        )
        .await;
    assert!(reply.starts_with("250 2.0.0 Ok "), "{reply}");
    let received = sink.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1);
    assert_eq!(subject_of(&received[0].content), "after");
    assert_eq!(received[0].peer.ip(), ip("127.0.0.4"));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_headers_are_removed_and_every_other_byte_is_kept() {
    let sink = start_sink().await;
    let relay = TestRelay::start(&pools_config(sink.addr())).await;
    let original = "From: \"App\" <app@example.test>\r\n\
        X-SES-CONFIGURATION-SET: promo\r\n\
        To: user@example.test,\r\n  second@example.test\r\n\
        X-SES-MESSAGE-TAGS: campaign=spring,\r\n  variant=b\r\n\
        X-SES-SOURCE-ARN: arn:aws:ses:us-east-1:123:identity/example.test\r\n\
        X-Ses-From-Arn: arn:x\r\n\
        X-SES-RETURN-PATH-ARN: arn:y\r\n\
        X-SES-CONFIGURATION-SET: reset\r\n\
        Subject: =?utf-8?q?caf=C3=A9?=   with  spaces \r\n\
        X-Other: keep me\r\n\
        \r\n\
        Body line 1\r\n\
        X-SES-CONFIGURATION-SET: in the body stays\r\n\
        \ttabbed  line\r\n";
    let expected = "From: \"App\" <app@example.test>\r\n\
        To: user@example.test,\r\n  second@example.test\r\n\
        Subject: =?utf-8?q?caf=C3=A9?=   with  spaces \r\n\
        X-Other: keep me\r\n\
        \r\n\
        Body line 1\r\n\
        X-SES-CONFIGURATION-SET: in the body stays\r\n\
        \ttabbed  line\r\n";
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send_accepted(
            "app@example.test",
            &["user@example.test"],
            format!("{original}.\r\n").as_bytes(),
        )
        .await;
    let received = sink.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1);
    // The first X-SES-CONFIGURATION-SET (promo) chose the pool.
    assert_eq!(received[0].peer.ip(), ip("127.0.0.4"));
    assert_eq!(
        String::from_utf8_lossy(without_trace_header(&received[0].content)),
        expected
    );
    let trace = String::from_utf8_lossy(&received[0].content).into_owned();
    assert!(
        trace.starts_with(
            "Received: from client.test ([127.0.0.1])\r\n\tby relay.test (poolrelay) with ESMTP id "
        ),
        "{trace}"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_messages_each_leave_from_their_pool() {
    let sink = start_sink().await;
    let relay = TestRelay::start(&pools_config(sink.addr())).await;
    let total = 1000;
    let clients = 10;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let addr = relay.addr;
        tasks.push(tokio::spawn(async move {
            let (mut client, _) = RawClient::connect(addr).await;
            assert!(client.command("EHLO load.test").await.starts_with("250"));
            for n in (c..total).step_by(clients) {
                let set = if n % 2 == 0 { "reset" } else { "promo" };
                let content = format!("{}.\r\n", message(&format!("m{n}-{set}"), Some(set)));
                // Pipelined envelope, as a bulk sender would.
                client
                    .send(format!("MAIL FROM:<app@example.test>\r\nRCPT TO:<u{n}@example.test>\r\nDATA\r\n").as_bytes())
                    .await;
                for expected in ["250", "250", "354"] {
                    let reply = client.reply().await;
                    assert!(reply.starts_with(expected), "{reply}");
                }
                client.send(content.as_bytes()).await;
                let reply = client.reply().await;
                assert!(reply.starts_with("250"), "{reply}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let received = sink.wait_for(total, WAIT * 3).await;
    assert_eq!(received.len(), total);
    let mut per_ip: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for message in &received {
        let subject = subject_of(&message.content);
        let allowed = if subject.ends_with("-reset") {
            ["127.0.0.2", "127.0.0.3"]
        } else {
            ["127.0.0.4", "127.0.0.4"]
        };
        assert!(
            allowed.iter().any(|a| ip(a) == message.peer.ip()),
            "{subject} came from {}",
            message.peer
        );
        *per_ip.entry(message.peer.ip()).or_default() += 1;
    }
    assert_eq!(per_ip[&ip("127.0.0.4")], 500);
    assert_eq!(per_ip[&ip("127.0.0.2")] + per_ip[&ip("127.0.0.3")], 500);
    let stopped = relay.stop().await;
    // Every delivered message has left the spool.
    assert!(spool_files(&stopped.path().join("var/spool"), "queue").is_empty());
}
