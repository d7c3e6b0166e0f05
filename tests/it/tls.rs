//! TLS with real certificates (made with rcgen): STARTTLS and implicit TLS inbound, the STARTTLS
//! injection defence, and the configuration set's TLS policy outbound.

use std::path::Path;
use std::sync::Arc;

use crate::common::*;
use poolrelay::config::TlsFiles;
use poolrelay::sink::Sink;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Writes a self-signed certificate and key for `name` into `dir`.
pub(crate) fn certificate(dir: &Path, name: &str) -> TlsFiles {
    let generated =
        rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("certificate");
    let files = TlsFiles {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&files.cert, generated.cert.pem()).unwrap();
    std::fs::write(&files.key, generated.signing_key.serialize_pem()).unwrap();
    files
}

fn tls_config(sink: std::net::SocketAddr, dir: &Path, extra: &str) -> String {
    let files = certificate(dir, "relay.test");
    format!(
        r#"{}[smtp.tls]
cert = "{}"
key = "{}"
{}[queue]
retry_interval = "1h"
[events]
path = "var/events.jsonl"
[[ip]]
address = "127.0.0.2"
[[configuration_set]]
name = "strict"
tls_policy = "REQUIRE"
[[configuration_set]]
name = "relaxed"
tls_policy = "OPTIONAL"
"#,
        smtp_section(extra),
        files.cert.display(),
        files.key.display(),
        catch_all_route(sink)
    )
}

/// Python's smtplib with STARTTLS or implicit TLS (certificate not verified: it is self-signed).
fn python_tls_send(addr: std::net::SocketAddr, implicit: bool) -> String {
    let script = r#"
import smtplib, ssl, sys
host, port, implicit = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
try:
    if implicit:
        s = smtplib.SMTP_SSL(host, port, context=context, timeout=20)
        s.ehlo("python.tls.test")
    else:
        s = smtplib.SMTP(host, port, timeout=20)
        s.ehlo("python.tls.test")
        s.starttls(context=context)
        s.ehlo("python.tls.test")
    print("VERSION", s.sock.version())
    s.sendmail("app@example.test", ["user@example.test"], "Subject: tls\r\n\r\nsecret\r\n")
    print("OK")
    s.quit()
except Exception as e:
    print("ERROR", repr(e))
"#;
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            &addr.ip().to_string(),
            &addr.port().to_string(),
            if implicit { "1" } else { "0" },
        ])
        .output()
        .expect("python3 runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_implicit_tls_with_a_real_client() {
    let sink = start_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let text = tls_config(sink.addr(), dir.path(), "tls_listen = [\"127.0.0.1:0\"]");
    let relay = TestRelay::start_in(dir, &text).await;
    let plain = relay.addr;
    let implicit = relay.relay.as_ref().unwrap().tls_addrs()[0];
    for (addr, implicit) in [(plain, false), (implicit, true)] {
        let out = tokio::task::spawn_blocking(move || python_tls_send(addr, implicit))
            .await
            .unwrap();
        assert!(out.contains("OK"), "{out}");
        assert!(
            out.contains("VERSION TLSv1.3") || out.contains("VERSION TLSv1.2"),
            "{out}"
        );
    }
    let received = sink.wait_for(2, WAIT).await;
    assert_eq!(received.len(), 2);
    for message in &received {
        let text = String::from_utf8_lossy(&message.content);
        assert!(text.contains("with ESMTPS id"), "{text}");
        assert!(text.contains("(using TLSv1."), "{text}");
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_sent_with_starttls_is_discarded_and_starttls_is_not_offered_twice() {
    let sink = start_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let text = tls_config(sink.addr(), dir.path(), "");
    let relay = TestRelay::start_in(dir, &text).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    let ehlo = client.command("EHLO c.test").await;
    assert!(ehlo.contains("250-STARTTLS\r\n"), "{ehlo}");
    // STARTTLS and an injected EHLO in one packet.
    client.send(b"STARTTLS\r\nEHLO injected.test\r\n").await;
    assert!(client.reply().await.starts_with("220 2.0.0"));
    poolrelay::server::install_crypto_provider();
    let connector = tokio_rustls::TlsConnector::from(
        poolrelay::outbound::tls::opportunistic_client_config().unwrap(),
    );
    let name = rustls::pki_types::ServerName::try_from("relay.test").unwrap();
    let mut tls = connector
        .connect(name, client.stream)
        .await
        .expect("handshake");
    // The first reply inside TLS answers our NOOP, not the injected EHLO.
    tls.write_all(b"NOOP\r\n").await.unwrap();
    let mut buffer = vec![0u8; 1024];
    let n = tls.read(&mut buffer).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&buffer[..n]), "250 2.0.0 Ok\r\n");
    // The session starts over: MAIL needs a new EHLO, and STARTTLS is no longer offered.
    tls.write_all(b"MAIL FROM:<a@example.test>\r\n")
        .await
        .unwrap();
    let n = tls.read(&mut buffer).await.unwrap();
    assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("503 5.5.1"));
    tls.write_all(b"EHLO c.test\r\n").await.unwrap();
    let n = tls.read(&mut buffer).await.unwrap();
    let ehlo = String::from_utf8_lossy(&buffer[..n]).into_owned();
    assert!(
        ehlo.starts_with("250-") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    tls.write_all(b"STARTTLS\r\n").await.unwrap();
    let n = tls.read(&mut buffer).await.unwrap();
    assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("503 5.5.1"));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_policy_require_never_sends_in_plaintext() {
    // A sink without STARTTLS.
    let plain_sink = start_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let text = tls_config(plain_sink.addr(), dir.path(), "");
    let relay = TestRelay::start_in(dir, &text).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    for set in ["strict", "relaxed"] {
        client.send_for_set(set, "user@example.test", set).await;
    }
    // OPTIONAL is delivered in plaintext; REQUIRE is deferred with 4.7.10 and never sent.
    let received = plain_sink.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1);
    assert!(String::from_utf8_lossy(&received[0].content).contains("Subject: relaxed"));
    assert!(!received[0].tls);
    let spool = relay.spool_dir();
    let reason = eventually(|| {
        queued_envelopes(&spool)
            .into_iter()
            .filter(|e| e.attempts > 0)
            .find_map(|e| e.recipients[0].last_reply.clone())
    })
    .await
    .expect("the strict message is deferred");
    assert!(reason.starts_with("451 4.7.10 TLS is required"), "{reason}");
    assert_eq!(
        plain_sink.messages().len(),
        1,
        "the strict message never reached the plaintext sink"
    );
    relay.stop().await;

    // Towards a sink with STARTTLS, REQUIRE is delivered, encrypted.
    poolrelay::server::install_crypto_provider();
    let sink_dir = tempfile::tempdir().unwrap();
    let files = certificate(sink_dir.path(), "sink.test");
    let tls_sink = Sink::start_tls(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(poolrelay::inbound::tls::server_config(&files).unwrap()),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = tls_config(tls_sink.addr(), dir.path(), "");
    let relay = TestRelay::start_in(dir, &text).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send_accepted(
            "app@example.test",
            &["user@example.test"],
            b"X-SES-CONFIGURATION-SET: strict\r\nSubject: strict\r\n\r\nx\r\n.\r\n",
        )
        .await;
    let received = tls_sink.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1);
    assert!(received[0].tls, "delivered over TLS");
    let dir = relay.stop().await;
    let events = std::fs::read_to_string(dir.path().join("var/events.jsonl")).unwrap();
    let delivery: serde_json::Value = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["eventType"] == "Delivery")
        .expect("a Delivery event");
    let version = delivery["mail"]["tags"]["ses:outgoing-tls-version"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(version == "TLSv1.3" || version == "TLSv1.2", "{delivery}");
}

/// An SMTP client over TLS, after STARTTLS on a plain connection.
pub(crate) type TlsClient = RawClient<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

pub(crate) async fn start_tls_client(addr: std::net::SocketAddr) -> TlsClient {
    let (mut client, _) = RawClient::connect(addr).await;
    assert!(client.command("EHLO c.test").await.starts_with("250"));
    assert!(client.command("STARTTLS").await.starts_with("220"));
    poolrelay::server::install_crypto_provider();
    let connector = tokio_rustls::TlsConnector::from(
        poolrelay::outbound::tls::opportunistic_client_config().unwrap(),
    );
    let name = rustls::pki_types::ServerName::try_from("relay.test").unwrap();
    RawClient::over(
        connector
            .connect(name, client.stream)
            .await
            .expect("handshake"),
    )
}

pub(crate) fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_only_inside_tls_with_every_failure_code_and_set_restrictions() {
    let sink = start_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let hash = poolrelay::password::hash("right password").unwrap();
    let text = tls_config(
        sink.addr(),
        dir.path(),
        "relay_networks = [\"127.0.0.128/25\"]",
    )
    .replace(
        "[queue]",
        &format!(
            r#"[[smtp.user]]
username = "app1"
password_hash = "{hash}"
allowed_configuration_sets = ["relaxed"]
[queue]"#
        ),
    );
    let relay = TestRelay::start_in(dir, &text).await;

    // In plaintext: no AUTH offered, AUTH refused with 538, no relaying.
    let (mut plain, _) = RawClient::connect(relay.addr).await;
    assert!(!plain.command("EHLO c.test").await.contains("AUTH"));
    assert!(
        plain
            .command(&format!("AUTH PLAIN {}", b64("\0app1\0right password")))
            .await
            .starts_with("538 5.7.11")
    );
    assert!(
        plain
            .command("MAIL FROM:<a@example.test>")
            .await
            .starts_with("530 5.7.0")
    );

    let mut tls = start_tls_client(relay.addr).await;
    assert!(
        tls.command("EHLO c.test")
            .await
            .contains("250-AUTH PLAIN LOGIN\r\n")
    );
    assert!(
        tls.command("MAIL FROM:<a@example.test>")
            .await
            .starts_with("530 5.7.0")
    );
    assert!(
        tls.command("AUTH PLAIN !!notbase64!!")
            .await
            .starts_with("501 5.5.2")
    );
    assert!(
        tls.command("AUTH LOGIN")
            .await
            .starts_with("334 VXNlcm5hbWU6")
    );
    assert!(tls.command("*").await.starts_with("501 5.0.0"));
    assert!(
        tls.command(&format!("AUTH PLAIN {}", b64("\0app1\0wrong")))
            .await
            .starts_with("535 5.7.8")
    );
    assert!(tls.command("AUTH XOAUTH9").await.starts_with("5"));
    // LOGIN, step by step, with the right password.
    assert!(tls.command("AUTH LOGIN").await.starts_with("334 "));
    assert!(
        tls.command(&b64("app1"))
            .await
            .starts_with("334 UGFzc3dvcmQ6")
    );
    assert!(
        tls.command(&b64("right password"))
            .await
            .starts_with("235 2.7.0")
    );
    assert!(
        tls.command(&format!("AUTH PLAIN {}", b64("\0app1\0right password")))
            .await
            .starts_with("503 5.5.1")
    );

    // Authenticated: may relay, but only through the configuration sets it is allowed.
    for (set, expected) in [("strict", "554 5.7.1"), ("relaxed", "250")] {
        assert!(
            tls.command("MAIL FROM:<app@example.test>")
                .await
                .starts_with("250")
        );
        assert!(
            tls.command("RCPT TO:<user@example.test>")
                .await
                .starts_with("250")
        );
        assert!(tls.command("DATA").await.starts_with("354"));
        let reply = tls
            .command(&format!(
                "X-SES-CONFIGURATION-SET: {set}\r\nSubject: {set}\r\n\r\nx\r\n."
            ))
            .await;
        assert!(reply.starts_with(expected), "{set}: {reply}");
    }
    let received = sink.wait_for(1, WAIT).await;
    let text = String::from_utf8_lossy(&received[0].content).into_owned();
    assert!(
        text.contains("(Authenticated sender: app1)") && text.contains("with ESMTPSA id"),
        "{text}"
    );
    assert!(!text.contains("right password"));

    // Guessing: slowed down, then disconnected on the fifth failure.
    let mut guesser = start_tls_client(relay.addr).await;
    assert!(guesser.command("EHLO c.test").await.starts_with("250"));
    for attempt in 1..=5 {
        let reply = guesser
            .command(&format!(
                "AUTH PLAIN {}",
                b64(&format!("\0app1\0guess{attempt}"))
            ))
            .await;
        assert!(reply.starts_with("535 5.7.8"), "{attempt}: {reply}");
    }
    assert!(guesser.reply().await.starts_with("421 4.7.0"));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_can_require_tls_and_verify_the_certificate() {
    poolrelay::server::install_crypto_provider();
    // A TLS sink whose self-signed certificate names 127.0.0.1.
    let sink_dir = tempfile::tempdir().unwrap();
    let files = certificate(sink_dir.path(), "127.0.0.1");
    let tls_sink = Sink::start_tls(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(poolrelay::inbound::tls::server_config(&files).unwrap()),
    )
    .await
    .unwrap();
    let plain_sink = start_sink().await;
    let route = |domain: &str, sink: std::net::SocketAddr, options: &str| {
        format!(
            r#"[[route]]
domain = "{domain}"
next_hop = "[{}]:{}"
{options}
"#,
            sink.ip(),
            sink.port()
        )
    };
    let config = |ca: Option<&Path>| {
        format!(
            r#"{}[queue]
retry_interval = "1h"
{}
{}{}{}[[ip]]
address = "127.0.0.2"
"#,
            smtp_section(""),
            ca.map(|p| format!("[outbound]\nca_file = \"{}\"\n", p.display()))
                .unwrap_or_default(),
            route("verified.test", tls_sink.addr(), "tls_verify = true"),
            route("required.test", plain_sink.addr(), "tls = \"require\""),
            route("plain.test", plain_sink.addr(), ""),
        )
    };
    let send_all = |relay_addr: std::net::SocketAddr| async move {
        let (mut client, _) = RawClient::connect(relay_addr).await;
        for rcpt in ["a@verified.test", "b@required.test", "c@plain.test"] {
            client
                .send_accepted(
                    "app@example.test",
                    &[rcpt],
                    format!("Subject: {rcpt}\r\n\r\nx\r\n.\r\n").as_bytes(),
                )
                .await;
        }
    };
    let deferred = |spool: std::path::PathBuf| {
        let found: Vec<String> = queued_envelopes(&spool)
            .into_iter()
            .filter(|e| e.attempts > 0)
            .map(|e| {
                format!(
                    "{} {}",
                    e.recipients[0].address,
                    e.recipients[0].last_reply.clone().unwrap_or_default()
                )
            })
            .collect();
        (found.len() == 2).then_some(found)
    };

    // Verified against the webpki roots, a self-signed certificate fails: deferred, never sent.
    let relay = TestRelay::start(&config(None)).await;
    send_all(relay.addr).await;
    let mut reasons = eventually(|| deferred(relay.spool_dir()))
        .await
        .expect("two deferred");
    reasons.sort();
    assert!(
        reasons[0].starts_with("a@verified.test 451 4.7.10"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("b@required.test 451 4.7.10"),
        "{reasons:?}"
    );
    assert_eq!(
        plain_sink.wait_for(1, WAIT).await.len(),
        1,
        "only the plain route delivered"
    );
    assert!(tls_sink.messages().is_empty());
    relay.stop().await;

    // With the sink's certificate as the CA, the verified route delivers over TLS.
    let relay = TestRelay::start(&config(Some(&files.cert))).await;
    send_all(relay.addr).await;
    let received = tls_sink.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1);
    assert!(received[0].tls);
    assert_eq!(received[0].recipients, ["a@verified.test"]);
    relay.stop().await;
}

/// A next hop that slips a forged reply in behind its `220` to STARTTLS, in plaintext.
async fn injecting_next_hop(
    files: &TlsFiles,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(
        poolrelay::inbound::tls::server_config(files).unwrap(),
    ));
    let task = tokio::spawn(async move {
        let (mut plain, _) = listener.accept().await.unwrap();
        let mut buffer = vec![0u8; 4096];
        plain.write_all(b"220 hostile ESMTP\r\n").await.unwrap();
        let _ = plain.read(&mut buffer).await.unwrap(); // EHLO
        plain
            .write_all(b"250-hostile\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
            .await
            .unwrap();
        let _ = plain.read(&mut buffer).await.unwrap(); // STARTTLS
        plain
            .write_all(b"220 go ahead\r\n250 injected reply\r\n")
            .await
            .unwrap();
        let mut tls = acceptor.accept(plain).await.unwrap();
        // From here on a well-behaved server: one reply per command, in order.
        let mut commands = Vec::new();
        let mut pending = Vec::new();
        loop {
            let n = tls.read(&mut buffer).await.unwrap_or(0);
            if n == 0 {
                return commands;
            }
            pending.extend_from_slice(&buffer[..n]);
            while let Some(end) = pending.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = pending.drain(..end + 2).collect();
                let line = String::from_utf8_lossy(&line[..end]).into_owned();
                let in_data = commands.last().is_some_and(|c: &String| c == "DATA") && line != ".";
                let reply: &[u8] = if in_data {
                    continue;
                } else if line.starts_with("EHLO") {
                    b"250-hostile\r\n250 PIPELINING\r\n"
                } else if line == "DATA" {
                    b"354 go\r\n"
                } else if line == "." {
                    b"250 2.0.0 stored\r\n"
                } else if line == "QUIT" {
                    b"221 bye\r\n"
                } else {
                    b"250 ok\r\n"
                };
                if !(commands.last().is_some_and(|c: &String| c == "DATA") && line != ".") {
                    commands.push(line);
                }
                tls.write_all(reply).await.unwrap();
            }
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_injected_before_the_outbound_handshake_is_discarded() {
    poolrelay::server::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let files = certificate(dir.path(), "hostile.test");
    let (hop, server) = injecting_next_hop(&files).await;
    let relay = TestRelay::start(&format!(
        r#"{}{}[queue]
retry_interval = "1h"
[[ip]]
address = "127.0.0.2"
"#,
        smtp_section(""),
        catch_all_route(hop)
    ))
    .await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send_accepted(
            "app@example.test",
            &["user@example.test"],
            b"Subject: x\r\n\r\nbody\r\n.\r\n",
        )
        .await;
    // Delivered in step: the injected "250" was not taken as the reply to EHLO inside TLS.
    let spool = relay.spool_dir();
    eventually(|| spool_files(&spool, "queue").is_empty().then_some(()))
        .await
        .expect("delivered and removed");
    relay.stop().await;
    let commands = server.await.unwrap();
    assert_eq!(commands[0], "EHLO relay.test");
    assert!(commands.iter().any(|c| c == "."), "{commands:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate() {
    poolrelay::server::install_crypto_provider();
    let sink = start_sink().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("poolrelay.toml"),
        tls_config(sink.addr(), dir.path(), ""),
    )
    .unwrap();
    let (mut relay, addr) = spawn_relay(dir.path());
    let served_certificate = || async move {
        let (mut client, _) = RawClient::connect(addr).await;
        assert!(client.command("EHLO c.test").await.starts_with("250"));
        assert!(client.command("STARTTLS").await.starts_with("220"));
        let connector = tokio_rustls::TlsConnector::from(
            poolrelay::outbound::tls::opportunistic_client_config().unwrap(),
        );
        let name = rustls::pki_types::ServerName::try_from("relay.test").unwrap();
        let tls = connector
            .connect(name, client.stream)
            .await
            .expect("handshake");
        tls.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec()
    };
    let before = served_certificate().await;
    certificate(dir.path(), "relay.test"); // new key and certificate in the same files
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(relay.id() as libc::pid_t, libc::SIGHUP) };
    let before = &before;
    let served_certificate = &served_certificate;
    let after = eventually_async(move || async move {
        let now = served_certificate().await;
        (now != *before).then_some(now)
    })
    .await;
    assert!(
        after.is_some(),
        "the new certificate is served after SIGHUP"
    );
    relay.kill().unwrap();
    relay.wait().unwrap();
}
