//! Limits that hold across the fleet: a warming IP's daily cap, and a site's message rate.

use std::time::Duration;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_up_cap_of_10_holds_with_mail_from_three_nodes() {
    let Some(fleet) = TestFleet::start().await else {
        return;
    };
    let today = chrono::Utc::now().date_naive();
    let model = "[warmup]\nschedule = [10, 1000]\n[[pool]]\nname = \"warm\"\n[[configuration_set]]\nname = \"w\"\nsending_pool = \"warm\"\n";
    let a = fleet.node("a", &[("127.0.0.61", None)], model).await;
    let warming = format!("warmup_started = \"{today}\"\n");
    let b_config = fleet
        .config("b", &[("127.0.0.62", Some("warm"))], "")
        .replace("pool = \"warm\"\n", &format!("pool = \"warm\"\n{warming}"));
    let b = TestRelay::start(&b_config).await;
    let c = fleet.node("c", &[("127.0.0.63", None)], "").await;

    for (node, name) in [(&a, "a"), (&b, "b"), (&c, "c")] {
        let (mut client, _) = RawClient::connect(node.addr).await;
        for n in 0..10 {
            client
                .send_for_set("w", "user@example.test", &format!("{name}-{n}"))
                .await;
        }
    }
    // All 30 end up on node b: 10 sent, 20 waiting for tomorrow's cap.
    let waiting = eventually(|| {
        let queued = queued_envelopes(&b.spool_dir());
        let capped = queued.iter().filter(|e| {
            e.recipients[0]
                .last_reply
                .as_deref()
                .is_some_and(|reply| reply.contains("warm-up limit"))
        });
        (capped.count() == 20).then_some(())
    })
    .await;
    assert!(
        waiting.is_some(),
        "20 messages wait on node b at the warm-up cap"
    );
    for node in [&a, &c] {
        assert!(
            queued_envelopes(&node.spool_dir()).is_empty(),
            "handed over"
        );
    }
    let received = fleet.sink.wait_for(10, WAIT).await;
    let by_source = subjects_by_source(&received);
    assert_eq!(by_source.keys().collect::<Vec<_>>(), ["127.0.0.62"]);
    assert_eq!(received.len(), 10, "exactly the cap: {by_source:?}");
    // The fleet's copy of the count (for a node that takes the IP over) says 10 too.
    let store = poolrelay::fleet::store::FleetStore::connect(&fleet.redis.url())
        .await
        .expect("Redis");
    let key = format!("poolrelay:warmup:{today}");
    let shared_count = eventually_async(|| {
        let (store, key) = (store.clone(), key.clone());
        async move {
            let mut connection = store.connection();
            let count: Option<u64> = redis::cmd("HGET")
                .arg(&key)
                .arg("127.0.0.62")
                .query_async(&mut connection)
                .await
                .ok()?;
            (count == Some(10)).then_some(())
        }
    })
    .await;
    assert!(shared_count.is_some(), "Redis holds the warming IP's count");
    for node in [a, b, c] {
        node.stop().await;
    }
    assert_eq!(
        fleet.sink.messages().len(),
        10,
        "nothing more left after the cap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_limit_of_5_per_second_holds_across_three_nodes() {
    let Some(fleet) = TestFleet::start().await else {
        return;
    };
    let shaping = "[[shaping]]\nsite = \"*\"\nsite_max_message_rate = \"5/s\"\n";
    let mut nodes = Vec::new();
    for (name, ip) in [
        ("a", "127.0.0.71"),
        ("b", "127.0.0.72"),
        ("c", "127.0.0.73"),
    ] {
        let config = fleet.config(name, &[(ip, None)], shaping);
        nodes.push(TestRelay::start(&config).await);
    }
    let mut senders = Vec::new();
    for node in &nodes {
        let addr = node.addr;
        senders.push(tokio::spawn(async move {
            let (mut client, _) = RawClient::connect(addr).await;
            for n in 0..10 {
                let content = format!("Subject: {n}\r\n\r\nx\r\n.\r\n");
                client
                    .send_accepted(
                        "app@example.test",
                        &["user@example.test"],
                        content.as_bytes(),
                    )
                    .await;
            }
        }));
    }
    for sender in senders {
        sender.await.expect("sender");
    }
    let received = fleet.sink.wait_for(30, Duration::from_secs(60)).await;
    assert_eq!(received.len(), 30);
    let mut times: Vec<_> = fleet.sink.rcpt_attempts().iter().map(|r| r.at).collect();
    times.sort();
    let sources: std::collections::BTreeSet<_> = received.iter().map(|m| m.peer.ip()).collect();
    assert_eq!(sources.len(), 3, "every node sent: {sources:?}");
    // Slots are 200 ms apart in Redis's clock; arrival adds a little jitter, so any one-second
    // window holds 5, at most 6 at its edges. Without the limit all 30 arrive within a second.
    let busiest = times
        .iter()
        .map(|&start| {
            times
                .iter()
                .filter(|&&t| t >= start && t < start + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(
        busiest <= 6,
        "{busiest} messages within one second at the site"
    );
    let spread = times[times.len() - 1] - times[0];
    assert!(
        spread >= Duration::from_millis(5_000),
        "30 messages took only {spread:?}"
    );
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_quota_counts_every_nodes_mail() {
    let Some(fleet) = TestFleet::start().await else {
        return;
    };
    let account = "[account]\nmax_24_hour_send = 5\n";
    let a = fleet.node("a", &[("127.0.0.121", None)], account).await;
    let b = fleet.node("b", &[("127.0.0.122", None)], "").await;
    let mut replies = Vec::new();
    for node in [&a, &b, &a, &b, &a, &b] {
        let (mut client, _) = RawClient::connect(node.addr).await;
        let content = b"Subject: q\r\n\r\nx\r\n.\r\n";
        replies.push(
            client
                .send_message("app@example.test", &["user@example.test"], content)
                .await,
        );
    }
    let accepted = replies.iter().filter(|r| r.starts_with("250")).count();
    assert_eq!(accepted, 5, "{replies:?}");
    assert!(
        replies[5].starts_with("554 5.7.0"),
        "the sixth, on node b: {}",
        replies[5]
    );
    assert!(replies[5].contains("Daily message quota exceeded"));
    let (status, account) =
        crate::common::http::call(&admin_socket(&b), "GET", "/v2/email/account", None).await;
    assert_eq!(status, 200);
    assert_eq!(account["SendQuota"]["SentLast24Hours"], 5.0, "{account}");
    a.stop().await;
    b.stop().await;
}
