//! Next hops from DNS: MX preference with fallback, A records when there is no MX, and the
//! permanent failures (null MX, a domain that does not exist). DNS comes from a stub server on
//! loopback; the MX hosts are loopback addresses on the sink's port (`outbound.mx_port`).

use crate::common::dns::{DnsStub, Entry};
use crate::common::*;
use std::net::Ipv4Addr;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_records_are_followed_in_preference_order() {
    let sink = start_sink().await;
    let dns = DnsStub::start(vec![
        // The preferred MX has an address where nothing listens: the relay moves on to the next.
        ("pref.test", Entry::Mx(10, "down.pref.test.")),
        ("pref.test", Entry::Mx(20, "up.pref.test.")),
        ("down.pref.test", Entry::A(Ipv4Addr::new(127, 0, 0, 250))),
        ("up.pref.test", Entry::A(Ipv4Addr::new(127, 0, 0, 1))),
        // No MX at all: the domain's own address is used.
        ("plain.test", Entry::A(Ipv4Addr::new(127, 0, 0, 1))),
        // Null MX (RFC 7505): accepts no mail.
        ("null.test", Entry::Mx(0, ".")),
    ])
    .await;
    let relay = TestRelay::start(&format!(
        r#"{}[dns]
nameservers = ["{}"]
[outbound]
mx_port = {}
[[ip]]
address = "127.0.0.2"
"#,
        smtp_section(""),
        dns.addr,
        sink.addr().port()
    ))
    .await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    for rcpt in [
        "a@pref.test",
        "b@plain.test",
        "c@null.test",
        "d@missing.test",
    ] {
        client
            .send_accepted(
                "app@example.test",
                &[rcpt],
                format!("Subject: {rcpt}\r\n\r\nx\r\n.\r\n").as_bytes(),
            )
            .await;
    }
    let received = sink.wait_for(2, WAIT).await;
    let mut recipients: Vec<String> = received.iter().flat_map(|m| m.recipients.clone()).collect();
    recipients.sort();
    assert_eq!(recipients, ["a@pref.test", "b@plain.test"]);
    assert!(received.iter().all(|m| m.peer.ip() == ip("127.0.0.2")));

    // The null-MX and nonexistent domains fail permanently: they leave the queue without retry.
    let spool = relay.spool_dir();
    eventually(|| spool_files(&spool, "queue").is_empty().then_some(()))
        .await
        .expect("permanent failures are not kept for retry");
    assert_eq!(sink.messages().len(), 2);
    relay.stop().await;
}

/// A minimal host has no CA certificates (no ca-certificates package): DNS must still work.
/// The relay binary runs with the system CA store pointed at an empty folder and delivers by MX.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_delivery_works_on_a_host_without_ca_certificates() {
    let sink = start_sink().await;
    let dns = DnsStub::start(vec![
        ("nocerts.test", Entry::Mx(10, "mx.nocerts.test.")),
        ("mx.nocerts.test", Entry::A(Ipv4Addr::new(127, 0, 0, 1))),
    ])
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("poolrelay.toml"),
        format!(
            "{}[dns]\nnameservers = [\"{}\"]\n[outbound]\nmx_port = {}\n[[ip]]\naddress = \"127.0.0.2\"\n",
            smtp_section(""),
            dns.addr,
            sink.addr().port()
        ),
    )
    .expect("config");
    let no_certs = dir.path().join("no-certs");
    std::fs::create_dir_all(&no_certs).expect("folder");
    let none = no_certs.join("none.pem");
    let (child, listen) = spawn_relay_with(
        dir.path(),
        &[("SSL_CERT_FILE", &none), ("SSL_CERT_DIR", &no_certs)],
    );
    let relay = KilledOnDrop(child);
    let client = tokio::net::TcpStream::connect(listen)
        .await
        .expect("the relay listens");
    let mut client = RawClient::over(client);
    assert!(client.reply().await.starts_with("220"));
    client
        .send_accepted(
            "app@example.test",
            &["a@nocerts.test"],
            b"Subject: x\r\n\r\nx\r\n.\r\n",
        )
        .await;
    let received = sink.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1, "delivered by MX without a CA store");
    assert_eq!(received[0].peer.ip(), ip("127.0.0.2"));
    drop(relay);
}
