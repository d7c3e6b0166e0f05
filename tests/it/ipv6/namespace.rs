//! Several IPv6 sources, with documentation addresses (2001:db8::/32) on the loopback device of
//! a network namespace this test makes for one thread (`unshare(CLONE_NEWNET)`): the relay, its
//! sink and its DNS server all run in there, so nothing leaves the namespace.

use std::net::{IpAddr, Ipv6Addr};
use std::process::Command;

use hickory_resolver::proto::rr::Name;
use poolrelay::sink::Sink;

use crate::common::dns::{DnsStub, Entry};
use crate::common::http::call;
use crate::common::{
    RawClient, TestRelay, WAIT, eventually_async, privilege_missing, smtp_section,
};

const SOURCES: [&str; 3] = ["2001:db8::10", "2001:db8::11", "2001:db8::12"];
const NEXT_HOP: &str = "2001:db8::1";

/// Moves this thread into a new network namespace with `lo` up and the test's addresses on it;
/// `Err` says what was not permitted.
fn enter_namespace() -> Result<(), String> {
    // SAFETY: unshare takes flags only; CLONE_NEWNET moves just the calling thread (and the
    // threads and processes it starts later) into a new network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "create a network namespace ({})",
            std::io::Error::last_os_error()
        ));
    }
    let ip = |args: &[&str]| -> Result<(), String> {
        let status = Command::new("ip")
            .args(args)
            .status()
            .map_err(|e| format!("run ip (iproute2): {e}"))?;
        status
            .success()
            .then_some(())
            .ok_or_else(|| format!("ip {}", args.join(" ")))
    };
    ip(&["link", "set", "lo", "up"])?;
    for address in SOURCES.iter().chain([&NEXT_HOP]) {
        ip(&[
            "-6",
            "addr",
            "add",
            &format!("{address}/128"),
            "dev",
            "lo",
            "nodad",
        ])?;
    }
    Ok(())
}

#[test]
fn several_ipv6_sources_share_a_pool_and_a_confirmed_ptr_is_the_ehlo_name() {
    let outcome = std::thread::spawn(|| -> Result<(), String> {
        enter_namespace()?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(in_namespace());
        Ok(())
    })
    .join();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(what)) => privilege_missing(&what),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

async fn in_namespace() {
    let with_ptr: IpAddr = SOURCES[0].parse().unwrap();
    let reverse_name = Name::from(with_ptr).to_ascii();
    let dns = DnsStub::start(vec![]).await;
    dns.add(&reverse_name, Entry::Ptr("mail10.relay.test".into()));
    dns.add(
        "mail10.relay.test",
        Entry::Aaaa(SOURCES[0].parse::<Ipv6Addr>().unwrap()),
    );
    let sink = Sink::start(format!("[{NEXT_HOP}]:0").parse().unwrap())
        .await
        .expect("sink on the namespace's address");
    let ips: String = SOURCES
        .iter()
        .map(|a| format!("[[ip]]\naddress = \"{a}\"\npool = \"v6\"\n"))
        .collect();
    let config = format!(
        "{}[admin]\nsocket = \"var/admin.sock\"\n[dns]\nnameservers = [\"{}\"]\n[[route]]\ndomain = \"*\"\nnext_hop = \"{}\"\n[[pool]]\nname = \"v6\"\n{ips}[[configuration_set]]\nname = \"v6\"\nsending_pool = \"v6\"\n",
        smtp_section(""),
        dns.addr,
        sink.addr()
    );
    let relay = TestRelay::start(&config).await;
    let socket = relay.dir.path().join("var/admin.sock");
    let path = format!("/v2/email/dedicated-ips/{}", SOURCES[0]);
    let reverse = eventually_async(|| async {
        let (_, body) = call(&socket, "GET", &path, None).await;
        let reverse = body["DedicatedIp"]["ReverseDns"].clone();
        (!reverse.is_null()).then_some(reverse)
    })
    .await
    .expect("the reverse DNS of the IP is checked");
    assert_eq!(reverse["Ptr"], "mail10.relay.test", "{reverse}");
    assert_eq!(reverse["ForwardConfirmed"], true, "{reverse}");

    let (mut client, _) = RawClient::connect(relay.addr).await;
    for n in 0..30 {
        client
            .send_for_set("v6", "user@example.test", &format!("m{n}"))
            .await;
    }
    let messages = sink.wait_for(30, WAIT).await;
    assert_eq!(messages.len(), 30);
    let mut used = std::collections::BTreeSet::new();
    for message in &messages {
        let source = message.peer.ip();
        assert!(
            SOURCES
                .iter()
                .any(|s| s.parse::<IpAddr>().unwrap() == source),
            "{source} is not an address of the pool"
        );
        let expected_helo = if source == with_ptr {
            "mail10.relay.test"
        } else {
            "relay.test"
        };
        assert_eq!(message.helo, expected_helo, "from {source}");
        used.insert(source);
    }
    assert_eq!(
        used.len(),
        SOURCES.len(),
        "every IPv6 address of the pool is used: {used:?}"
    );
    drop(relay);
}
