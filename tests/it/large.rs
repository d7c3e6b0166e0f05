//! Large messages: streamed into a segment of their own while they arrive, and sent from there
//! after a restart — byte for byte, whether the spool could mark them as sendable as they are
//! (no line starting with a dot: `sendfile` over plain TCP) or they need dot-stuffing.

use crate::common::*;

/// About 3 MB of body lines; every 50th starts with a dot when `dots`.
fn body(dots: bool) -> String {
    (0..40_000)
        .map(|n| {
            let lead = if dots && n % 50 == 0 { "." } else { "" };
            format!("{lead}line {n:06} of a large message, 0123456789abcdefghijklmnopqrstuv\r\n")
        })
        .collect()
}

/// The body as a client sends it after DATA: lines starting with a dot get one more.
fn stuffed(body: &str) -> String {
    body.split_inclusive("\r\n")
        .map(|line| {
            if line.starts_with('.') {
                format!(".{line}")
            } else {
                line.to_string()
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_are_sent_from_the_spool_byte_for_byte() {
    // The next hop is down at first, so both messages wait in the spool.
    let (config, sink_addr) = config_with_next_hop_down().await;
    let relay = TestRelay::start(&config).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    for (subject, dots) in [("plain", false), ("dotted", true)] {
        let content = format!("Subject: {subject}\r\n\r\n{}.\r\n", stuffed(&body(dots)));
        client
            .send_accepted("app@example.test", &["b@example.test"], content.as_bytes())
            .await;
    }
    let spool = relay.spool_dir();
    let queued = eventually(|| {
        let queued = queued_envelopes(&spool);
        (queued.len() == 2 && queued.iter().all(|e| e.attempts >= 1)).then_some(queued)
    })
    .await
    .expect("both attempted once and waiting");
    let as_is: Vec<bool> = queued.iter().map(|e| e.sends_as_is).collect();
    assert_eq!(
        as_is,
        [true, false],
        "only the message without dot lines can go out as it is"
    );
    drop(client);
    let dir = relay.stop().await;

    let sink = poolrelay::sink::Sink::start(sink_addr)
        .await
        .expect("sink on the same port");
    let relay = TestRelay::start_in(dir, &config).await;
    let received = sink.wait_for(2, WAIT).await;
    assert_eq!(received.len(), 2);
    for (subject, dots) in [("plain", false), ("dotted", true)] {
        let message = received
            .iter()
            .find(|m| {
                String::from_utf8_lossy(&m.content).contains(&format!("Subject: {subject}\r\n"))
            })
            .expect("delivered");
        let expected = format!("Subject: {subject}\r\n\r\n{}", body(dots));
        assert!(
            message.content.ends_with(expected.as_bytes()),
            "{subject}: the content arrived changed ({} bytes)",
            message.content.len()
        );
        assert_eq!(message.violation, None, "{subject}");
    }
    relay.stop().await;
}
