//! Deferral, retries and restarts: mail waits rather than leaks, and the spool survives restarts.

use crate::common::*;
use poolrelay::spool::RecipientState;

const CONTENT: &[u8] = b"X-SES-CONFIGURATION-SET: ghostly\r\nSubject: wait\r\n\r\nbody\r\n.\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ip_not_on_the_host_defers_and_never_leaks() {
    let sink = start_sink().await;
    // Addresses not assigned to this host: binding fails before any packet is sent. The default
    // pool has a working address the message must NOT fall back to.
    let missing = unassigned_addresses(2);
    let (missing_a, missing_b) = (missing[0], missing[1]);
    let config = format!(
        r#"{}{}[queue]
retry_interval = "50ms"
max_retry_interval = "100ms"

[[pool]]
name = "ghost"
[[pool]]
name = "mixed"
[[ip]]
address = "{missing_a}"
pool = "ghost"
[[ip]]
address = "{missing_b}"
pool = "mixed"
[[ip]]
address = "127.0.0.3"
pool = "mixed"
[[ip]]
address = "127.0.0.5"
[shared_pool]
ips = []
[[configuration_set]]
name = "ghostly"
sending_pool = "ghost"
[[configuration_set]]
name = "half"
sending_pool = "mixed"
"#,
        smtp_section(""),
        catch_all_route(sink.addr())
    );
    let relay = TestRelay::start(&config).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send_accepted("app@example.test", &["user@example.test"], CONTENT)
        .await;

    // The message is retried (attempts grow) with a clear reason, and stays queued.
    let spool = relay.spool_dir();
    let envelope = eventually(|| {
        queued_envelopes(&spool)
            .into_iter()
            .find(|e| e.attempts >= 3)
    })
    .await
    .expect("the message is attempted and deferred");
    assert_eq!(envelope.recipients[0].state, RecipientState::Pending);
    let reason = envelope.recipients[0]
        .last_reply
        .clone()
        .unwrap_or_default();
    assert!(
        reason.contains("no usable dedicated IP in pool ghost"),
        "{reason}"
    );

    // A pool with one missing and one working address uses the working one only.
    client
        .send_accepted(
            "app@example.test",
            &["user@example.test"],
            b"X-SES-CONFIGURATION-SET: half\r\nSubject: half\r\n\r\nbody\r\n.\r\n",
        )
        .await;
    let received = sink.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].peer.ip(), ip("127.0.0.3"));

    // Nothing ever reached the sink from another address: only the one delivery's connection.
    assert!(
        sink.connections()
            .iter()
            .all(|peer| peer.ip() == ip("127.0.0.3")),
        "{:?}",
        sink.connections()
    );
    assert_eq!(sink.messages().len(), 1);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_relay_delivers_what_is_in_its_spool() {
    let (config, sink_addr) = config_with_next_hop_down().await;
    let relay = TestRelay::start(&config).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send_accepted(
            "app@example.test",
            &["a@example.test", "b@example.test"],
            b"Subject: survive\r\n\r\nkept\r\n.\r\n",
        )
        .await;
    let spool = relay.spool_dir();
    eventually(|| {
        queued_envelopes(&spool)
            .into_iter()
            .find(|e| e.attempts >= 1)
    })
    .await
    .expect("first attempt failed");
    drop(client);
    let dir = relay.stop().await;
    let kept = queued_envelopes(&dir.path().join("var/spool"));
    assert_eq!(kept.len(), 1, "the message stays: {kept:?}");
    assert_eq!(kept[0].attempts, 1, "with its updated envelope");

    // Now the next hop is up, and a new relay process-equivalent starts on the same spool.
    let sink = poolrelay::sink::Sink::start(sink_addr)
        .await
        .expect("sink on the same port");
    let relay = TestRelay::start_in(dir, &config).await;
    let received = sink.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].recipients, ["a@example.test", "b@example.test"]);
    assert_eq!(received[0].peer.ip(), ip("127.0.0.2"));
    assert!(
        String::from_utf8_lossy(&received[0].content).ends_with("Subject: survive\r\n\r\nkept\r\n")
    );
    let dir = relay.stop().await;
    assert!(spool_files(&dir.path().join("var/spool"), "queue").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_deferred_recipient_is_retried_and_from_another_ip() {
    let sink = start_sink().await;
    let config = format!(
        r#"{}{}[queue]
retry_interval = "20ms"
max_retry_interval = "40ms"

[[ip]]
address = "127.0.0.2"
[[ip]]
address = "127.0.0.3"
"#,
        smtp_section(""),
        catch_all_route(sink.addr())
    );
    let relay = TestRelay::start(&config).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send_accepted(
            "app@example.test",
            &[
                "ok@example.test",
                "tempfail@example.test",
                "reject@example.test",
            ],
            b"Subject: split\r\n\r\nbody\r\n.\r\n",
        )
        .await;

    // First attempt: three RCPTs, then the bounce for the refused one, then only the deferred
    // recipient, several times.
    let attempts = sink.wait_for_rcpt_attempts(9, WAIT).await;
    assert!(attempts.len() >= 9, "{attempts:?}");
    let count = |who: &str| attempts.iter().filter(|a| a.recipient == who).count();
    assert_eq!(
        count("ok@example.test"),
        1,
        "a delivered recipient is not sent again"
    );
    assert_eq!(
        count("reject@example.test"),
        1,
        "a 5xx recipient is not retried"
    );
    let retried: Vec<_> = attempts
        .iter()
        .filter(|a| a.recipient == "tempfail@example.test")
        .collect();
    assert!(retried.len() >= 5);
    // Each retry leaves from the other IP of the pool.
    for pair in retried.windows(2) {
        assert_ne!(pair[0].peer.ip(), pair[1].peer.ip(), "{retried:?}");
    }
    let delivered = sink.messages();
    assert_eq!(delivered.len(), 2, "the message for ok@ and one bounce");
    let original = delivered
        .iter()
        .find(|m| m.sender == "app@example.test")
        .expect("original");
    assert_eq!(original.recipients, ["ok@example.test"]);
    let bounce = delivered
        .iter()
        .find(|m| m.sender.is_empty())
        .expect("a bounce from <>");
    assert_eq!(bounce.recipients, ["app@example.test"]);
    assert!(
        [ip("127.0.0.2"), ip("127.0.0.3")].contains(&bounce.peer.ip()),
        "the bounce leaves from the pool"
    );
    let text = String::from_utf8_lossy(&bounce.content);
    assert!(
        text.contains(
            "Final-Recipient: rfc822; reject@example.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        ),
        "{text}"
    );
    assert!(
        !text.contains("tempfail@example.test\r\nAction"),
        "a deferred recipient is not bounced"
    );

    let spool = relay.spool_dir();
    let envelope = queued_envelopes(&spool)
        .pop()
        .expect("still queued for the deferred recipient");
    let states: Vec<RecipientState> = envelope.recipients.iter().map(|r| r.state).collect();
    assert_eq!(
        states,
        [
            RecipientState::Delivered,
            RecipientState::Pending,
            RecipientState::Failed
        ]
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_reused_per_source_ip_and_next_hop() {
    let sink = start_sink().await;
    let config = format!(
        r#"{}{}[[pool]]
name = "two"
[[ip]]
address = "127.0.0.2"
pool = "two"
[[ip]]
address = "127.0.0.3"
pool = "two"
[[configuration_set]]
name = "s"
sending_pool = "two"
"#,
        smtp_section(""),
        catch_all_route(sink.addr())
    );
    let relay = TestRelay::start(&config).await;
    let spool = relay.spool_dir();
    let (mut client, _) = RawClient::connect(relay.addr).await;
    for n in 0..10 {
        let content = format!("X-SES-CONFIGURATION-SET: s\r\nSubject: {n}\r\n\r\nx\r\n.\r\n");
        client
            .send_accepted("a@example.test", &["b@example.test"], content.as_bytes())
            .await;
        // Wait until the attempt is recorded, so its connection is back in the cache.
        eventually(|| spool_files(&spool, "queue").is_empty().then_some(()))
            .await
            .expect("delivered");
    }
    assert_eq!(sink.messages().len(), 10);
    // Round robin alternates the two IPs; each keeps one connection for all its messages.
    let mut peers: Vec<_> = sink.connections().iter().map(|p| p.ip()).collect();
    peers.sort();
    assert_eq!(peers, [ip("127.0.0.2"), ip("127.0.0.3")]);
    relay.stop().await;
}

/// A next hop that answers `250` before the end of DATA and its real verdict (`550`) after it:
/// the early reply is a protocol error, the connection is dropped and the recipient retried,
/// never recorded as delivered. Failed before: the early 250 counted as delivery and the 550
/// became the reply to the next message's MAIL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_before_the_end_of_data_is_never_a_delivery() {
    let (hop, _) = scripted_next_hop(|command| match command {
        "DATA" => b"354 go ahead\r\n250 2.0.0 early, before the end\r\n",
        "." => b"550 5.7.1 the real verdict\r\n",
        "QUIT" => b"221 bye\r\n",
        _ => b"250 ok\r\n",
    })
    .await;
    let config = format!(
        "{}{}[queue]\nretry_interval = \"1h\"\n[[ip]]\naddress = \"127.0.0.2\"\n",
        smtp_section(""),
        catch_all_route(hop)
    );
    let relay = TestRelay::start(&config).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send_accepted(
            "a@example.test",
            &["b@example.test"],
            b"Subject: early\r\n\r\nx\r\n.\r\n",
        )
        .await;
    let queue = relay.relay.as_ref().expect("running").queue();
    let entry = eventually_async(move || async move {
        let list = queue.list().await.ok()?;
        list.into_iter().find(|e| e.attempts >= 1)
    })
    .await
    .expect("the message stays queued after its attempt");
    let reason = entry.last_error.unwrap_or_default();
    assert!(
        reason.starts_with("451 4.4.2") && reason.contains("before the end of DATA"),
        "{reason}"
    );
    assert_eq!(
        entry.recipients[0].state,
        poolrelay::spool::RecipientState::Pending
    );
    relay.stop().await;
}

/// Quoted local parts stay quoted on their way to the next hop, so what a client put inside
/// quotes never becomes ESMTP parameters or another address; control characters are refused.
/// Failed before: the next hop got `MAIL FROM:<x> SIZE=1@s.test>` and
/// `RCPT TO:<q> NOTIFY=NEVER@dest.test>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quoted_local_parts_reach_the_next_hop_still_quoted() {
    let (hop, lines) = scripted_next_hop(|command| match command {
        "DATA" => b"354 go ahead\r\n",
        "." => b"250 2.0.0 recorded\r\n",
        "QUIT" => b"221 bye\r\n",
        _ => b"250 ok\r\n",
    })
    .await;
    let config = format!(
        "{}{}[[ip]]\naddress = \"127.0.0.2\"\n",
        smtp_section(""),
        catch_all_route(hop)
    );
    let relay = TestRelay::start(&config).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    assert!(client.command("EHLO c.test").await.starts_with("250"));
    for (command, expected) in [
        ("MAIL FROM:<\"x> SIZE=1\"@s.test>", "250"),
        ("RCPT TO:<\"q> NOTIFY=NEVER\"@dest.test>", "250"),
        ("RCPT TO:<\"x@evil.test\"@dest.test>", "250"),
        ("RCPT TO:<\"bell\u{7}\"@dest.test>", "553"),
        ("RCPT TO:<\"esc\u{1b}[31m\"@dest.test>", "553"),
        ("DATA", "354"),
    ] {
        let reply = client.command(command).await;
        assert!(reply.starts_with(expected), "{command:?}: {reply}");
    }
    assert!(
        client
            .command("Subject: quoted\r\n\r\nx\r\n.")
            .await
            .starts_with("250")
    );
    let sent = eventually(|| {
        let lines = lines.lock();
        lines
            .iter()
            .any(|l| l.starts_with("RCPT TO:<\"x@evil.test\""))
            .then(|| lines.clone())
    })
    .await
    .expect("the next hop got the envelope");
    assert!(
        sent.iter()
            .any(|l| l.starts_with("MAIL FROM:<\"x> SIZE=1\"@s.test>")),
        "{sent:?}"
    );
    assert!(
        sent.contains(&"RCPT TO:<\"q> NOTIFY=NEVER\"@dest.test>".to_string()),
        "{sent:?}"
    );
    assert!(
        sent.contains(&"RCPT TO:<\"x@evil.test\"@dest.test>".to_string()),
        "{sent:?}"
    );
    assert!(
        !sent.iter().any(|l| l.contains(|c: char| c.is_control())),
        "{sent:?}"
    );
    relay.stop().await;
}

/// A Unicode spelling of a routed domain takes that route: `ｂａｎｋ.test` in fullwidth letters
/// is `bank.test`, whose route requires TLS, so the message waits instead of leaving in
/// plaintext by the catch-all route. Failed before: it went in plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unicode_spelling_of_a_routed_domain_takes_its_route() {
    let sink = start_sink().await;
    let config = format!(
        "{}[queue]\nretry_interval = \"1h\"\n[[route]]\ndomain = \"bank.test\"\nnext_hop = \"{}\"\ntls = \"require\"\n{}[[ip]]\naddress = \"127.0.0.2\"\n",
        smtp_section(""),
        sink.addr(),
        catch_all_route(sink.addr())
    );
    let relay = TestRelay::start(&config).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    assert!(client.command("EHLO c.test").await.starts_with("250"));
    for command in [
        "MAIL FROM:<a@example.test> SMTPUTF8",
        "RCPT TO:<fullwidth@ｂａｎｋ.test>",
    ] {
        let reply = client.command(command).await;
        assert!(reply.starts_with("250"), "{command}: {reply}");
    }
    assert!(client.command("DATA").await.starts_with("354"));
    assert!(
        client
            .command("Subject: idn\r\n\r\nx\r\n.")
            .await
            .starts_with("250")
    );
    let queue = relay.relay.as_ref().expect("running").queue();
    let entry = eventually_async(move || async move {
        let list = queue.list().await.ok()?;
        list.into_iter().find(|e| e.attempts >= 1)
    })
    .await
    .expect("the message waits");
    let reason = entry.last_error.unwrap_or_default();
    assert!(reason.starts_with("451 4.7.10"), "{reason}");
    assert!(sink.messages().is_empty(), "nothing left in plaintext");
    relay.stop().await;
}
