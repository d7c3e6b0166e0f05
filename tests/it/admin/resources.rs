//! Pools, dedicated IPs and configuration sets through the admin socket: SESv2 shapes and
//! errors, changes that take effect for the next message, persistence that keeps comments.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::http::{call, call_expecting_error, python_get, raw};
use crate::common::*;
use poolrelay::sink::Sink;
use serde_json::json;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_change_pools_live_and_persist_with_comments() {
    let sink = start_sink().await;
    let relay = TestRelay::start(&admin_config(sink.addr(), "")).await;
    let sock = socket(relay.dir.path());
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the socket is private");

    pools(&sock).await;
    ips(&sock).await;
    configuration_sets(&sock).await;
    pool_in_use(&sock).await;
    live_changes(&relay, &sink, &sock).await;
    removals(&sock).await;
    status_and_queue(&relay, &sock).await;
    malformed_requests(&sock).await;
    persisted(relay).await;
}

/// A step of the scenario above. Pools, with Python's http.client as an independent client for the first call.
async fn pools(sock: &Path) {
    let (status, body) = tokio::task::spawn_blocking({
        let sock = sock.to_path_buf();
        move || python_get(&sock, "/v2/email/dedicated-ip-pools")
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"DedicatedIpPools": ["a", "b", "ses-default-dedicated-pool", "ses-shared-pool"]})
    );
    let (status, body) = call(
        sock,
        "POST",
        "/v2/email/dedicated-ip-pools",
        Some(json!({"PoolName": "fresh"})),
    )
    .await;
    assert_eq!((status, body), (200, json!({})));
    call_expecting_error(
        sock,
        "POST",
        "/v2/email/dedicated-ip-pools",
        Some(json!({"PoolName": "fresh"})),
        (400, "AlreadyExistsException"),
    )
    .await;
    for bad in ["Bad Name", "ses-shared-pool", ""] {
        call_expecting_error(
            sock,
            "POST",
            "/v2/email/dedicated-ip-pools",
            Some(json!({"PoolName": bad})),
            (400, "BadRequestException"),
        )
        .await;
    }
    let (status, body) = call(sock, "GET", "/v2/email/dedicated-ip-pools/fresh", None).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"DedicatedIpPool": {"PoolName": "fresh", "ScalingMode": "STANDARD"}})
        )
    );
    let (status, body) = call(
        sock,
        "GET",
        "/v2/email/dedicated-ip-pools/ses-default-dedicated-pool",
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "Pool name describes either a shared or default dedicated ip pool"
    );
    assert_eq!(
        call(sock, "GET", "/v2/email/dedicated-ip-pools/nope", None)
            .await
            .0,
        404
    );
}

/// A step of the scenario above. IPs: add only addresses this host has; list, get, errors.
async fn ips(sock: &Path) {
    let (status, _) = call(
        sock,
        "POST",
        "/v2/email/dedicated-ips",
        Some(json!({"Ip": "127.0.0.7", "PoolName": "fresh", "Weight": 2})),
    )
    .await;
    assert_eq!(status, 200);
    let missing = unassigned_addresses(1)[0].to_string();
    call_expecting_error(
        sock,
        "POST",
        "/v2/email/dedicated-ips",
        Some(json!({"Ip": missing})),
        (400, "BadRequestException"),
    )
    .await;
    call_expecting_error(
        sock,
        "POST",
        "/v2/email/dedicated-ips",
        Some(json!({"Ip": "127.0.0.7"})),
        (400, "AlreadyExistsException"),
    )
    .await;
    let (status, _) = call(
        sock,
        "POST",
        "/v2/email/dedicated-ips",
        Some(json!({"Ip": "127.0.0.8", "PoolName": "ghost"})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = call(sock, "GET", "/v2/email/dedicated-ips?PoolName=fresh", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["DedicatedIps"][0]["Ip"], "127.0.0.7");
    assert_eq!(body["DedicatedIps"][0]["PoolName"], "fresh");
    assert_eq!(body["DedicatedIps"][0]["WarmupStatus"], "DONE");
    assert_eq!(body["DedicatedIps"].as_array().unwrap().len(), 1);
    let (status, body) = call(sock, "GET", "/v2/email/dedicated-ips/127.0.0.2", None).await;
    assert_eq!(
        (status, body["DedicatedIp"]["PoolName"].as_str()),
        (200, Some("a"))
    );
    assert_eq!(
        call(sock, "GET", "/v2/email/dedicated-ips/127.0.0.99", None)
            .await
            .0,
        404
    );
}

/// A step of the scenario above. Configuration sets.
async fn configuration_sets(sock: &Path) {
    let create = json!({"ConfigurationSetName": "fresh-set", "DeliveryOptions": {"SendingPoolName": "fresh", "TlsPolicy": "REQUIRE", "MaxDeliverySeconds": 600}});
    assert_eq!(
        call(
            sock,
            "POST",
            "/v2/email/configuration-sets",
            Some(create.clone())
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(sock, "POST", "/v2/email/configuration-sets", Some(create))
            .await
            .1["__type"],
        "AlreadyExistsException"
    );
    let (status, body) = call(sock, "GET", "/v2/email/configuration-sets/fresh-set", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["DeliveryOptions"],
        json!({"SendingPoolName": "fresh", "TlsPolicy": "REQUIRE", "MaxDeliverySeconds": 600})
    );
    let (status, body) = call(
        sock,
        "PUT",
        "/v2/email/configuration-sets/fresh-set/delivery-options",
        Some(json!({"SendingPoolName": "ghost"})),
    )
    .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (404, Some("SendingPool ghost doesn't exist"))
    );
    let (status, _) = call(
        sock,
        "PUT",
        "/v2/email/configuration-sets/fresh-set/delivery-options",
        Some(json!({"MaxDeliverySeconds": 10})),
    )
    .await;
    assert_eq!(status, 400);
    let (_, body) = call(sock, "GET", "/v2/email/configuration-sets", None).await;
    assert_eq!(body, json!({"ConfigurationSets": ["fresh-set", "sa"]}));
}

/// A step of the scenario above. A pool in use cannot be deleted.
async fn pool_in_use(sock: &Path) {
    let (status, body) = call(sock, "DELETE", "/v2/email/dedicated-ip-pools/fresh", None).await;
    assert_eq!(status, 400, "{body}");
}

/// A step of the scenario above. Mail for "sa" leaves from pool a (127.0.0.2) ... then the IPs swap pools, live.
async fn live_changes(relay: &TestRelay, sink: &Sink, sock: &Path) {
    send_with_set(relay, "sa", "before").await;
    assert_eq!(sink.wait_for(1, WAIT).await[0].peer.ip(), ip("127.0.0.2"));
    assert_eq!(
        call(
            sock,
            "PUT",
            "/v2/email/dedicated-ips/127.0.0.2/pool",
            Some(json!({"DestinationPoolName": "b"}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            sock,
            "PUT",
            "/v2/email/dedicated-ips/127.0.0.3/pool",
            Some(json!({"DestinationPoolName": "a"}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            sock,
            "PUT",
            "/v2/email/dedicated-ips/127.0.0.99/pool",
            Some(json!({"DestinationPoolName": "a"}))
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(
            sock,
            "PUT",
            "/v2/email/dedicated-ips/127.0.0.3/pool",
            Some(json!({"DestinationPoolName": "ghost"}))
        )
        .await
        .0,
        404
    );
    send_with_set(relay, "sa", "after").await;
    let received = sink.wait_for(2, WAIT).await;
    assert_eq!(
        received[1].peer.ip(),
        ip("127.0.0.3"),
        "the next message leaves from the new pool"
    );
}

/// A step of the scenario above. Removing things.
async fn removals(sock: &Path) {
    assert_eq!(
        call(
            sock,
            "DELETE",
            "/v2/email/configuration-sets/fresh-set",
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            sock,
            "DELETE",
            "/v2/email/configuration-sets/fresh-set",
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(sock, "DELETE", "/v2/email/dedicated-ips/127.0.0.7", None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(sock, "DELETE", "/v2/email/dedicated-ip-pools/fresh", None)
            .await
            .0,
        200
    );
}

/// A step of the scenario above. Status and queue.
async fn status_and_queue(relay: &TestRelay, sock: &Path) {
    let (status, body) = call(sock, "GET", "/v2/email/status", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["Listeners"][0], relay.addr.to_string());
    assert!(body["QueueSize"].is_u64());
    let (status, body) = call(sock, "GET", "/v2/email/queue", None).await;
    assert_eq!((status, body["Messages"].is_array()), (200, true));
    assert_eq!(
        call(sock, "POST", "/v2/email/queue/nope/retry", None)
            .await
            .0,
        404
    );
}

/// A step of the scenario above. Malformed requests get error replies, never a crash.
async fn malformed_requests(sock: &Path) {
    let (status, body) = call(sock, "POST", "/v2/email/dedicated-ip-pools", None).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (400, Some("PoolName is required"))
    );
    let (status, _) = raw(sock, b"POST /v2/email/dedicated-ip-pools HTTP/1.1\r\nContent-Length: 9\r\nConnection: close\r\n\r\n{\"Pool\":\0").await;
    assert_eq!(status, 400);
    let (status, _) = raw(sock, b"POST /v2/email/dedicated-ip-pools HTTP/1.1\r\nContent-Length: 4\r\nConnection: close\r\n\r\n\xff\xfe{}").await;
    assert_eq!(status, 400);
    let big = format!("{{\"PoolName\": \"{}\"}}", "x".repeat(100_000));
    assert_eq!(
        call(
            sock,
            "POST",
            "/v2/email/dedicated-ip-pools",
            Some(serde_json::from_str(&big).unwrap())
        )
        .await
        .0,
        413
    );
    let long_line = format!(
        "GET /v2/email/{} HTTP/1.1\r\nConnection: close\r\n\r\n",
        "a".repeat(40_000)
    );
    assert_ne!(raw(sock, long_line.as_bytes()).await.0, 200);
    assert_eq!(
        call(sock, "GET", "/v2/email/nothing-here", None).await.0,
        404
    );
    assert_eq!(
        call(sock, "PATCH", "/v2/email/dedicated-ip-pools", None)
            .await
            .0,
        404
    );
}

/// A step of the scenario above. Persisted: the operator's comments are still there, and a restart has the same state.
async fn persisted(relay: TestRelay) {
    let dir = relay.stop().await;
    let text = std::fs::read_to_string(dir.path().join("poolrelay.toml")).unwrap();
    for kept in [
        "# operator notes: do not remove",
        "# pool a serves the reset mail",
        "# the first address",
    ] {
        assert!(text.contains(kept), "{kept:?} lost:\n{text}");
    }
    let relay = TestRelay::start_in(dir, &text).await;
    let (_, body) = call(
        &socket(relay.dir.path()),
        "GET",
        "/v2/email/dedicated-ips/127.0.0.2",
        None,
    )
    .await;
    assert_eq!(body["DedicatedIp"]["PoolName"], "b");
    let (_, body) = call(
        &socket(relay.dir.path()),
        "GET",
        "/v2/email/dedicated-ip-pools",
        None,
    )
    .await;
    assert_eq!(
        body,
        json!({"DedicatedIpPools": ["a", "b", "ses-default-dedicated-pool", "ses-shared-pool"]})
    );
    relay.stop().await;
}

/// An IPv4-mapped IPv6 spelling names the same dedicated IP, and addresses that cannot be a
/// source (unspecified, multicast, broadcast) are refused. Failed before: `0.0.0.0` was accepted
/// (mail then left from the host's default address) and `::ffff:127.0.0.2` was another IP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_spellings_are_canonical_and_unusable_addresses_are_refused() {
    let sink = start_sink().await;
    let relay = TestRelay::start(&admin_config(sink.addr(), "")).await;
    let sock = socket(relay.dir.path());
    let (status, body) = call(
        &sock,
        "GET",
        "/v2/email/dedicated-ips/::ffff:127.0.0.2",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["DedicatedIp"]["Ip"], "127.0.0.2");
    call_expecting_error(
        &sock,
        "POST",
        "/v2/email/dedicated-ips",
        Some(json!({"Ip": "::ffff:127.0.0.3"})),
        (400, "AlreadyExistsException"),
    )
    .await;
    for unusable in ["0.0.0.0", "::", "224.0.0.1", "255.255.255.255"] {
        let body = call_expecting_error(
            &sock,
            "POST",
            "/v2/email/dedicated-ips",
            Some(json!({"Ip": unusable})),
            (400, "BadRequestException"),
        )
        .await;
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("cannot be a source address"),
            "{unusable}: {body}"
        );
    }
    relay.stop().await;
}
