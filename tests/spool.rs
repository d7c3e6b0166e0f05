//! What the relay finds in its spool at start-up: good messages are delivered, bad files are
//! quarantined (never deleted, never crash the relay), unacknowledged leftovers are removed.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_spool_files_are_quarantined_and_the_rest_is_delivered() {
    let sink = start_sink().await;
    let config = format!(
        "{}{}[[ip]]\naddress = \"127.0.0.2\"\n",
        smtp_section(""),
        catch_all_route(sink.addr())
    );
    // The spool is prepared by hand: one message exactly as the relay writes one, and one of
    // each kind of damage a crash, a full disk or a careless operator can leave behind.
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("var/spool/queue");
    let tmp = dir.path().join("var/spool/tmp");
    std::fs::create_dir_all(&queue).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();

    // A good message, written exactly as the relay writes one.
    let content = b"Received: from x ([127.0.0.1])\r\n\tby relay.test (poolrelay) with ESMTP id good;\r\n\tdate\r\nSubject: good\r\n\r\nbody\r\n";
    let good = serde_json::json!({
        "id": "good", "received_at": 1, "sender": "a@example.test",
        "recipients": [{"address": "b@example.test", "state": "pending"}],
        "configuration_set": null, "pool": "ses-default-dedicated-pool",
        "client_ip": "127.0.0.1", "client_helo": "x", "size": content.len()
    });
    std::fs::write(queue.join("good.msg"), content).unwrap();
    std::fs::write(queue.join("good.env"), serde_json::to_vec(&good).unwrap()).unwrap();
    // Garbage envelope.
    std::fs::write(queue.join("garbage.env"), b"\x00\x01 not json").unwrap();
    std::fs::write(queue.join("garbage.msg"), b"whatever").unwrap();
    // Truncated content: the envelope says more bytes than the file has.
    let mut truncated = good.clone();
    truncated["id"] = "truncated".into();
    truncated["size"] = 10_000.into();
    std::fs::write(queue.join("truncated.msg"), &content[..20]).unwrap();
    std::fs::write(
        queue.join("truncated.env"),
        serde_json::to_vec(&truncated).unwrap(),
    )
    .unwrap();
    // Envelope without content.
    let mut orphan = good.clone();
    orphan["id"] = "orphan".into();
    std::fs::write(
        queue.join("orphan.env"),
        serde_json::to_vec(&orphan).unwrap(),
    )
    .unwrap();
    // Content without envelope: never acknowledged, removed. And a half-received message.
    std::fs::write(queue.join("unacked.msg"), b"partial").unwrap();
    std::fs::write(tmp.join("receiving.msg"), b"half").unwrap();

    let relay = TestRelay::start_in(dir, &config).await;
    let received = sink.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1);
    assert!(String::from_utf8_lossy(&received[0].content).contains("Subject: good"));
    assert_eq!(
        relay.spool_files("quarantine"),
        [
            "garbage.env",
            "garbage.msg",
            "orphan.env",
            "truncated.env",
            "truncated.msg"
        ]
    );
    assert!(relay.spool_files("tmp").is_empty());

    // The relay keeps working: a new message goes through.
    let (mut client, _) = RawClient::connect(relay.addr).await;
    let reply = client
        .send_message(
            "a@example.test",
            &["c@example.test"],
            b"Subject: after\r\n\r\nx\r\n.\r\n",
        )
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(sink.wait_for(2, WAIT).await.len(), 2);
    let spool = relay.spool_dir();
    eventually(|| spool_files(&spool, "queue").is_empty().then_some(()))
        .await
        .expect("queue drains, unacked.msg removed");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_message_is_in_the_spool_before_its_250() {
    // The next hop never answers, so the message stays queued: right after the 250 both files
    // must exist in queue/ with a matching size.
    let never: std::net::SocketAddr = {
        let probe = start_sink().await;
        probe.addr()
    };
    let relay = TestRelay::start(&format!(
        "{}{}[queue]\nretry_interval = \"1h\"\n[[ip]]\naddress = \"127.0.0.2\"\n",
        smtp_section(""),
        catch_all_route(never)
    ))
    .await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    let reply = client
        .send_message(
            "a@example.test",
            &["b@example.test"],
            b"Subject: durable\r\n\r\nx\r\n.\r\n",
        )
        .await;
    let id = reply
        .trim_end()
        .strip_prefix("250 2.0.0 Ok ")
        .expect("250 names the id")
        .to_string();
    let files = relay.spool_files("queue");
    assert_eq!(files, [format!("{id}.env"), format!("{id}.msg")]);
    let content = std::fs::read(relay.spool_dir().join("queue").join(format!("{id}.msg"))).unwrap();
    assert!(content.ends_with(b"Subject: durable\r\n\r\nx\r\n"));
    relay.stop().await;
}
