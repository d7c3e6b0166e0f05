//! Retries, expiry, bounces and events, with time scaled down through the config.

use crate::common::*;
use poolrelay::sink::Sink;

fn config(sink: &Sink, queue: &str, extra: &str) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"{}{}[queue]
{queue}
[events]
path = "var/events.jsonl"
[[pool]]
name = "p"
[[ip]]
address = "127.0.0.2"
pool = "p"
[[ip]]
address = "127.0.0.3"
pool = "p"
[[configuration_set]]
name = "s"
sending_pool = "p"
{extra}"#,
        smtp_section(""),
        catch_all_route(sink.addr())
    );
    (text, dir)
}

fn events(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("var/events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect()
}

const MESSAGE: &[u8] = b"X-SES-CONFIGURATION-SET: s\r\nX-SES-MESSAGE-TAGS: campaign=spring\r\nSubject: q\r\n\r\nbody\r\n.\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_then_expiry_sends_exactly_one_bounce() {
    let sink = start_sink().await;
    let (text, dir) = config(
        &sink,
        "retry_interval = \"100ms\"\nmax_retry_interval = \"10s\"\nmax_age = \"3s\"",
        "",
    );
    let relay = TestRelay::start_in(dir, &text).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send_accepted("app@example.test", &["tempfail@example.test"], MESSAGE)
        .await;

    // The bounce arrives once the message expires.
    let received = sink.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1);
    let bounce = &received[0];
    assert_eq!(bounce.sender, "");
    assert_eq!(bounce.recipients, ["app@example.test"]);
    let text = String::from_utf8_lossy(&bounce.content).into_owned();
    assert!(
        text.contains("Content-Type: multipart/report; report-type=delivery-status;"),
        "{text}"
    );
    assert!(
        text.contains(
            "Final-Recipient: rfc822; tempfail@example.test\r\nAction: failed\r\nStatus: 4.4.7\r\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("Diagnostic-Code: smtp; 550 4.4.7 Message expired"),
        "{text}"
    );
    assert!(
        text.contains("Content-Type: text/rfc822-headers\r\n\r\nReceived: from client.test"),
        "{text}"
    );
    assert!(
        text.contains("Subject: q\r\n"),
        "the original headers are returned"
    );

    // Nothing is left to deliver, so no second bounce can follow.
    let spool = relay.spool_dir();
    eventually(|| spool_files(&spool, "queue").is_empty().then_some(()))
        .await
        .expect("queue drains");
    assert_eq!(sink.messages().len(), 1, "exactly one bounce");

    // The attempts backed off: each wait is clearly longer than the one before.
    let attempts: Vec<_> = sink
        .rcpt_attempts()
        .into_iter()
        .filter(|a| a.recipient == "tempfail@example.test")
        .collect();
    assert!(attempts.len() >= 3, "{attempts:?}");
    let waits: Vec<f64> = attempts
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_secs_f64())
        .collect();
    // The last wait is cut short by the expiry; every one before it grows.
    assert!(waits.len() >= 4, "{waits:?}");
    // (Doubling with ±20% jitter: each wait is at least 1.33 times the one before, and three
    // doublings at least 5.3 times; the margins below leave room for a busy machine.)
    let growing = &waits[..waits.len() - 1];
    for pair in growing.windows(2) {
        assert!(pair[1] > pair[0] * 1.1, "backoff grows: {waits:?}");
    }
    assert!(
        growing[growing.len() - 1] > growing[0] * 3.0,
        "backoff grows: {waits:?}"
    );
    let dir = relay.stop().await;

    // Events: Send, DeliveryDelay for each deferral, one Bounce; all with the SES mail object.
    let events = events(dir.path());
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| e["eventType"].as_str())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "Send").count(),
        1,
        "the message (a bounce has no Send, as in SES): {kinds:?}"
    );
    assert!(
        kinds.iter().filter(|k| **k == "DeliveryDelay").count() >= 2,
        "{kinds:?}"
    );
    let bounce = events
        .iter()
        .find(|e| e["eventType"] == "Bounce")
        .expect("a Bounce event");
    assert_eq!(bounce["bounce"]["bounceType"], "Permanent");
    assert_eq!(
        bounce["bounce"]["bouncedRecipients"][0]["emailAddress"],
        "tempfail@example.test"
    );
    assert_eq!(bounce["bounce"]["bouncedRecipients"][0]["status"], "4.4.7");
    assert_eq!(bounce["mail"]["tags"]["ses:configuration-set"][0], "s");
    assert_eq!(bounce["mail"]["tags"]["campaign"][0], "spring");
    let delivered = events
        .iter()
        .find(|e| e["eventType"] == "Delivery")
        .expect("the bounce's Delivery");
    let outgoing = delivered["mail"]["tags"]["ses:outgoing-ip"][0]
        .as_str()
        .unwrap_or_default();
    assert!(
        outgoing == "127.0.0.2" || outgoing == "127.0.0.3",
        "{delivered}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_and_null_sender_rules() {
    let sink = start_sink().await;
    let (text, dir) = config(&sink, "retry_interval = \"1h\"", "");
    let relay = TestRelay::start_in(dir, &text).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    assert!(
        client
            .command("EHLO client.test")
            .await
            .contains("250-DSN\r\n")
    );

    // NOTIFY=NEVER: no bounce. A null sender: no bounce. NOTIFY=SUCCESS: a success report.
    let send = |from: &'static str, rcpt: &'static str| {
        format!(
            "MAIL FROM:<{from}> RET=HDRS ENVID=env-{rcpt}\r\nRCPT TO:<{rcpt}> {}\r\nDATA\r\n",
            if rcpt.starts_with("reject-never") {
                "NOTIFY=NEVER"
            } else if rcpt.starts_with("ok") {
                "NOTIFY=SUCCESS ORCPT=rfc822;Ok@Example.test"
            } else {
                ""
            }
        )
    };
    for (from, rcpt) in [
        ("app@example.test", "reject-never@example.test"),
        ("", "reject-null@example.test"),
        ("app@example.test", "ok@example.test"),
    ] {
        client.send(send(from, rcpt).as_bytes()).await;
        for expected in ["250", "250", "354"] {
            let reply = client.reply().await;
            assert!(reply.starts_with(expected), "{reply}");
        }
        client.send(MESSAGE).await;
        assert!(client.reply().await.starts_with("250"));
    }
    let spool = relay.spool_dir();
    eventually(|| spool_files(&spool, "queue").is_empty().then_some(()))
        .await
        .expect("queue drains");
    let received = sink.messages();
    let reports: Vec<_> = received
        .iter()
        .filter(|m| m.sender.is_empty() && m.recipients == ["app@example.test"])
        .collect();
    assert_eq!(
        reports.len(),
        1,
        "only the success report: {:?}",
        received
            .iter()
            .map(|m| (&m.sender, &m.recipients))
            .collect::<Vec<_>>()
    );
    let text = String::from_utf8_lossy(&reports[0].content);
    assert!(
        text.contains("Action: delivered\r\nStatus: 2.0.0\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Original-Recipient: rfc822;Ok@Example.test\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Original-Envelope-Id: env-ok@example.test\r\n"),
        "{text}"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_delivery_seconds_overrides_max_age() {
    let sink = start_sink().await;
    let (text, dir) = config(
        &sink,
        "retry_interval = \"1h\"\nmax_age = \"5d\"",
        r#"[[configuration_set]]
name = "quick"
sending_pool = "p"
max_delivery_seconds = 300
"#,
    );
    let relay = TestRelay::start_in(dir, &text).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    for set in ["quick", "s"] {
        client.send_for_set(set, "tempfail@example.test", set).await;
    }
    let spool = relay.spool_dir();
    let envelopes = eventually(|| {
        let found: Vec<poolrelay::spool::Envelope> = queued_envelopes(&spool)
            .into_iter()
            .filter(|e| e.attempts > 0)
            .collect();
        (found.len() == 2).then_some(found)
    })
    .await
    .expect("both deferred");
    for envelope in envelopes {
        let lifetime = envelope.expires_at - envelope.received_at;
        match envelope.configuration_set.as_deref() {
            Some("quick") => assert_eq!(lifetime, 300),
            _ => assert_eq!(lifetime, 5 * 86400),
        }
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_can_list_retry_hold_release_and_delete() {
    let sink = start_sink().await;
    let (text, dir) = config(&sink, "retry_interval = \"1h\"", "");
    let relay = TestRelay::start_in(dir, &text).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    let mut ids = Vec::new();
    for n in 0..2 {
        let reply = client
            .send_message(
                "app@example.test",
                &[&format!("tempfail{n}@example.test")],
                MESSAGE,
            )
            .await;
        ids.push(reply.trim_end().rsplit(' ').next().unwrap().to_string());
    }
    let queue = relay.relay.as_ref().unwrap().queue().clone();
    // Both deferred and waiting an hour, with the remote reply as the last error (polled: the
    // first attempts finish in the background).
    let handle = &queue;
    let listed = eventually_async(move || async move {
        let listed = handle.list().await.unwrap();
        let waiting = listed
            .iter()
            .all(|e| e.state == poolrelay::queue::operations::EntryState::Waiting);
        (listed.len() == 2 && waiting).then_some(listed)
    })
    .await
    .expect("both messages wait for their retry");
    for entry in &listed {
        assert_eq!(
            entry.state,
            poolrelay::queue::operations::EntryState::Waiting
        );
        assert_eq!(entry.pool, "p");
        assert_eq!(entry.configuration_set.as_deref(), Some("s"));
        assert!(entry.next_attempt_in_seconds.unwrap() > 1000);
        assert!(
            entry
                .last_error
                .as_deref()
                .unwrap()
                .starts_with("451 4.2.0"),
            "{entry:?}"
        );
    }

    // Retry now: the sink sees another attempt right away.
    let before = sink.rcpt_attempts().len();
    queue.retry_now(&ids[0]).await.unwrap();
    assert!(sink.wait_for_rcpt_attempts(before + 1, WAIT).await.len() > before);

    // Hold survives in the spool; a held message is not retried; release and delete work.
    queue.hold(&ids[1]).await.unwrap();
    assert_eq!(
        queue.retry_now(&ids[1]).await,
        Err(poolrelay::queue::QueueError::Held(ids[1].clone()))
    );
    let envelope = queued_envelopes(&relay.spool_dir())
        .into_iter()
        .find(|e| e.id == ids[1])
        .expect("the held message is in the spool");
    assert!(envelope.held, "the hold is recorded in the spool");
    queue.release(&ids[1]).await.unwrap();
    // Released messages are attempted again; once back to waiting they can be deleted.
    let second = &ids[1];
    let deleted = eventually_async(move || async move { handle.delete(second).await.ok() }).await;
    assert_eq!(deleted, Some(()), "deleted once its attempt is over");
    let spool = relay.spool_dir();
    eventually(|| {
        let queued = queued_envelopes(&spool);
        (!queued.iter().any(|e| e.id == ids[1])).then_some(())
    })
    .await
    .expect("the deleted message is done in the spool");
    assert_eq!(
        queue.delete(&ids[1]).await,
        Err(poolrelay::queue::QueueError::NotFound(ids[1].clone()))
    );
    relay.stop().await;
}
