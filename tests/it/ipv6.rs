//! IPv6 pools: a connection to an IPv6 next hop leaves from an IPv6 address of the pool, to an
//! IPv4 next hop from an IPv4 one; a pool without an address of the next hop's family defers
//! with a reason and never falls back to another pool or the host's default address. Several
//! IPv6 sources (and the reverse DNS of one) are tested in a network namespace the test makes.

use poolrelay::sink::Sink;

use crate::common::{RawClient, TestRelay, WAIT, eventually_async, ip, smtp_section};

mod namespace;

/// A relay whose `v6.test` mail goes to `sink6` (on `[::1]`) and `v4.test` mail to `sink4`.
async fn relay(sink6: &Sink, sink4: &Sink) -> TestRelay {
    let config = format!(
        r#"{}[queue]
retry_interval = "1h"
[[route]]
domain = "v6.test"
next_hop = "{}"
[[route]]
domain = "v4.test"
next_hop = "{}"
[[pool]]
name = "mixed"
[[pool]]
name = "v4only"
[[pool]]
name = "v6only"
[[ip]]
address = "127.0.0.2"
pool = "mixed"
[[ip]]
address = "::1"
pool = "mixed"
[[ip]]
address = "127.0.0.3"
pool = "v4only"
[[ip]]
address = "::2"
pool = "v6only"
[[configuration_set]]
name = "mixed"
sending_pool = "mixed"
[[configuration_set]]
name = "v4only"
sending_pool = "v4only"
[[configuration_set]]
name = "v6only"
sending_pool = "v6only"
"#,
        smtp_section(""),
        sink6.addr(),
        sink4.addr()
    );
    TestRelay::start(&config).await
}

/// A recording sink on `[::1]` and one on 127.0.0.1; `None` (said) without IPv6 loopback.
async fn sinks() -> Option<(Sink, Sink)> {
    let Ok(sink6) = Sink::start("[::1]:0".parse().unwrap()).await else {
        crate::common::privilege_missing("listen on ::1 (IPv6 loopback)");
        return None;
    };
    Some((sink6, crate::common::start_sink().await))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_next_hop_is_reached_from_an_address_of_its_family() {
    let Some((sink6, sink4)) = sinks().await else {
        return;
    };
    // Two spellings of one IPv6 address are one address.
    let twice = format!(
        "{}[[ip]]\naddress = \"::1\"\n[[ip]]\naddress = \"0::1\"\n",
        smtp_section("")
    );
    let refused = poolrelay::config::parse(std::path::Path::new("/x/poolrelay.toml"), &twice);
    assert!(
        refused.is_err_and(|e| e.to_string().contains("listed twice")),
        "::1 listed twice is refused"
    );

    let relay = relay(&sink6, &sink4).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client.send_for_set("mixed", "a@v6.test", "to v6").await;
    client.send_for_set("mixed", "a@v4.test", "to v4").await;
    let six = sink6.wait_for(1, WAIT).await;
    let four = sink4.wait_for(1, WAIT).await;
    assert_eq!(six[0].peer.ip(), ip("::1"), "IPv6 next hop, IPv6 source");
    assert_eq!(
        four[0].peer.ip(),
        ip("127.0.0.2"),
        "IPv4 next hop, IPv4 source"
    );
    drop(relay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_without_the_next_hops_family_defers_and_says_why() {
    let Some((sink6, sink4)) = sinks().await else {
        return;
    };
    let relay = relay(&sink6, &sink4).await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send_for_set("v4only", "a@v6.test", "v4 pool to v6")
        .await;
    client
        .send_for_set("v6only", "a@v4.test", "v6 pool to v4")
        .await;
    let queue = relay.relay.as_ref().expect("running").queue();
    let entries = eventually_async(move || async move {
        let list = queue.list().await.ok()?;
        (list.len() == 2 && list.iter().all(|e| e.attempts >= 1)).then_some(list)
    })
    .await
    .expect("both messages stay queued after an attempt");
    for entry in entries {
        let reason = entry.last_error.unwrap_or_default();
        let (pool, family) = if entry.pool == "v4only" {
            ("v4only", "IPv6")
        } else {
            ("v6only", "IPv4")
        };
        assert!(
            reason.starts_with("451 4.4.1")
                && reason.contains(&format!("pool {pool} has no {family} address")),
            "{reason}"
        );
    }
    assert_eq!(
        sink6.counts().messages,
        0,
        "nothing left from another pool or address"
    );
    assert_eq!(sink4.counts().messages, 0);
    assert!(sink6.connections().is_empty() && sink4.connections().is_empty());
    drop(relay);
}
