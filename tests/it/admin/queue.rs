//! Queue operations through the socket.

use crate::common::http::{call, call_expecting_error};
use crate::common::*;
use serde_json::json;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_endpoints_hold_release_retry_and_delete() {
    let sink = start_sink().await;
    let relay = TestRelay::start(&admin_config(sink.addr(), "")).await;
    let sock = socket(relay.dir.path());
    let (mut client, _) = RawClient::connect(relay.addr).await;
    let reply = client
        .send_message(
            "app@example.test",
            &["tempfail@example.test"],
            b"X-SES-CONFIGURATION-SET: sa\r\n\r\nx\r\n.\r\n",
        )
        .await;
    let id = reply.trim_end().rsplit(' ').next().unwrap().to_string();
    // Wait until the first attempt has been made and the message waits for its retry.
    let socket = &sock;
    let body = eventually_async(move || async move {
        let (_, body) = call(socket, "GET", "/v2/email/queue", None).await;
        (body["Messages"][0]["state"] == "waiting").then_some(body)
    })
    .await
    .expect("the message waits for its retry");
    assert_eq!(body["Messages"][0]["id"], id.as_str());
    assert_eq!(body["Messages"][0]["pool"], "a");
    assert!(
        body["Messages"][0]["last_error"]
            .as_str()
            .unwrap()
            .starts_with("451")
    );
    assert_eq!(
        call(&sock, "POST", &format!("/v2/email/queue/{id}/hold"), None)
            .await
            .0,
        200
    );
    call_expecting_error(
        &sock,
        "POST",
        &format!("/v2/email/queue/{id}/retry"),
        None,
        (400, "BadRequestException"),
    )
    .await;
    assert_eq!(
        call(
            &sock,
            "POST",
            &format!("/v2/email/queue/{id}/release"),
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            &sock,
            "POST",
            &format!("/v2/email/queue/{id}/frobnicate"),
            None
        )
        .await
        .0,
        404
    );
    let path = format!("/v2/email/queue/{id}");
    let path = &path;
    let deleted = eventually_async(move || async move {
        let status = call(socket, "DELETE", path, None).await.0;
        (status == 200).then_some(status)
    })
    .await;
    assert_eq!(deleted, Some(200), "deleted once its attempt is over");
    let (_, body) = call(&sock, "GET", "/v2/email/queue", None).await;
    assert_eq!(body["Messages"], json!([]));
    relay.stop().await;
}
