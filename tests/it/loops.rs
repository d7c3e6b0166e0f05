//! Mail loops: a message that has made too many hops is refused, and a next hop that is the
//! relay itself is never used (with an MX pointing back at the relay, one message used to make
//! thousands of passes).

use crate::common::*;

/// A message with `hops` Received headers.
fn message_with_hops(hops: usize) -> Vec<u8> {
    let mut content = String::new();
    for n in 0..hops {
        content.push_str(&format!(
            "Received: from hop{n}.test by hop{n}.test; date\r\n"
        ));
    }
    content.push_str("Subject: hops\r\n\r\nx\r\n.\r\n");
    content.into_bytes()
}

/// More than 50 Received headers: 554 5.4.6, as Postfix's hopcount_limit. Failed before: 250.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_with_more_than_50_hops_is_refused() {
    let sink = start_sink().await;
    let config = format!(
        "{}{}[[ip]]\naddress = \"127.0.0.2\"\n",
        smtp_section(""),
        catch_all_route(sink.addr())
    );
    let relay = TestRelay::start(&config).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send_accepted(
            "a@example.test",
            &["b@example.test"],
            &message_with_hops(50),
        )
        .await;
    let reply = client
        .send_message(
            "a@example.test",
            &["b@example.test"],
            &message_with_hops(51),
        )
        .await;
    assert!(reply.starts_with("554 5.4.6"), "{reply}");
    assert_eq!(
        sink.wait_for(1, WAIT).await.len(),
        1,
        "only the first was relayed"
    );
    relay.stop().await;
}

/// A route that leads back to the relay's own listener: the message fails with 5.4.6 at once
/// and is never sent to itself. Failed before: it went round and round (a new message each pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_hop_that_is_the_relay_itself_is_never_used() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let own = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let config = format!(
        "[smtp]\nlisten = [\"{own}\"]\nhostname = \"relay.test\"\n[events]\npath = \"var/events.jsonl\"\n{}[[ip]]\naddress = \"127.0.0.2\"\n",
        catch_all_route(own)
    );
    let relay = TestRelay::start(&config).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send_accepted(
            "a@example.test",
            &["b@example.test"],
            b"Subject: loop\r\n\r\nx\r\n.\r\n",
        )
        .await;
    let spool = relay.spool_dir();
    eventually(|| spool_files(&spool, "queue").is_empty().then_some(()))
        .await
        .expect("the message (and its bounce) leave the queue");
    let dir = relay.stop().await;
    let events = std::fs::read_to_string(dir.path().join("var/events.jsonl")).unwrap_or_default();
    let sends = events
        .lines()
        .filter(|l| l.contains("\"eventType\":\"Send\""))
        .count();
    assert_eq!(sends, 1, "accepted once, never from itself: {events}");
    assert!(events.contains("5.4.6"), "bounced as a loop: {events}");
}
