//! Sending controls: a paused configuration set (or account) refuses new mail over SMTP and the
//! API and holds its queued mail until resumed; `[account]` quotas refuse mail over both.

use std::time::Duration;

use poolrelay::sink::Sink;
use serde_json::{Value, json};

use super::{ADMIN_KEY, ADMIN_SECRET, api_relay_with, python, run_script};
use crate::common::http::call;
use crate::common::*;

async fn queue_state(socket: &std::path::Path) -> Value {
    call(socket, "GET", "/v2/email/queue", None).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_set_refuses_new_mail_and_holds_queued_mail_until_resumed() {
    let (config, next_hop) = config_with_next_hop_down().await;
    let config = format!(
        "{config}[admin]\nsocket = \"var/admin.sock\"\n[[configuration_set]]\nname = \"promo\"\n"
    );
    let relay = TestRelay::start(&config).await;
    let socket = relay.dir.path().join("var/admin.sock");
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send_for_set("promo", "queued@example.test", "before the pause")
        .await;
    // The next hop is down: the message waits for its retry an hour from now.
    let waiting = eventually_async(|| async {
        let queue = queue_state(&socket).await;
        (queue["Messages"][0]["state"] == "waiting").then_some(queue)
    })
    .await
    .expect("the message waits");
    let id = waiting["Messages"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();

    let pause = json!({"SendingEnabled": false});
    let path = "/v2/email/configuration-sets/promo/sending";
    assert_eq!(call(&socket, "PUT", path, Some(pause)).await.0, 200);
    let reply = client
        .send_message(
            "app@example.test",
            &["new@example.test"],
            b"X-SES-CONFIGURATION-SET: promo\r\n\r\nx\r\n.\r\n",
        )
        .await;
    assert!(
        reply.starts_with("554 5.7.1 Sending paused for this configuration set"),
        "{reply}"
    );
    // The next hop comes back and the queued message is retried now: it still waits, while
    // mail of other sets goes.
    let sink = Sink::start(next_hop)
        .await
        .expect("sink on the next hop's port");
    let retry = format!("/v2/email/queue/{id}/retry");
    assert_eq!(call(&socket, "POST", &retry, None).await.0, 200);
    let other = client
        .send_message(
            "app@example.test",
            &["other@example.test"],
            b"Subject: default\r\n\r\nx\r\n.\r\n",
        )
        .await;
    assert!(other.starts_with("250"), "{other}");
    let other_delivered = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(other_delivered.len(), 1);
    assert_eq!(other_delivered[0].recipients, ["other@example.test"]);
    // Two pause re-checks later, the paused set's message is still queued and not delivered.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(sink.messages().len(), 1, "the paused set's mail waited");
    let queue = queue_state(&socket).await;
    assert_eq!(queue["Messages"][0]["id"], id.as_str(), "{queue}");

    let resume = json!({"SendingEnabled": true});
    assert_eq!(call(&socket, "PUT", path, Some(resume)).await.0, 200);
    let delivered = sink.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(delivered.len(), 2, "resumed, the queued message goes");
    assert_eq!(delivered[1].recipients, ["queued@example.test"]);

    // The account pause stops every set, the default one included.
    let path = "/v2/email/account/sending";
    assert_eq!(
        call(&socket, "PUT", path, Some(json!({"SendingEnabled": false})))
            .await
            .0,
        200
    );
    let reply = client
        .send_message(
            "app@example.test",
            &["a@example.test"],
            b"Subject: x\r\n\r\nx\r\n.\r\n",
        )
        .await;
    assert!(
        reply.starts_with("554 5.7.1 Sending paused for this account"),
        "{reply}"
    );
    let config = std::fs::read_to_string(relay.dir.path().join("poolrelay.toml")).expect("config");
    assert!(
        config.contains("[account]\nsending_enabled = false"),
        "{config}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn the_daily_quota_refuses_smtp_and_api_mail_alike() {
    let Some(python) = python() else { return };
    let (relay, endpoint, _sink) = api_relay_with("", "[account]\nmax_24_hour_send = 3\n").await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    let message = b"Subject: quota\r\n\r\nx\r\n.\r\n";
    let reply = client
        .send_message(
            "app@example.test",
            &["a@example.test", "b@example.test"],
            message,
        )
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    let refused = client
        .send_message(
            "app@example.test",
            &["c@example.test", "d@example.test"],
            message,
        )
        .await;
    assert!(
        refused.starts_with("554 5.7.0 Throttling failure: Daily message quota exceeded"),
        "two more recipients would make four: {refused}"
    );
    let simple = json!({"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}});
    let send = |to: &str| {
        json!({"FromEmailAddress": "app@example.test", "Destination": {"ToAddresses": [to]}, "Content": simple})
            .to_string()
    };
    let args = vec![
        endpoint,
        ADMIN_KEY.into(),
        ADMIN_SECRET.into(),
        "send_email".into(),
        send("c@example.test"),
        "send_email".into(),
        send("d@example.test"),
        "get_account".into(),
        "{}".into(),
    ];
    let results = run_script(python, "call.py", args).await;
    assert!(results[0]["ok"]["MessageId"].is_string(), "{results}");
    assert_eq!(results[1]["error"], "LimitExceededException", "{results}");
    let quota = &results[2]["ok"]["SendQuota"];
    assert_eq!(quota["Max24HourSend"], 3.0, "{results}");
    assert_eq!(quota["SentLast24Hours"], 3.0, "{results}");
    relay.stop().await;
}

#[tokio::test]
async fn the_sending_rate_refuses_smtp_and_api_mail_alike() {
    let Some(python) = python() else { return };
    let (relay, endpoint, _sink) = api_relay_with("", "[account]\nmax_send_rate = 1\n").await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    let message = b"Subject: rate\r\n\r\nx\r\n.\r\n";
    let first = client
        .send_message("app@example.test", &["a@example.test"], message)
        .await;
    assert!(first.starts_with("250"), "{first}");
    let second = client
        .send_message("app@example.test", &["b@example.test"], message)
        .await;
    assert!(
        second.starts_with("454 4.7.0 Throttling failure: Maximum sending rate exceeded"),
        "{second}"
    );
    let simple = json!({"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}});
    let send = json!({"FromEmailAddress": "app@example.test", "Destination": {"ToAddresses": ["c@example.test"]}, "Content": simple}).to_string();
    let mut args = vec![
        endpoint,
        ADMIN_KEY.into(),
        ADMIN_SECRET.into(),
        "--parallel".into(),
    ];
    for _ in 0..6 {
        args.extend(["send_email".to_string(), send.clone()]);
    }
    // Six calls at once: one second's worth (one) can be accepted, or two if a second turns.
    let results = run_script(python, "call.py", args).await;
    let throttled: Vec<&Value> = results
        .as_array()
        .expect("list")
        .iter()
        .filter(|r| r["error"] == "TooManyRequestsException")
        .collect();
    assert!(throttled.len() >= 4, "{results}");
    assert_eq!(throttled[0]["status"], 429);
    relay.stop().await;
}
