//! One model for the fleet: a change through any node applies on every node, and mail for a pool
//! whose IPs live on another node leaves from that node's IP.

use std::time::Instant;

use super::*;
use crate::common::http::call;

/// The events of type `kind` in a node's event log, as JSON.
fn events(node: &TestRelay, kind: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(node.dir.path().join("var/events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["eventType"] == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_created_on_node_a_is_used_on_node_c_within_a_second() {
    let Some(fleet) = TestFleet::start().await else {
        return;
    };
    let config = |name: &str, ip: &str| fleet.config(name, &[(ip, None)], "");
    let a = TestRelay::start(&config("a", "127.0.0.41")).await;
    let b = TestRelay::start(&config("b", "127.0.0.42")).await;
    let c = TestRelay::start(&config("c", "127.0.0.43")).await;

    let socket_a = admin_socket(&a);
    let pool = serde_json::json!({"PoolName": "fresh"});
    let (status, body) = call(
        &socket_a,
        "POST",
        "/v2/email/dedicated-ip-pools",
        Some(pool),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mv = serde_json::json!({"DestinationPoolName": "fresh"});
    let path = "/v2/email/dedicated-ips/127.0.0.43/pool";
    let (status, body) = call(&socket_a, "PUT", path, Some(mv)).await;
    assert_eq!(
        status, 200,
        "an IP of node c is moved through node a: {body}"
    );
    let set = serde_json::json!({"ConfigurationSetName": "fs", "DeliveryOptions": {"SendingPoolName": "fresh"}});
    let (status, body) = call(&socket_a, "POST", "/v2/email/configuration-sets", Some(set)).await;
    assert_eq!(status, 200, "{body}");
    let changed = Instant::now();

    let socket_c = admin_socket(&c);
    let seen = eventually_async(|| {
        let socket_c = socket_c.clone();
        async move {
            let (status, body) =
                call(&socket_c, "GET", "/v2/email/configuration-sets/fs", None).await;
            (status == 200).then_some(body)
        }
    })
    .await;
    let after = changed.elapsed();
    let body = seen.expect("node c sees the configuration set made on node a");
    assert_eq!(
        body["DeliveryOptions"]["SendingPoolName"], "fresh",
        "{body}"
    );
    assert!(
        after.as_millis() <= 1000,
        "node c saw the change after {after:?}"
    );
    let (_, ip) = call(&socket_c, "GET", "/v2/email/dedicated-ips/127.0.0.43", None).await;
    assert_eq!(ip["DedicatedIp"]["PoolName"], "fresh", "{ip}");

    // Mail for the new set, handed to node c and node a, leaves from c's IP only.
    for node in [&c, &a, &b] {
        let (mut client, _) = RawClient::connect(node.addr).await;
        client
            .send_for_set("fs", "user@example.test", "fresh")
            .await;
    }
    let received = fleet.sink.wait_for(3, WAIT).await;
    let by_source = subjects_by_source(&received);
    assert_eq!(
        by_source.keys().collect::<Vec<_>>(),
        ["127.0.0.43"],
        "{by_source:?}"
    );
    assert_eq!(by_source["127.0.0.43"].len(), 3);
    for node in [a, b, c] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_accepted_by_a_for_a_pool_that_lives_on_b_leaves_from_bs_ip() {
    let Some(fleet) = TestFleet::start().await else {
        return;
    };
    let model = "[[pool]]\nname = \"far\"\n[[configuration_set]]\nname = \"far-set\"\nsending_pool = \"far\"\n";
    let ips_a = [("127.0.0.51", None)];
    let a = fleet.node("a", &ips_a, model).await;
    let ips_b = [("127.0.0.52", Some("far"))];
    let b = fleet.node("b", &ips_b, "").await;

    // Until node a has heard node b's heartbeat, the mail waits (and is retried 1 s later).
    let (mut client, _) = RawClient::connect(a.addr).await;
    let recipients = ["one@example.test", "two@example.test"];
    let content = b"X-SES-CONFIGURATION-SET: far-set\r\nX-SES-MESSAGE-TAGS: campaign=spring\r\nSubject: far\r\n\r\nbody\r\n.\r\n";
    client
        .send_accepted("app@example.test", &recipients, content)
        .await;
    let received = fleet.sink.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1, "one transaction with both recipients");
    assert_eq!(received[0].peer.ip().to_string(), "127.0.0.52");
    assert_eq!(received[0].helo, "relay.test");
    assert_eq!(received[0].recipients, recipients);
    assert_eq!(received[0].sender, "app@example.test");

    // Node b wrote the Delivery under the id node a gave (and a wrote the Send).
    let delivery = eventually(|| events(&b, "Delivery").into_iter().next()).await;
    let delivery = delivery.expect("node b writes the Delivery event");
    let send = events(&a, "Send");
    assert_eq!(send.len(), 1);
    assert_eq!(delivery["mail"]["messageId"], send[0]["mail"]["messageId"]);
    assert_eq!(
        delivery["mail"]["tags"]["ses:outgoing-ip"],
        serde_json::json!(["127.0.0.52"])
    );
    assert!(
        events(&a, "Delivery").is_empty(),
        "node a delivered nothing itself"
    );
    let tags = &delivery["mail"]["tags"];
    assert_eq!(
        tags["campaign"],
        serde_json::json!(["spring"]),
        "{delivery}"
    );
    assert_eq!(
        tags["ses:configuration-set"],
        serde_json::json!(["far-set"])
    );
    let socket_b = admin_socket(&b);
    let counted = eventually_async(|| {
        let socket_b = socket_b.clone();
        async move {
            let (_, account) = call(&socket_b, "GET", "/v2/email/account", None).await;
            (account["SendQuota"]["SentLast24Hours"] == 2.0).then_some(())
        }
    })
    .await;
    assert!(
        counted.is_some(),
        "node b's SentLast24Hours counts what node a accepted"
    );
    let a_empty = eventually(|| queued_envelopes(&a.spool_dir()).is_empty().then_some(())).await;
    assert!(a_empty.is_some(), "node a deletes its copy once b has it");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suppression_list_and_templates_are_the_same_on_every_node() {
    let Some(fleet) = TestFleet::start().await else {
        return;
    };
    let a = fleet.node("a", &[("127.0.0.131", None)], "").await;
    let b = fleet.node("b", &[("127.0.0.132", None)], "").await;
    let (socket_a, socket_b) = (admin_socket(&a), admin_socket(&b));
    let entry = serde_json::json!({"EmailAddress": "Gone@Example.TEST", "Reason": "BOUNCE"});
    let (status, body) = call(
        &socket_a,
        "PUT",
        "/v2/email/suppression/addresses",
        Some(entry),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let path = "/v2/email/suppression/addresses/Gone@example.test";
    let on_b = eventually_async(|| {
        let socket_b = socket_b.clone();
        async move {
            let (status, body) = call(&socket_b, "GET", path, None).await;
            (status == 200).then_some(body)
        }
    })
    .await
    .expect("node b has the address node a suppressed");
    assert_eq!(on_b["SuppressedDestination"]["Reason"], "BOUNCE", "{on_b}");

    // Mail to it through node b is not sent.
    let (mut client, _) = RawClient::connect(b.addr).await;
    let content = b"Subject: s\r\n\r\nx\r\n.\r\n";
    client
        .send_accepted(
            "app@example.test",
            &["Gone@example.test", "kept@example.test"],
            content,
        )
        .await;
    let received = fleet.sink.wait_for(1, WAIT).await;
    assert_eq!(received[0].recipients, ["kept@example.test"]);

    let (status, _) = call(&socket_b, "DELETE", path, None).await;
    assert_eq!(status, 200);
    let gone = eventually_async(|| {
        let socket_a = socket_a.clone();
        async move { (call(&socket_a, "GET", path, None).await.0 == 404).then_some(()) }
    })
    .await;
    assert!(gone.is_some(), "a removal through node b reaches node a");

    // Templates too: made through node a, used and deleted through node b.
    let template = serde_json::json!({"TemplateName": "welcome", "TemplateContent": {"Subject": "Hi {{name}}", "Text": "Hello {{name}}"}});
    let (status, body) = call(&socket_a, "POST", "/v2/email/templates", Some(template)).await;
    assert_eq!(status, 200, "{body}");
    let on_b = eventually_async(|| {
        let socket_b = socket_b.clone();
        async move {
            let (status, body) = call(&socket_b, "GET", "/v2/email/templates/welcome", None).await;
            (status == 200).then_some(body)
        }
    })
    .await
    .expect("node b has the template made on node a");
    assert_eq!(on_b["TemplateContent"]["Subject"], "Hi {{name}}", "{on_b}");
    let (status, _) = call(&socket_b, "DELETE", "/v2/email/templates/welcome", None).await;
    assert_eq!(status, 200);
    let deleted = eventually_async(|| {
        let socket_a = socket_a.clone();
        async move {
            let (status, _) = call(&socket_a, "GET", "/v2/email/templates/welcome", None).await;
            (status == 404).then_some(())
        }
    })
    .await;
    assert!(
        deleted.is_some(),
        "a deletion through node b reaches node a"
    );
    a.stop().await;
    b.stop().await;
}
