//! The inbound SMTP dialogue: replies, sequencing, limits, line rules, dot-stuffing.

use crate::common::*;

async fn relay_with(extra_smtp: &str, sink: &poolrelay::sink::Sink) -> TestRelay {
    TestRelay::start(&format!(
        "{}{}[[ip]]\naddress = \"127.0.0.2\"\n",
        smtp_section(extra_smtp),
        catch_all_route(sink.addr())
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeting_and_ehlo_advertise_the_extensions() {
    let sink = start_sink().await;
    let relay = relay_with("", &sink).await;
    let (mut client, greeting) = RawClient::connect(relay.addr).await;
    assert_eq!(greeting, "220 relay.test ESMTP poolrelay\r\n");
    let ehlo = client.command("EHLO client.test").await;
    for extension in [
        "PIPELINING",
        "SIZE 41943040",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "SMTPUTF8",
    ] {
        assert!(
            ehlo.contains(&format!("250-{extension}\r\n"))
                || ehlo.contains(&format!("250 {extension}\r\n")),
            "{ehlo}"
        );
    }
    assert!(
        ehlo.starts_with("250-relay.test Hello client.test [127.0.0.1]\r\n"),
        "{ehlo}"
    );
    assert_eq!(
        client.command("HELO old.client").await,
        "250 relay.test Hello old.client\r\n"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_out_of_sequence_are_refused() {
    let sink = start_sink().await;
    let relay = relay_with("", &sink).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    assert!(
        client
            .command("MAIL FROM:<a@example.test>")
            .await
            .starts_with("503 5.5.1")
    );
    assert!(client.command("EHLO client.test").await.starts_with("250"));
    assert!(
        client
            .command("RCPT TO:<b@example.test>")
            .await
            .starts_with("503 5.5.1")
    );
    assert!(client.command("DATA").await.starts_with("503 5.5.1"));
    assert!(
        client
            .command("MAIL FROM:<a@example.test>")
            .await
            .starts_with("250 2.1.0")
    );
    assert!(
        client
            .command("MAIL FROM:<a@example.test>")
            .await
            .starts_with("503 5.5.1"),
        "nested MAIL"
    );
    assert!(
        client.command("DATA").await.starts_with("554 5.5.1"),
        "DATA without RCPT"
    );
    assert!(
        client
            .command("RCPT TO:<b@example.test>")
            .await
            .starts_with("250 2.1.5")
    );
    assert!(client.command("RSET").await.starts_with("250 2.0.0"));
    assert!(
        client
            .command("RCPT TO:<b@example.test>")
            .await
            .starts_with("503 5.5.1"),
        "RSET cleared the transaction"
    );
    assert!(client.command("FOO bar").await.starts_with("500 5.5.1"));
    assert!(
        client
            .command("VRFY someone")
            .await
            .starts_with("252 2.5.2")
    );
    assert!(client.command("NOOP").await.starts_with("250 2.0.0"));
    assert!(client.command("HELP").await.starts_with("214 2.0.0"));
    assert!(client.command("STARTTLS").await.starts_with("454 4.7.0"));
    assert!(
        client
            .command("MAIL FROM:<a@example.test>")
            .await
            .starts_with("250")
    );
    assert!(
        client
            .command("RCPT TO:<no-domain>")
            .await
            .starts_with("501 5.1.3")
    );
    assert!(
        client
            .command("MAIL FROM:<a@example.test> FOO=bar")
            .await
            .starts_with("5"),
        "unknown parameter"
    );
    assert_eq!(client.command("QUIT").await, "221 2.0.0 Bye\r\n");
    assert_eq!(client.reply().await, "", "connection closed after QUIT");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_command_lines_and_nul_bytes_are_refused_and_the_session_continues() {
    let sink = start_sink().await;
    let relay = relay_with("", &sink).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    let long = format!("NOOP {}", "x".repeat(600));
    assert_eq!(client.command(&long).await, "500 5.5.2 Line too long\r\n");
    // Exactly 512 octets with CRLF is allowed.
    let fits = format!("NOOP {}", "x".repeat(512 - 2 - 5));
    assert!(client.command(&fits).await.starts_with("250"));
    client.send(b"NO\0OP\r\n").await;
    assert!(client.reply().await.starts_with("500 5.5.2"));
    assert!(client.command("NOOP").await.starts_with("250"));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limits_declared_and_undeclared() {
    let sink = start_sink().await;
    let relay = relay_with("max_message_bytes = 10000", &sink).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    assert!(
        client
            .command("EHLO client.test")
            .await
            .contains("SIZE 10000")
    );
    assert_eq!(
        client
            .command("MAIL FROM:<a@example.test> SIZE=20000")
            .await,
        "552 5.3.4 Message size exceeds the limit of 10000 bytes\r\n"
    );
    assert!(
        client
            .command("MAIL FROM:<a@example.test> SIZE=500")
            .await
            .starts_with("250")
    );
    assert!(
        client
            .command("RCPT TO:<b@example.test>")
            .await
            .starts_with("250")
    );
    assert!(client.command("DATA").await.starts_with("354"));
    let big = "0123456789012345678901234567890123456789\r\n".repeat(1000);
    client
        .send(format!("Subject: big\r\n\r\n{big}.\r\n").as_bytes())
        .await;
    assert!(client.reply().await.starts_with("552 5.3.4"));
    assert!(relay.spool_files("queue").is_empty());
    assert!(relay.spool_files("tmp").is_empty());
    assert!(
        client.command("NOOP").await.starts_with("250"),
        "session still in step"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipient_limit_keeps_the_earlier_recipients() {
    let sink = start_sink().await;
    let relay = relay_with("max_recipients = 3", &sink).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    assert!(client.command("EHLO client.test").await.starts_with("250"));
    assert!(
        client
            .command("MAIL FROM:<a@example.test>")
            .await
            .starts_with("250")
    );
    for n in 0..3 {
        assert!(
            client
                .command(&format!("RCPT TO:<r{n}@example.test>"))
                .await
                .starts_with("250")
        );
    }
    assert_eq!(
        client.command("RCPT TO:<r3@example.test>").await,
        "452 4.5.3 Too many recipients\r\n"
    );
    assert!(client.command("DATA").await.starts_with("354"));
    client.send(b"Subject: three\r\n\r\nbody\r\n.\r\n").await;
    assert!(client.reply().await.starts_with("250"));
    let received = sink.wait_for(1, WAIT).await;
    assert_eq!(
        received[0].recipients,
        ["r0@example.test", "r1@example.test", "r2@example.test"]
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_recipients_when_configured() {
    let sink = start_sink().await;
    let relay = relay_with("max_recipients = 100", &sink).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    let recipients: Vec<String> = (0..100).map(|n| format!("r{n}@example.test")).collect();
    let refs: Vec<&str> = recipients.iter().map(String::as_str).collect();
    client
        .send_accepted(
            "a@example.test",
            &refs,
            b"Subject: many\r\n\r\nbody\r\n.\r\n",
        )
        .await;
    let received = sink.wait_for(1, WAIT).await;
    assert_eq!(received[0].recipients.len(), 100);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_outside_the_relay_networks_cannot_relay_any_address_form() {
    let sink = start_sink().await;
    // A loopback network the test client (127.0.0.1) is not in.
    let relay = relay_with("relay_networks = [\"127.0.0.128/25\"]", &sink).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    assert!(client.command("EHLO client.test").await.starts_with("250"));
    // Without AUTH, the transaction is refused at MAIL; nothing after it gets through either.
    assert_eq!(
        client.command("MAIL FROM:<a@example.test>").await,
        "530 5.7.0 Authentication required\r\n"
    );
    for address in [
        "x@evil.test",
        "x%evil.test@ok.test",
        "@ok.test:x@evil.test",
        "\"x@evil.test\"@ok.test",
        "x@[1.2.3.4]",
    ] {
        let reply = client.command(&format!("RCPT TO:<{address}>")).await;
        assert!(
            reply.starts_with("503") || reply.starts_with("501"),
            "{address}: {reply}"
        );
    }
    assert!(client.command("DATA").await.starts_with("503"));
    relay.stop().await;
    assert!(sink.connections().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_commands_get_replies_in_order() {
    let sink = start_sink().await;
    let relay = relay_with("", &sink).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send(b"EHLO client.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<bad>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n")
        .await;
    assert!(client.reply().await.starts_with("250-"));
    assert!(client.reply().await.starts_with("250 2.1.0"));
    assert!(client.reply().await.starts_with("250 2.1.5"));
    assert!(client.reply().await.starts_with("501"));
    assert!(client.reply().await.starts_with("250 2.1.5"));
    assert!(client.reply().await.starts_with("354"));
    client
        .send(b"Subject: p\r\n\r\nx\r\n.\r\nNOOP\r\nQUIT\r\n")
        .await;
    assert!(client.reply().await.starts_with("250 2.0.0 Ok"));
    assert!(client.reply().await.starts_with("250 2.0.0"));
    assert!(client.reply().await.starts_with("221"));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_sent_before_354_is_refused() {
    let sink = start_sink().await;
    let relay = relay_with("", &sink).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send(b"EHLO c.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nSubject: early\r\n\r\nx\r\n.\r\n")
        .await;
    for _ in 0..3 {
        assert!(client.reply().await.starts_with("250"));
    }
    assert!(client.reply().await.starts_with("554 5.5.0"));
    assert_eq!(client.reply().await, "", "disconnected");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_lines_up_to_998_octets_pass_longer_ones_are_refused() {
    let sink = start_sink().await;
    let relay = relay_with("", &sink).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    let ok_line = "y".repeat(998);
    client
        .send_accepted(
            "a@example.test",
            &["b@example.test"],
            format!("Subject: l\r\n\r\n{ok_line}\r\n.\r\n").as_bytes(),
        )
        .await;
    let long_line = "z".repeat(999);
    let reply = client
        .send_message(
            "a@example.test",
            &["b@example.test"],
            format!("Subject: l\r\n\r\n{long_line}\r\n.\r\n").as_bytes(),
        )
        .await;
    assert!(reply.starts_with("554 5.6.0"), "{reply}");
    let received = sink.wait_for(1, WAIT).await;
    assert!(String::from_utf8_lossy(&received[0].content).ends_with(&format!("\r\n{ok_line}\r\n")));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_stuffing_is_byte_identical_at_the_sink() {
    let sink = start_sink().await;
    let relay = relay_with("", &sink).await;
    // Wire form (stuffed) and the content it stands for.
    let cases: [(&[u8], &[u8]); 3] = [
        (
            b"..first line starts with a dot\r\n..\r\n...\r\n..x\r\nmid.dle\r\n",
            b".first line starts with a dot\r\n.\r\n..\r\n.x\r\nmid.dle\r\n",
        ),
        (
            b"Subject: dots\r\n\r\n..\r\n.. \r\n",
            b"Subject: dots\r\n\r\n.\r\n. \r\n",
        ),
        (b"", b""),
    ];
    let (mut client, _) = RawClient::connect(relay.addr).await;
    for (wire, _) in &cases {
        let mut raw = wire.to_vec();
        raw.extend_from_slice(b".\r\n");
        client
            .send_accepted("a@example.test", &["b@example.test"], &raw)
            .await;
    }
    let received = sink.wait_for(cases.len(), WAIT).await;
    assert_eq!(received.len(), cases.len());
    let mut delivered: Vec<Vec<u8>> = received
        .iter()
        .map(|m| without_trace_header(&m.content).to_vec())
        .collect();
    let mut expected: Vec<Vec<u8>> = cases.iter().map(|(_, content)| content.to_vec()).collect();
    delivered.sort();
    expected.sort();
    assert_eq!(delivered, expected);
    assert!(received.iter().all(|m| m.violation.is_none()));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_newlines_are_refused_by_default_and_normalized_on_request() {
    let sink = start_sink().await;
    let strict = relay_with("", &sink).await;
    let (mut client, _) = RawClient::connect(strict.addr).await;
    let reply = client
        .send_message(
            "a@example.test",
            &["b@example.test"],
            b"Subject: bare\r\n\r\nline\nother\r\n.\r\n",
        )
        .await;
    assert!(reply.starts_with("554 5.6.0"), "{reply}");
    assert!(strict.spool_files("queue").is_empty());
    strict.stop().await;

    let lenient = relay_with("bare_newline = \"normalize\"", &sink).await;
    let (mut client, _) = RawClient::connect(lenient.addr).await;
    client
        .send_accepted(
            "a@example.test",
            &["b@example.test"],
            b"Subject: bare\r\n\r\nline\nother\r\n.\r\n",
        )
        .await;
    let received = sink.wait_for(1, WAIT).await;
    assert_eq!(
        without_trace_header(&received[0].content),
        b"Subject: bare\r\n\r\nline\r\nother\r\n"
    );
    assert_eq!(received[0].violation, None);
    lenient.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_refuses_extra_clients_with_421() {
    let sink = start_sink().await;
    let relay = relay_with("max_connections = 2", &sink).await;
    let (first, g1) = RawClient::connect(relay.addr).await;
    let (_second, g2) = RawClient::connect(relay.addr).await;
    assert!(g1.starts_with("220") && g2.starts_with("220"));
    let (_third, g3) = RawClient::connect(relay.addr).await;
    assert_eq!(g3, "421 4.7.0 Too many connections, try again later\r\n");
    drop(first);
    // Once a slot is free a new client is served again (the relay notices the close first).
    let served = eventually(|| {
        let addr = relay.addr;
        let greeting = std::thread::spawn(move || {
            use std::io::Read;
            let mut stream = std::net::TcpStream::connect(addr).ok()?;
            let mut buf = [0u8; 64];
            let n = stream.read(&mut buf).ok()?;
            Some(String::from_utf8_lossy(&buf[..n]).into_owned())
        })
        .join()
        .ok()
        .flatten()?;
        greeting.starts_with("220").then_some(greeting)
    })
    .await;
    assert!(served.is_some());
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_are_dropped_with_421() {
    let sink = start_sink().await;
    let relay = relay_with("command_timeout = \"300ms\"", &sink).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    assert!(client.command("EHLO c.test").await.starts_with("250"));
    // Say nothing: the relay's own timer ends the session.
    assert_eq!(
        client.reply().await,
        "421 4.4.2 Timeout, closing the connection\r\n"
    );
    assert_eq!(client.reply().await, "");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_data_gives_no_250_and_spools_nothing() {
    let sink = start_sink().await;
    let relay = relay_with("", &sink).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .start_message("a@example.test", &["b@example.test"])
        .await;
    client.send(b"Subject: cut\r\n\r\nhalf a message").await;
    let dir = relay.stop().await;
    assert_eq!(
        client.reply().await,
        "421 4.3.2 Service shutting down, try again later\r\n"
    );
    let spool = dir.path().join("var/spool");
    assert!(spool_files(&spool, "queue").is_empty());
    assert!(spool_files(&spool, "tmp").is_empty());
}

/// BDAT is not offered; a client that sends it anyway is disconnected, and the chunk that
/// followed the command never runs as commands. Failed before: after the 502, "RSET" and
/// "NOOP" inside the chunk were answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bdat_closes_the_session_before_its_chunk_can_run_as_commands() {
    let sink = start_sink().await;
    let relay = relay_with("", &sink).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    assert!(client.command("EHLO client.test").await.starts_with("250"));
    assert!(
        client
            .command("MAIL FROM:<a@example.test>")
            .await
            .starts_with("250")
    );
    assert!(
        client
            .command("RCPT TO:<b@example.test>")
            .await
            .starts_with("250")
    );
    client.send(b"BDAT 12 LAST\r\nRSET\r\nNOOP\r\n").await;
    let reply = client.reply().await;
    assert!(reply.starts_with("502 5.5.1"), "{reply}");
    assert_eq!(
        client.reply().await,
        "",
        "closed: nothing answers the chunk"
    );
}

/// On a dual-stack `[::]` listener an IPv4 client in `relay_networks` may relay (it arrives as
/// ::ffff:127.0.0.1, which is canonicalized first). Failed before: 530 at MAIL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv4_client_on_a_dual_stack_listener_is_in_its_relay_network() {
    let sink = start_sink().await;
    let config = format!(
        "[smtp]\nlisten = [\"[::]:0\"]\nhostname = \"relay.test\"\n{}[[ip]]\naddress = \"127.0.0.2\"\n",
        catch_all_route(sink.addr())
    );
    let relay = TestRelay::start(&config).await;
    let port = relay.addr.port();
    let (mut client, _) =
        RawClient::connect(std::net::SocketAddr::from(([127, 0, 0, 1], port))).await;
    client
        .send_accepted(
            "a@example.test",
            &["b@example.test"],
            b"Subject: dual\r\n\r\nx\r\n.\r\n",
        )
        .await;
    let received = sink.wait_for(1, WAIT).await;
    let text = String::from_utf8_lossy(&received[0].content).into_owned();
    assert!(
        text.contains("[127.0.0.1]"),
        "the Received header names the IPv4 client: {text}"
    );
    relay.stop().await;
}

/// Drips `bytes` (repeated if need be) one at a time, 300 ms apart, for up to 30 s: each read
/// comes well within the per-read timeout, so only a deadline for the whole command or message
/// can end the session. Returns what the relay said within 10 s ("" if nothing).
async fn drip(client: RawClient, bytes: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut reader, mut writer) = client.stream.into_split();
    let dripping = tokio::spawn(async move {
        for byte in bytes.iter().cycle().take(100) {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    });
    let mut reply = vec![0u8; 512];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), reader.read(&mut reply))
        .await
        .map_or(0, |read| read.unwrap_or(0));
    dripping.abort();
    String::from_utf8_lossy(&reply[..read]).into_owned()
}

/// A command dripped a byte at a time ends in 421 once `command_timeout` has passed since it
/// began. Failed before: the timeout applied to each read, so the session lived for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripped_command_meets_a_deadline() {
    let sink = start_sink().await;
    let relay = relay_with("command_timeout = \"1s\"", &sink).await;
    let (client, _) = RawClient::connect(relay.addr).await;
    let reply = drip(client, b"EHLO a.very.slow.client.test.").await;
    assert!(reply.starts_with("421 4.4.2"), "{reply:?}");
}

/// DATA dripped a byte at a time ends in 421 once `data_timeout` (plus a second per KiB
/// received) has passed. Failed before: the session lived as long as the client kept dripping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dripped_data_meets_a_deadline() {
    let sink = start_sink().await;
    let relay = relay_with("data_timeout = \"1s\"", &sink).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .start_message("a@example.test", &["b@example.test"])
        .await;
    let reply = drip(client, b"this body never ends ").await;
    assert!(reply.starts_with("421 4.4.2"), "{reply:?}");
    assert!(sink.messages().is_empty(), "nothing was accepted");
}

/// One address may hold `max_connections_per_ip` sessions; the next is greeted with 421 and
/// closed, other addresses are still served, and a place comes back when a session ends.
/// Failed before: there was no per-address limit (50 idle connections filled max_connections).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_more_than_its_share_of_connections() {
    let sink = start_sink().await;
    let relay = relay_with("max_connections_per_ip = 3", &sink).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let (client, greeting) = RawClient::connect(relay.addr).await;
        assert!(greeting.starts_with("220"), "{greeting}");
        held.push(client);
    }
    let (_, greeting) = RawClient::connect(relay.addr).await;
    assert!(greeting.starts_with("421 4.7.0"), "{greeting}");
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.9:0".parse().unwrap()).unwrap();
    let stream = other.connect(relay.addr).await.unwrap();
    let mut from_other = RawClient::over(stream);
    assert!(
        from_other.reply().await.starts_with("220"),
        "another address"
    );
    let mut first = held.remove(0);
    assert!(first.command("QUIT").await.starts_with("221"));
    assert_eq!(first.reply().await, "", "closed");
    let greeting = eventually_async(|| async {
        let (_, greeting) = RawClient::connect(relay.addr).await;
        greeting.starts_with("220").then_some(greeting)
    })
    .await;
    assert!(greeting.is_some(), "a place came back");
}
