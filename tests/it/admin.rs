//! The admin socket, driven over a real Unix socket: SESv2 shapes and errors, changes that take
//! effect for the next message, persistence that keeps the operator's comments, and the socket's
//! permission and peer-credential checks.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::common::http::{call, python_get, raw};
use crate::common::*;
use serde_json::json;

fn admin_config(sink: std::net::SocketAddr, admin_extra: &str) -> String {
    format!(
        r#"# operator notes: do not remove
{}{}[admin]
socket = "var/admin.sock"
{admin_extra}

# pool a serves the reset mail
[[pool]]
name = "a"
[[pool]]
name = "b"
[[ip]]
address = "127.0.0.2" # the first address
pool = "a"
[[ip]]
address = "127.0.0.3"
pool = "b"
[[configuration_set]]
name = "sa"
sending_pool = "a"
"#,
        smtp_section(""),
        catch_all_route(sink)
    )
}

fn socket(dir: &Path) -> PathBuf {
    dir.join("var/admin.sock")
}

async fn send_with_set(relay: &TestRelay, set: &str, subject: &str) {
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client.send_for_set(set, "user@example.test", subject).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_change_pools_live_and_persist_with_comments() {
    let sink = start_sink().await;
    let relay = TestRelay::start(&admin_config(sink.addr(), "")).await;
    let sock = socket(relay.dir.path());
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the socket is private");

    // Pools, with Python's http.client as an independent client for the first call.
    let (status, body) = tokio::task::spawn_blocking({
        let sock = sock.clone();
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
        &sock,
        "POST",
        "/v2/email/dedicated-ip-pools",
        Some(json!({"PoolName": "fresh"})),
    )
    .await;
    assert_eq!((status, body), (200, json!({})));
    let (status, body) = call(
        &sock,
        "POST",
        "/v2/email/dedicated-ip-pools",
        Some(json!({"PoolName": "fresh"})),
    )
    .await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("AlreadyExistsException"))
    );
    for bad in ["Bad Name", "ses-shared-pool", ""] {
        let (status, body) = call(
            &sock,
            "POST",
            "/v2/email/dedicated-ip-pools",
            Some(json!({"PoolName": bad})),
        )
        .await;
        assert_eq!(
            (status, body["__type"].as_str()),
            (400, Some("BadRequestException")),
            "{bad}"
        );
    }
    let (status, body) = call(&sock, "GET", "/v2/email/dedicated-ip-pools/fresh", None).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"DedicatedIpPool": {"PoolName": "fresh", "ScalingMode": "STANDARD"}})
        )
    );
    let (status, body) = call(
        &sock,
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
        call(&sock, "GET", "/v2/email/dedicated-ip-pools/nope", None)
            .await
            .0,
        404
    );

    // IPs: add only addresses this host has; list, get, errors.
    let (status, _) = call(
        &sock,
        "POST",
        "/v2/email/dedicated-ips",
        Some(json!({"Ip": "127.0.0.7", "PoolName": "fresh", "Weight": 2})),
    )
    .await;
    assert_eq!(status, 200);
    let missing = unassigned_addresses(1)[0].to_string();
    let (status, body) = call(
        &sock,
        "POST",
        "/v2/email/dedicated-ips",
        Some(json!({"Ip": missing})),
    )
    .await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("BadRequestException")),
        "{body}"
    );
    let (status, body) = call(
        &sock,
        "POST",
        "/v2/email/dedicated-ips",
        Some(json!({"Ip": "127.0.0.7"})),
    )
    .await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("AlreadyExistsException"))
    );
    let (status, _) = call(
        &sock,
        "POST",
        "/v2/email/dedicated-ips",
        Some(json!({"Ip": "127.0.0.8", "PoolName": "ghost"})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = call(&sock, "GET", "/v2/email/dedicated-ips?PoolName=fresh", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["DedicatedIps"][0]["Ip"], "127.0.0.7");
    assert_eq!(body["DedicatedIps"][0]["PoolName"], "fresh");
    assert_eq!(body["DedicatedIps"][0]["WarmupStatus"], "DONE");
    assert_eq!(body["DedicatedIps"].as_array().unwrap().len(), 1);
    let (status, body) = call(&sock, "GET", "/v2/email/dedicated-ips/127.0.0.2", None).await;
    assert_eq!(
        (status, body["DedicatedIp"]["PoolName"].as_str()),
        (200, Some("a"))
    );
    assert_eq!(
        call(&sock, "GET", "/v2/email/dedicated-ips/127.0.0.99", None)
            .await
            .0,
        404
    );

    // Configuration sets.
    let create = json!({"ConfigurationSetName": "fresh-set", "DeliveryOptions": {"SendingPoolName": "fresh", "TlsPolicy": "REQUIRE", "MaxDeliverySeconds": 600}});
    assert_eq!(
        call(
            &sock,
            "POST",
            "/v2/email/configuration-sets",
            Some(create.clone())
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(&sock, "POST", "/v2/email/configuration-sets", Some(create))
            .await
            .1["__type"],
        "AlreadyExistsException"
    );
    let (status, body) = call(&sock, "GET", "/v2/email/configuration-sets/fresh-set", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["DeliveryOptions"],
        json!({"SendingPoolName": "fresh", "TlsPolicy": "REQUIRE", "MaxDeliverySeconds": 600})
    );
    let (status, body) = call(
        &sock,
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
        &sock,
        "PUT",
        "/v2/email/configuration-sets/fresh-set/delivery-options",
        Some(json!({"MaxDeliverySeconds": 10})),
    )
    .await;
    assert_eq!(status, 400);
    let (_, body) = call(&sock, "GET", "/v2/email/configuration-sets", None).await;
    assert_eq!(body, json!({"ConfigurationSets": ["fresh-set", "sa"]}));

    // A pool in use cannot be deleted.
    let (status, body) = call(&sock, "DELETE", "/v2/email/dedicated-ip-pools/fresh", None).await;
    assert_eq!(status, 400, "{body}");

    // Mail for "sa" leaves from pool a (127.0.0.2) ... then the IPs swap pools, live.
    send_with_set(&relay, "sa", "before").await;
    assert_eq!(sink.wait_for(1, WAIT).await[0].peer.ip(), ip("127.0.0.2"));
    assert_eq!(
        call(
            &sock,
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
            &sock,
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
            &sock,
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
            &sock,
            "PUT",
            "/v2/email/dedicated-ips/127.0.0.3/pool",
            Some(json!({"DestinationPoolName": "ghost"}))
        )
        .await
        .0,
        404
    );
    send_with_set(&relay, "sa", "after").await;
    let received = sink.wait_for(2, WAIT).await;
    assert_eq!(
        received[1].peer.ip(),
        ip("127.0.0.3"),
        "the next message leaves from the new pool"
    );

    // Removing things.
    assert_eq!(
        call(
            &sock,
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
            &sock,
            "DELETE",
            "/v2/email/configuration-sets/fresh-set",
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(&sock, "DELETE", "/v2/email/dedicated-ips/127.0.0.7", None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(&sock, "DELETE", "/v2/email/dedicated-ip-pools/fresh", None)
            .await
            .0,
        200
    );

    // Status and queue.
    let (status, body) = call(&sock, "GET", "/v2/email/status", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["Listeners"][0], relay.addr.to_string());
    assert!(body["QueueSize"].is_u64());
    let (status, body) = call(&sock, "GET", "/v2/email/queue", None).await;
    assert_eq!((status, body["Messages"].is_array()), (200, true));
    assert_eq!(
        call(&sock, "POST", "/v2/email/queue/nope/retry", None)
            .await
            .0,
        404
    );

    // Malformed requests get error replies, never a crash.
    let (status, body) = call(&sock, "POST", "/v2/email/dedicated-ip-pools", None).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (400, Some("PoolName is required"))
    );
    let (status, _) = raw(&sock, b"POST /v2/email/dedicated-ip-pools HTTP/1.1\r\nContent-Length: 9\r\nConnection: close\r\n\r\n{\"Pool\":\0").await;
    assert_eq!(status, 400);
    let (status, _) = raw(&sock, b"POST /v2/email/dedicated-ip-pools HTTP/1.1\r\nContent-Length: 4\r\nConnection: close\r\n\r\n\xff\xfe{}").await;
    assert_eq!(status, 400);
    let big = format!("{{\"PoolName\": \"{}\"}}", "x".repeat(100_000));
    assert_eq!(
        call(
            &sock,
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
    assert_ne!(raw(&sock, long_line.as_bytes()).await.0, 200);
    assert_eq!(
        call(&sock, "GET", "/v2/email/nothing-here", None).await.0,
        404
    );
    assert_eq!(
        call(&sock, "PATCH", "/v2/email/dedicated-ip-pools", None)
            .await
            .0,
        404
    );

    // Persisted: the operator's comments are still there, and a restart has the same state.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_outside_allowed_uids_are_refused() {
    let sink = start_sink().await;
    let relay = TestRelay::start(&admin_config(sink.addr(), "allowed_uids = [4242424]")).await;
    let (status, body) = call(
        &socket(relay.dir.path()),
        "GET",
        "/v2/email/dedicated-ip-pools",
        None,
    )
    .await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (403, Some("AccessDeniedException"))
    );
    let (status, _) = call(
        &socket(relay.dir.path()),
        "POST",
        "/v2/email/dedicated-ip-pools",
        Some(json!({"PoolName": "x"})),
    )
    .await;
    assert_eq!(status, 403);
    let text = std::fs::read_to_string(relay.dir.path().join("poolrelay.toml")).unwrap();
    assert!(!text.contains("name = \"x\""), "nothing changed");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_or_symlink_at_the_socket_path_stops_start_up() {
    let sink = start_sink().await;
    for kind in ["file", "symlink"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("var")).unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, b"do not delete").unwrap();
        let sock = socket(dir.path());
        if kind == "file" {
            std::fs::write(&sock, b"not a socket").unwrap();
        } else {
            std::os::unix::fs::symlink(&target, &sock).unwrap();
        }
        let path = dir.path().join("poolrelay.toml");
        std::fs::write(&path, admin_config(sink.addr(), "")).unwrap();
        let config = poolrelay::config::load(&path).unwrap();
        let error = poolrelay::server::Relay::start(config)
            .await
            .err()
            .expect("start-up is refused");
        assert!(
            format!("{error:#}").contains("is not a socket"),
            "{error:#}"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"do not delete");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_talks_to_the_socket() {
    let sink = start_sink().await;
    let relay = TestRelay::start(&admin_config(sink.addr(), "")).await;
    let config = relay.dir.path().join("poolrelay.toml");
    let run = move |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_poolrelay"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .expect("the binary runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let run = std::sync::Arc::new(run);
    let cli = |args: &'static [&'static str]| {
        let run = run.clone();
        async move {
            tokio::task::spawn_blocking(move || run(args))
                .await
                .unwrap()
        }
    };
    let (ok, out, _) = cli(&["pools", "create", "cli-pool"]).await;
    assert!(ok && out.trim() == "ok", "{out}");
    let (ok, out, _) = cli(&["pools", "list", "--json"]).await;
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["DedicatedIpPools"][2], "cli-pool");
    let (ok, _, _) = cli(&["ips", "move", "127.0.0.2", "cli-pool"]).await;
    assert!(ok);
    let (ok, out, _) = cli(&["ips", "list", "--pool", "cli-pool"]).await;
    assert!(
        ok && out.contains("127.0.0.2") && out.contains("cli-pool"),
        "{out}"
    );
    let (ok, out, _) = cli(&["status"]).await;
    assert!(ok && out.starts_with("poolrelay "), "{out}");
    let (ok, _, err) = cli(&["pools", "delete", "no-such-pool"]).await;
    assert!(!ok);
    assert!(
        err.contains("NotFoundException: Pool no-such-pool does not exist"),
        "{err}"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_outcomes_by_pool_and_source_ip() {
    let sink = start_sink().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let relay = TestRelay::start(&admin_config(sink.addr(), "").replace(
        "[admin]",
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n[admin]"),
    ))
    .await;
    send_with_set(&relay, "sa", "counted").await;
    sink.wait_for(1, WAIT).await;
    let spool = relay.spool_dir();
    eventually(|| spool_files(&spool, "queue").is_empty().then_some(()))
        .await
        .expect("delivered");
    let fetch = |request: &'static [u8], over_tcp: bool| {
        let sock = socket(relay.dir.path());
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut response = Vec::new();
            if over_tcp {
                let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                stream.write_all(request).await.unwrap();
                stream.read_to_end(&mut response).await.unwrap();
            } else {
                let mut stream = tokio::net::UnixStream::connect(sock).await.unwrap();
                stream.write_all(request).await.unwrap();
                stream.read_to_end(&mut response).await.unwrap();
            }
            String::from_utf8_lossy(&response).into_owned()
        }
    };
    let request: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    for over_tcp in [false, true] {
        let text = fetch(request, over_tcp).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            text.contains(
                "poolrelay_recipients_delivered_total{pool=\"a\",source_ip=\"127.0.0.2\"}"
            ),
            "{text}"
        );
        assert!(text.contains("poolrelay_messages_accepted_total"), "{text}");
        assert!(text.contains("poolrelay_queue_messages "), "{text}");
        assert!(text.contains("poolrelay_delivery_seconds_bucket"), "{text}");
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_group_gets_a_0660_socket() {
    use std::os::unix::fs::MetadataExt;
    let sink = start_sink().await;
    // "root" (gid 0) exists on every Linux machine.
    let relay = TestRelay::start(&admin_config(sink.addr(), "group = \"root\"")).await;
    let metadata = std::fs::metadata(socket(relay.dir.path())).unwrap();
    assert_eq!(metadata.permissions().mode() & 0o777, 0o660);
    assert_eq!(metadata.gid(), 0);
    relay.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("poolrelay.toml");
    std::fs::write(
        &path,
        admin_config(sink.addr(), "group = \"no-such-group-here\""),
    )
    .unwrap();
    let error = poolrelay::server::Relay::start(poolrelay::config::load(&path).unwrap())
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{error:#}").contains("no group named no-such-group-here"),
        "{error:#}"
    );
}

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
    let (status, body) = call(&sock, "POST", &format!("/v2/email/queue/{id}/retry"), None).await;
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("BadRequestException")),
        "held: {body}"
    );
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
