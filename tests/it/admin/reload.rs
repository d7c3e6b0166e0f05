//! Reloading the config file through the socket.

use crate::common::http::call;
use crate::common::*;

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
