//! What the relay finds in its spool at start-up: good messages are delivered, bad files are
//! quarantined (never deleted, never crash the relay), unacknowledged leftovers are removed.

use crate::common::*;
use poolrelay::spool::trailer;

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
    let envelope = |id: &str, size: usize| poolrelay::spool::Envelope {
        id: id.into(),
        received_at: 1,
        sender: "a@example.test".into(),
        recipients: vec![poolrelay::spool::Recipient::new("b@example.test".into())],
        configuration_set: None,
        pool: "ses-default-dedicated-pool".into(),
        client_ip: ip("127.0.0.1"),
        client_helo: "x".into(),
        size: size as u64,
        smtputf8: false,
        eight_bit_mime: false,
        ..Default::default()
    };
    let message_file = |id: &str| {
        let mut file = content.to_vec();
        file.extend(
            trailer::encode(&envelope(id, content.len()), crc32fast::hash(content)).unwrap(),
        );
        file
    };
    std::fs::write(queue.join("good.msg"), message_file("good")).unwrap();
    // A later envelope update for it, as written after a deferral.
    let mut updated = envelope("good", content.len());
    updated.attempts = 3;
    std::fs::write(
        queue.join("good.env"),
        serde_json::to_vec(&updated).unwrap(),
    )
    .unwrap();
    // Damaged: a flipped byte in the content, a truncated footer, garbage with a footer magic.
    let mut flipped = message_file("flipped");
    flipped[40] ^= 1;
    std::fs::write(queue.join("flipped.msg"), flipped).unwrap();
    let whole = message_file("cut");
    std::fs::write(queue.join("cut.msg"), &whole[..whole.len() - 3]).unwrap();
    let mut garbage = b"\x00\x01 not json".to_vec();
    garbage.extend_from_slice(trailer::MAGIC);
    garbage.extend_from_slice(&[0xff; 16]);
    std::fs::write(queue.join("garbage.msg"), garbage).unwrap();
    // An update whose message is gone, and a stray file.
    std::fs::write(queue.join("orphan.env"), b"{}").unwrap();
    std::fs::write(queue.join("notes.txt"), b"operator was here").unwrap();
    // Still being received when the relay stopped (no footer): never acknowledged.
    std::fs::write(queue.join("receiving.msg"), b"Subject: half").unwrap();
    std::fs::write(tmp.join("leftover.env.update"), b"half").unwrap();

    let relay = TestRelay::start_in(dir, &config).await;
    let received = sink.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1);
    assert!(String::from_utf8_lossy(&received[0].content).contains("Subject: good"));
    // Nothing that is not a complete message is delivered or deleted: the cut file and the one
    // still being received have no footer, the others fail their checksums. The update whose
    // message is gone is dropped.
    assert_eq!(
        relay.spool_files("quarantine"),
        [
            "cut.msg",
            "flipped.msg",
            "garbage.msg",
            "notes.txt",
            "receiving.msg"
        ]
    );
    assert!(relay.spool_files("tmp").is_empty());

    // The relay keeps working: a new message goes through.
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send_accepted(
            "a@example.test",
            &["c@example.test"],
            b"Subject: after\r\n\r\nx\r\n.\r\n",
        )
        .await;
    assert_eq!(sink.wait_for(2, WAIT).await.len(), 2);
    let spool = relay.spool_dir();
    eventually(|| spool_files(&spool, "queue").is_empty().then_some(()))
        .await
        .expect("queue drains, unacked.msg removed");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_message_is_in_the_spool_before_its_250() {
    // The next hop never answers, so the message stays queued: right after the 250 it must be
    // in a segment of queue/, whole, with its envelope.
    let (config, _) = config_with_next_hop_down().await;
    let relay = TestRelay::start(&config).await;
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
    let queue = relay.spool_dir().join("queue");
    let queued = poolrelay::spool::queued(&queue).expect("the spool reads back");
    assert_eq!(queued.len(), 1, "{queued:?}");
    let envelope = &queued[0];
    assert_eq!(envelope.id, id);
    let stored = envelope.stored.expect("a place in a segment");
    let segment = std::fs::read(queue.join(format!("{:016x}.seg", stored.segment))).unwrap();
    let content = &segment[stored.offset as usize..][..envelope.size as usize];
    assert!(content.ends_with(b"Subject: durable\r\n\r\nx\r\n"));
    relay.stop().await;
}

/// A directory where a message file should be (`x.msg`, `y.env`) is quarantined like any other
/// unreadable entry, and the relay starts and delivers. Failed before: start-up aborted with
/// "Is a directory".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_queue_entry_is_quarantined_and_the_relay_starts() {
    let sink = start_sink().await;
    let config = format!(
        "{}{}[[ip]]\naddress = \"127.0.0.2\"\n",
        smtp_section(""),
        catch_all_route(sink.addr())
    );
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("var/spool/queue");
    std::fs::create_dir_all(queue.join("x.msg")).unwrap();
    std::fs::create_dir_all(queue.join("y.env")).unwrap();
    let relay = TestRelay::start_in(dir, &config).await;
    let quarantine = relay.spool_dir().join("quarantine");
    assert!(quarantine.join("x.msg").is_dir(), "x.msg quarantined");
    assert!(quarantine.join("y.env").is_dir(), "y.env quarantined");
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send_accepted(
            "a@example.test",
            &["b@example.test"],
            b"Subject: after\r\n\r\nx\r\n.\r\n",
        )
        .await;
    assert_eq!(sink.wait_for(1, WAIT).await.len(), 1);
    relay.stop().await;
}

/// Queued mail and the event log are readable by the relay's user
/// only: folders 0700, files 0600, an older spool with looser modes tightened at start.
/// Failed before: folders 0755, files 0644.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_and_the_event_log_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let sink = start_sink().await;
    let config = format!(
        "{}{}[queue]\nretry_interval = \"1h\"\n[events]\npath = \"var/events.jsonl\"\n[[ip]]\naddress = \"127.0.0.2\"\n",
        smtp_section(""),
        catch_all_route(sink.addr())
    );
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("var/spool");
    std::fs::create_dir_all(spool.join("queue")).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let relay = TestRelay::start_in(dir, &config).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send_accepted(
            "a@example.test",
            &["tempfail@example.test"],
            b"Subject: waits\r\n\r\nx\r\n.\r\n",
        )
        .await;
    let spool = relay.spool_dir();
    // The message waits (deferred) in its segment, with its envelope update.
    eventually(|| {
        let queued = poolrelay::spool::queued(&spool.join("queue")).ok()?;
        let segments = spool_files(&spool, "queue").len();
        (queued.len() == 1 && queued[0].attempts == 1 && segments == 1).then_some(())
    })
    .await
    .expect("the deferred message with its new envelope, in one segment");
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .expect("exists")
            .permissions()
            .mode()
            & 0o777
    };
    for folder in ["", "queue", "tmp", "quarantine"] {
        assert_eq!(mode(&spool.join(folder)), 0o700, "spool/{folder}");
    }
    for file in spool_files(&spool, "queue") {
        assert_eq!(mode(&spool.join("queue").join(&file)), 0o600, "{file}");
    }
    let dir = relay.stop().await;
    assert_eq!(
        mode(&dir.path().join("var/events.jsonl")),
        0o600,
        "event log"
    );
}

/// A deferred message moves out of the segment it arrived in (into the deferred lane), so that
/// segment is deleted while the message waits; after a restart it is delivered once. Failed
/// before: the segment of fresh mail stayed for as long as any of its messages waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_message_does_not_keep_the_segment_it_arrived_in() {
    let (config, sink_addr) = config_with_next_hop_down().await;
    let relay = TestRelay::start(&config).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    let spool = relay.spool_dir();
    let mut arrived_in = None;
    for n in 0..3 {
        client
            .send_accepted(
                "a@example.test",
                &["b@example.test"],
                format!("Subject: waits {n}\r\n\r\nx\r\n.\r\n").as_bytes(),
            )
            .await;
        // The segment of fresh mail is the first one created: the lowest number there is.
        arrived_in = arrived_in.or_else(|| {
            spool_files(&spool, "queue")
                .iter()
                .filter_map(|f| u64::from_str_radix(f.strip_suffix(".seg")?, 16).ok())
                .min()
        });
    }
    let arrived_in = arrived_in.expect("a segment after the first 250");
    let moved = eventually(|| {
        let queued = queued_envelopes(&spool);
        let segments: Vec<String> = spool_files(&spool, "queue");
        (queued.len() == 3 && queued.iter().all(|e| e.attempts == 1) && segments.len() == 1)
            .then_some(queued)
    })
    .await
    .expect("the three deferred messages in one segment, the one they arrived in deleted");
    for envelope in &moved {
        let segment = envelope.stored.expect("a place").segment;
        assert_ne!(
            segment, arrived_in,
            "moved out of the segment it arrived in"
        );
    }
    drop(client);
    let dir = relay.stop().await;

    let sink = poolrelay::sink::Sink::start(sink_addr)
        .await
        .expect("sink on the same port");
    let relay = TestRelay::start_in(dir, &config).await;
    let received = sink.wait_for(3, WAIT).await;
    let mut subjects: Vec<String> = received
        .iter()
        .filter_map(|m| {
            String::from_utf8_lossy(&m.content)
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
        })
        .collect();
    subjects.sort();
    assert_eq!(subjects, ["waits 0", "waits 1", "waits 2"], "each once");
    let spool = relay.spool_dir();
    eventually(|| spool_files(&spool, "queue").is_empty().then_some(()))
        .await
        .expect("the spool drains");
    relay.stop().await;
}
