//! Reloading the config file through the socket.

use crate::common::http::{call, call_expecting_error};
use crate::common::*;
use serde_json::json;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_a_valid_file_and_keeps_state_on_an_invalid_one() {
    let sink = start_sink().await;
    let relay = TestRelay::start(&admin_config(sink.addr(), "")).await;
    let sock = socket(relay.dir.path());
    let path = relay.dir.path().join("poolrelay.toml");
    let original = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("{original}[[pool]]\nname = \"added-by-hand\"\n"),
    )
    .unwrap();
    assert_eq!(call(&sock, "POST", "/v2/email/reload", None).await.0, 200);
    assert_eq!(
        call(
            &sock,
            "GET",
            "/v2/email/dedicated-ip-pools/added-by-hand",
            None
        )
        .await
        .0,
        200
    );
    std::fs::write(&path, format!("{original}[[pool]]\nname = \"Not Valid\"\n")).unwrap();
    let (status, body) = call(&sock, "POST", "/v2/email/reload", None).await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("poolrelay.toml:"),
        "{body}"
    );
    assert_eq!(
        call(
            &sock,
            "GET",
            "/v2/email/dedicated-ip-pools/added-by-hand",
            None
        )
        .await
        .0,
        200,
        "state kept"
    );
    relay.stop().await;
}

/// A write through the API after the file was edited by hand (and not reloaded) is refused
/// with 409: it would otherwise make the hand edits take effect unseen. After a reload the
/// write goes through, and a pool added by hand then created again is AlreadyExists, as for any
/// pool. Failed before: the write applied the hand edits, and the second create answered
/// "defined twice" (400 BadRequest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_after_a_hand_edit_asks_for_a_reload_first() {
    let sink = start_sink().await;
    let relay = TestRelay::start(&admin_config(sink.addr(), "")).await;
    let sock = socket(relay.dir.path());
    let path = relay.dir.path().join("poolrelay.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[[pool]]\nname = \"by-hand\"\n");
    std::fs::write(&path, &text).unwrap();
    let create = |name: &str| Some(json!({"PoolName": name}));
    let body = call_expecting_error(
        &sock,
        "POST",
        "/v2/email/dedicated-ip-pools",
        create("by-hand"),
        (409, "ConflictException"),
    )
    .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("reload"),
        "{body}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "nothing written"
    );
    let (status, body) = call(&sock, "POST", "/v2/email/reload", None).await;
    assert_eq!(status, 200, "{body}");
    call_expecting_error(
        &sock,
        "POST",
        "/v2/email/dedicated-ip-pools",
        create("by-hand"),
        (400, "AlreadyExistsException"),
    )
    .await;
    let (status, body) = call(
        &sock,
        "POST",
        "/v2/email/dedicated-ip-pools",
        create("by-api"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    relay.stop().await;
}

/// `poolrelay reload` does what SIGHUP does: logrotate may use either after moving the event
/// log away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_through_the_socket_reopens_a_rotated_event_log() {
    let sink = start_sink().await;
    let config = admin_config(sink.addr(), "[events]\npath = \"var/events.jsonl\"");
    let relay = TestRelay::start(&config).await;
    let sock = socket(relay.dir.path());
    let events = relay.dir.path().join("var/events.jsonl");
    assert!(events.exists(), "created at start");
    std::fs::rename(&events, relay.dir.path().join("var/events.jsonl.1")).expect("rotate");
    assert_eq!(call(&sock, "POST", "/v2/email/reload", None).await.0, 200);
    assert!(events.exists(), "a new log at the path");
    relay.stop().await;
}
