//! Reverse DNS of the dedicated IPs, from a test DNS server: a PTR that resolves back
//! (forward-confirmed), one that points elsewhere, none at all, and a configured EHLO name that
//! differs from the PTR. The addresses are documentation ones (192.0.2.0/24), looked up only:
//! loopback addresses cannot be used, as the resolver answers `localhost` for them itself
//! (RFC 6761). That a confirmed PTR becomes the EHLO name is tested in `ipv6::namespace`.

use std::net::Ipv4Addr;

use poolrelay::sink::Sink;

use crate::common::dns::{DnsStub, Entry};
use crate::common::http::call;
use crate::common::{TestRelay, catch_all_route, eventually_async, smtp_section};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ptr_and_fcrdns_are_reported_per_ip_and_as_a_metric() {
    let dns = DnsStub::start(vec![
        (
            "2.2.0.192.in-addr.arpa",
            Entry::Ptr("mail2.relay.test".into()),
        ),
        ("mail2.relay.test", Entry::A(Ipv4Addr::new(192, 0, 2, 2))),
        (
            "3.2.0.192.in-addr.arpa",
            Entry::Ptr("mail3.relay.test".into()),
        ),
        ("mail3.relay.test", Entry::A(Ipv4Addr::new(192, 0, 2, 9))),
        (
            "5.2.0.192.in-addr.arpa",
            Entry::Ptr("mail5.relay.test".into()),
        ),
        ("mail5.relay.test", Entry::A(Ipv4Addr::new(192, 0, 2, 5))),
    ])
    .await;
    let sink = Sink::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let config = format!(
        r#"{}{}[admin]
socket = "var/admin.sock"
[dns]
nameservers = ["{}"]
[[pool]]
name = "confirmed"
[[ip]]
address = "192.0.2.2"
pool = "confirmed"
[[ip]]
address = "192.0.2.3"
[[ip]]
address = "192.0.2.4"
[[ip]]
address = "192.0.2.5"
ehlo_hostname = "other.relay.test"
[[configuration_set]]
name = "c"
sending_pool = "confirmed"
"#,
        smtp_section(""),
        catch_all_route(sink.addr()),
        dns.addr
    );
    let relay = TestRelay::start(&config).await;
    let socket = relay.dir.path().join("var/admin.sock");
    let expected = [
        ("192.0.2.2", Some("mail2.relay.test"), true, true),
        ("192.0.2.3", Some("mail3.relay.test"), false, false),
        ("192.0.2.4", None, false, false),
        ("192.0.2.5", Some("mail5.relay.test"), true, false),
    ];
    for (ip, ptr, confirmed, matches) in expected {
        let path = format!("/v2/email/dedicated-ips/{ip}");
        let reverse = eventually_async(|| async {
            let (_, body) = call(&socket, "GET", &path, None).await;
            let reverse = body["DedicatedIp"]["ReverseDns"].clone();
            (!reverse.is_null()).then_some(reverse)
        })
        .await
        .unwrap_or_else(|| panic!("{ip} was never checked"));
        assert_eq!(reverse["Ptr"].as_str(), ptr, "{ip}: {reverse}");
        assert_eq!(reverse["ForwardConfirmed"], confirmed, "{ip}: {reverse}");
        assert_eq!(reverse["MatchesEhlo"], matches, "{ip}: {reverse}");
    }
    let (_, metrics) = crate::common::http::exchange(
        &socket,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    for (ip, value) in [
        ("192.0.2.2", 1),
        ("192.0.2.3", 0),
        ("192.0.2.4", 0),
        ("192.0.2.5", 0),
    ] {
        let line = format!("poolrelay_ip_reverse_dns_confirmed{{source_ip=\"{ip}\"}} {value}");
        assert!(metrics.contains(&line), "{line} in:\n{metrics}");
    }
    let config = relay.dir.path().join("poolrelay.toml");
    let listed = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_poolrelay"))
            .args(["ips", "list", "--config"])
            .arg(config)
            .output()
            .expect("the binary runs")
    })
    .await
    .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    for (ip, shown) in [
        ("192.0.2.2", "mail2.relay.test (FCrDNS ok)"),
        (
            "192.0.2.3",
            "mail3.relay.test (not confirmed, not the EHLO name)",
        ),
        ("192.0.2.4", "no PTR"),
        (
            "192.0.2.5",
            "mail5.relay.test (FCrDNS ok, not the EHLO name)",
        ),
    ] {
        let line = listed
            .lines()
            .find(|l| l.starts_with(ip))
            .unwrap_or_default();
        assert!(
            line.contains(shown),
            "ips list shows {shown} for {ip}:\n{listed}"
        );
    }
    drop(relay);
}
