//! SMTP smuggling: a fake end-of-data inside DATA followed by a pipelined second transaction must
//! never become a second message, in either bare-newline mode.

use crate::common::*;

const PAYLOADS: [&[u8]; 10] = [
    b"\n.\n",
    b"\n.\r\n",
    b"\r.\r\n",
    b"\r\n.\r",
    b"\r.\r",
    b"\r.\n",
    b"\n.\r",
    b"\r\n.\n",
    b"\r\n\x00.\r\n",
    b"\r\n.\x00\r\n",
];

const SMUGGLED: &[u8] =
    b"MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n";

async fn run_mode(mode: &str) {
    let sink = start_sink().await;
    let relay = TestRelay::start(&format!(
        "{}{}[[ip]]\naddress = \"127.0.0.2\"\n",
        smtp_section(&format!("bare_newline = \"{mode}\"")),
        catch_all_route(sink.addr())
    ))
    .await;
    let mut accepted = 0;
    for payload in PAYLOADS {
        let (mut client, _) = RawClient::connect(relay.addr).await;
        client
            .start_message("sender@example.test", &["rcpt@example.test"])
            .await;
        let mut data = b"Subject: legit\r\n\r\nhello".to_vec();
        data.extend_from_slice(payload);
        data.extend_from_slice(SMUGGLED);
        data.extend_from_slice(b"\r\n.\r\nQUIT\r\n");
        client.send(&data).await;
        let mut replies = Vec::new();
        loop {
            let reply = client.reply().await;
            if reply.is_empty() {
                break;
            }
            replies.push(reply);
        }
        // One reply for the one message, then QUIT's: no 250/354 for a second transaction.
        assert_eq!(replies.len(), 2, "{mode} {payload:?}: {replies:?}");
        assert!(replies[1].starts_with("221"), "{replies:?}");
        if replies[0].starts_with("250") {
            accepted += 1;
        } else {
            assert!(
                replies[0].starts_with("554 5.6.0"),
                "{mode} {payload:?}: {replies:?}"
            );
        }
    }
    if mode == "normalize" {
        assert_eq!(
            accepted,
            PAYLOADS.len(),
            "normalize keeps each message whole"
        );
    } else {
        // Only the two payloads without a bare CR or LF are acceptable messages.
        assert_eq!(accepted, 2);
    }
    // Everything accepted is delivered, and nothing else.
    let spool = relay.spool_dir();
    eventually(|| spool_files(&spool, "queue").is_empty().then_some(()))
        .await
        .expect("queue drains");
    let received = sink.messages();
    assert_eq!(received.len(), accepted);
    for message in &received {
        assert_eq!(message.sender, "sender@example.test");
        assert_eq!(message.recipients, ["rcpt@example.test"]);
        assert!(without_trace_header(&message.content).starts_with(b"Subject: legit\r\n"));
        assert_eq!(message.violation, None, "the relay sends CRLF only");
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_payloads_never_produce_a_second_message_in_reject_mode() {
    run_mode("reject").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_payloads_never_produce_a_second_message_in_normalize_mode() {
    run_mode("normalize").await;
}
