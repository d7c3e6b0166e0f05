//! The load generator against a real relay: counts, both connection modes, refusals.

use crate::common::*;
use poolrelay::load::{LoadPlan, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_generator_counts_what_the_relay_accepts_and_refuses() {
    let sink = poolrelay::sink::Sink::start_with("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    let relay = TestRelay::start(&format!(
        r#"{}{}[[pool]]
name = "a"
[[ip]]
address = "127.0.0.2"
pool = "a"
[[configuration_set]]
name = "set-a"
sending_pool = "a"
"#,
        smtp_section(""),
        catch_all_route(sink.addr())
    ))
    .await;
    let plan = |sets: Vec<String>, per_message: bool| LoadPlan {
        target: relay.addr,
        connections: 4,
        messages: 60,
        size: 3000,
        configuration_sets: sets,
        connection_per_message: per_message,
        recipient_domain: "example.test".into(),
        api: None,
    };
    let reused = run(plan(vec!["set-a".into()], false), false).await;
    assert_eq!((reused.accepted, reused.refused, reused.errors), (60, 0, 0));
    assert!(reused.p50_ms > 0.0 && reused.p99_ms >= reused.p50_ms);
    let per_message = run(plan(vec!["set-a".into()], true), false).await;
    assert_eq!(per_message.accepted, 60);
    // Every other message names a set the relay does not know: refused, and counted as such.
    let mixed = run(plan(vec!["set-a".into(), "unknown".into()], false), false).await;
    assert_eq!((mixed.accepted, mixed.refused), (30, 30));

    let spool = relay.spool_dir();
    eventually(|| spool_files(&spool, "queue").is_empty().then_some(()))
        .await
        .expect("delivered");
    let counts = sink.counts();
    assert_eq!(counts.messages, 150);
    assert_eq!(counts.per_ip.get(&ip("127.0.0.2")), Some(&150));
    assert_eq!(counts.not_clean, 0);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_over_the_api_signs_send_email_requests_the_relay_accepts() {
    let sink = poolrelay::sink::Sink::start_with("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    let relay = TestRelay::start(&format!(
        r#"{}{}[[ip]]
address = "127.0.0.2"
[[configuration_set]]
name = "set-a"
[api]
listen = ["127.0.0.1:0"]
[[api.key]]
access_key_id = "AKIDLOAD"
secret_access_key = "load-secret"
allow = ["send"]
"#,
        smtp_section(""),
        catch_all_route(sink.addr())
    ))
    .await;
    let api = relay.relay.as_ref().expect("running").api_addrs()[0];
    let plan = |secret: &str, sets: Vec<String>| LoadPlan {
        target: api,
        connections: 4,
        messages: 40,
        size: 3000,
        configuration_sets: sets,
        connection_per_message: false,
        recipient_domain: "example.test".into(),
        api: Some(poolrelay::load_api::ApiCredentials {
            access_key_id: "AKIDLOAD".into(),
            secret_access_key: secret.into(),
            region: "us-east-1".into(),
        }),
    };
    let signed = run(plan("load-secret", vec!["set-a".into()]), false).await;
    assert_eq!((signed.accepted, signed.refused, signed.errors), (40, 0, 0));
    // A wrong secret: every request refused (403), none accepted.
    let wrong = run(plan("not-the-secret", vec![]), false).await;
    assert_eq!((wrong.accepted, wrong.refused), (0, 40));
    let unknown_set = run(plan("load-secret", vec!["nope".into()]), false).await;
    assert_eq!((unknown_set.accepted, unknown_set.refused), (0, 40));
    let spool = relay.spool_dir();
    eventually(|| spool_files(&spool, "queue").is_empty().then_some(()))
        .await
        .expect("delivered");
    assert_eq!(sink.counts().messages, 40);
    relay.stop().await;
}
