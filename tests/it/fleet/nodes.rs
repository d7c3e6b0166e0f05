//! Nodes: who is up (cluster status), an IP claimed twice, `cluster init` and `export`, and mail
//! that waits while every IP of its pool is on nodes that are down.

use std::time::{Duration, Instant};

use super::*;

fn poolrelay(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_poolrelay"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("poolrelay runs")
}

fn status(config: &Path) -> serde_json::Value {
    let output = poolrelay(&["cluster", "status", "--json"], config);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON status")
}

fn alive(status: &serde_json::Value, node: &str) -> Option<bool> {
    status["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == node)
        .and_then(|n| n["alive"].as_bool())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_export_status_and_an_ip_claimed_twice() {
    let Some(fleet) = TestFleet::start().await else {
        return;
    };
    let dir_a = tempfile::tempdir().expect("temp dir");
    let model = "[[pool]]\nname = \"far\"\n";
    let config_a = dir_a.path().join("poolrelay.toml");
    let text_a = fleet.config("a", &[("127.0.0.101", Some("far"))], model);
    std::fs::write(&config_a, &text_a).expect("config");

    let init = poolrelay(&["cluster", "init"], &config_a);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let again = poolrelay(&["cluster", "init"], &config_a);
    assert!(!again.status.success(), "a second init is refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    let export = poolrelay(&["cluster", "export"], &config_a);
    let exported = String::from_utf8_lossy(&export.stdout);
    assert!(exported.contains("name = \"far\""), "{exported}");
    assert!(exported.contains("node = \"a\""), "{exported}");

    let a = TestRelay::start_in(dir_a, &text_a).await;
    let thief = fleet.config("b", &[("127.0.0.101", None)], "");
    let dir_b = tempfile::tempdir().expect("temp dir");
    let config_b = dir_b.path().join("poolrelay.toml");
    std::fs::write(&config_b, thief).expect("config");
    let loaded = poolrelay::config::load(&config_b).expect("a valid file");
    let refused = poolrelay::server::Relay::start(loaded)
        .await
        .err()
        .expect("refused");
    let message = refused.to_string();
    assert!(
        message.contains("127.0.0.101 belongs to node a"),
        "{message}"
    );

    let seen = eventually(|| alive(&status(&config_a), "a").filter(|up| *up)).await;
    assert!(seen.is_some(), "node a is shown up");
    let _dir_a = a.stop().await;
    let down = eventually(|| alive(&status(&config_a), "a").filter(|up| !up)).await;
    assert!(down.is_some(), "node a is shown down once stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_answering_is_down_within_10_s_and_its_pools_mail_waits() {
    let Some(fleet) = TestFleet::start().await else {
        return;
    };
    let model = "[[pool]]\nname = \"far\"\n[[configuration_set]]\nname = \"far-set\"\nsending_pool = \"far\"\n";
    let a = fleet.node("a", &[("127.0.0.111", None)], model).await;
    let dir_b = tempfile::tempdir().expect("temp dir");
    let text_b = fleet.config("b", &[("127.0.0.112", Some("far"))], "");
    std::fs::write(dir_b.path().join("poolrelay.toml"), &text_b).expect("config");
    let (child, _) = spawn_relay(dir_b.path());
    let mut b = crate::common::KilledOnDrop(child);
    let config_a = a.dir.path().join("poolrelay.toml");
    assert!(
        eventually(|| alive(&status(&config_a), "b").filter(|up| *up))
            .await
            .is_some()
    );

    // SIGKILL: no goodbye, only the missing heartbeat tells.
    b.kill();
    let killed = Instant::now();
    let down = eventually(|| alive(&status(&config_a), "b").filter(|up| !up)).await;
    assert!(down.is_some(), "node b is shown down");
    assert!(
        killed.elapsed() <= Duration::from_secs(10),
        "shown down after {:?}",
        killed.elapsed()
    );

    let (mut client, _) = RawClient::connect(a.addr).await;
    client
        .send_for_set("far-set", "user@example.test", "waits")
        .await;
    let waiting = eventually(|| {
        let queued = queued_envelopes(&a.spool_dir());
        let reply = queued.first()?.recipients[0].last_reply.clone()?;
        reply.contains("nodes that are down").then_some(reply)
    })
    .await;
    let reply = waiting.expect("the message waits on node a");
    assert!(reply.contains("(b)"), "{reply}");
    assert!(fleet.sink.messages().is_empty());

    let (child, _) = spawn_relay(dir_b.path());
    let _b = crate::common::KilledOnDrop(child);
    let received = fleet.sink.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1, "the message moves once node b is back");
    assert_eq!(received[0].peer.ip().to_string(), "127.0.0.112");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_suspension_seen_by_one_node_shows_on_every_nodes_api() {
    let Some(fleet) = TestFleet::start().await else {
        return;
    };
    let blocked = poolrelay::sink::Refusal {
        at_greeting: false,
        reply: "554 5.7.1 Service unavailable; Client host [127.0.0.152] blocked using zen.spamhaus.org".into(),
    };
    fleet
        .sink
        .refuse("127.0.0.152".parse().expect("an address"), Some(blocked));
    let model = "[[pool]]\nname = \"far\"\n[[configuration_set]]\nname = \"far-set\"\nsending_pool = \"far\"\n";
    let a = fleet.node("a", &[("127.0.0.151", None)], model).await;
    let b = fleet.node("b", &[("127.0.0.152", Some("far"))], "").await;
    let (mut client, _) = RawClient::connect(b.addr).await;
    client
        .send_for_set("far-set", "user@example.test", "blocked")
        .await;

    let socket_a = admin_socket(&a);
    let path = "/v2/email/dedicated-ips/127.0.0.152";
    let shown = eventually_async(|| {
        let socket_a = socket_a.clone();
        async move {
            let (_, body) = crate::common::http::call(&socket_a, "GET", path, None).await;
            (body["DedicatedIp"]["Suspension"]["Status"] == "SITES").then_some(body)
        }
    })
    .await
    .expect("node a's API shows node b's IP suspended for the site");
    let sites = &shown["DedicatedIp"]["Suspension"]["Sites"];
    assert!(
        sites[0]["Reply"]
            .as_str()
            .unwrap_or_default()
            .contains("spamhaus"),
        "{shown}"
    );
    let (_, own) = crate::common::http::call(
        &socket_a,
        "GET",
        "/v2/email/dedicated-ips/127.0.0.151",
        None,
    )
    .await;
    assert_eq!(own["DedicatedIp"]["Suspension"]["Status"], "NONE", "{own}");
    a.stop().await;
    b.stop().await;
}
