//! The SESv2 API over HTTP, driven by boto3 and the aws CLI against a real relay: signatures
//! made by botocore are accepted and anything else is refused with SES's error types; the
//! admin operations work through the SDK, an IPv6 dedicated IP included.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use poolrelay::sink::Sink;
use serde_json::Value;

use crate::common::*;

const ADMIN_KEY: &str = "AKIDADMIN";
const ADMIN_SECRET: &str = "admin/Secret+key";
const SEND_KEY: &str = "AKIDSEND";
const SEND_SECRET: &str = "send-only-secret";

fn python() -> Option<std::path::PathBuf> {
    python_with(
        "boto3",
        "run boto3: it is not installed (python3 -m venv .venv && .venv/bin/pip install boto3 awscli)",
    )
}

mod pause;
mod send;

async fn api_relay() -> (TestRelay, String) {
    let (relay, endpoint, _sink) = api_relay_with("", "").await;
    (relay, endpoint)
}

/// A relay with the API (an admin key and a send-only key), IPs 127.0.0.2, 127.0.0.3 and ::1,
/// every domain routed to the returned sink. `smtp` lines go into `[smtp]`, `extra` at the end.
async fn api_relay_with(smtp: &str, extra: &str) -> (TestRelay, String, Sink) {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("admin.secret");
    std::fs::write(&secret, format!("{ADMIN_SECRET}\n")).expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("mode");
    let sink = start_sink().await;
    let config = format!(
        r#"{}{}[api]
listen = ["127.0.0.1:0"]
region = "us-east-1"
[[api.key]]
access_key_id = "{ADMIN_KEY}"
secret_access_key_file = "admin.secret"
allow = ["send", "admin"]
[[api.key]]
access_key_id = "{SEND_KEY}"
secret_access_key = "{SEND_SECRET}"
allow = ["send"]
[[ip]]
address = "127.0.0.2"
[[ip]]
address = "127.0.0.3"
[[ip]]
address = "::1"
{extra}"#,
        smtp_section(smtp),
        catch_all_route(sink.addr())
    );
    let relay = TestRelay::start_in(dir, &config).await;
    let endpoint = format!(
        "http://{}",
        relay.relay.as_ref().expect("running").api_addrs()[0]
    );
    (relay, endpoint, sink)
}

/// Runs `script` (in this folder) with `args` and returns its JSON output.
async fn run_script(python: std::path::PathBuf, script: &str, args: Vec<String>) -> Value {
    python_json(python, &format!("api/{script}"), args).await
}

/// Runs `aws sesv2 ARGS` with `key` against `endpoint` on a blocking thread (the relay answers
/// on this test's runtime) and returns its JSON output (`{}` for none); `None` when the CLI is
/// not installed (which fails under CI).
async fn aws(endpoint: &str, (key, secret): (&str, &str), args: &[&str]) -> Option<Value> {
    let aws = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/aws");
    let aws = if aws.exists() { aws } else { "aws".into() };
    let mut command = Command::new(&aws);
    command
        .arg("sesv2")
        .args(args)
        .args(["--endpoint-url", endpoint, "--region", "us-east-1"])
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("joined");
    let Ok(output) = output else {
        privilege_missing("run the aws CLI: it is not installed (.venv/bin/pip install awscli)");
        return None;
    };
    assert!(
        output.status.success(),
        "aws {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    if output.stdout.iter().all(u8::is_ascii_whitespace) {
        return Some(serde_json::json!({}));
    }
    Some(serde_json::from_slice(&output.stdout).expect("aws prints JSON"))
}

/// The successful result `name` of a script's output.
fn ok<'a>(results: &'a Value, name: &str) -> &'a Value {
    let result = &results[name];
    assert!(result.get("ok").is_some(), "{name}: {result}");
    &result["ok"]
}

/// The SES error code and HTTP status of result `name`.
fn error(results: &Value, name: &str) -> (String, u64) {
    let result = &results[name];
    let code = result["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: {result}"));
    (code.to_string(), result["status"].as_u64().unwrap_or(0))
}

#[tokio::test]
async fn boto3_and_the_aws_cli_work_and_bad_signatures_are_refused() {
    let Some(python) = python() else { return };
    let (relay, endpoint) = api_relay().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/api/sdk.py");
    let run = {
        let endpoint = endpoint.clone();
        move || {
            Command::new(&python)
                .args([
                    script,
                    &endpoint,
                    ADMIN_KEY,
                    ADMIN_SECRET,
                    SEND_KEY,
                    SEND_SECRET,
                ])
                .output()
                .expect("python runs")
        }
    };
    let output = tokio::task::spawn_blocking(run).await.expect("joined");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Value = serde_json::from_slice(&output.stdout).expect("JSON results");
    let ok = |name: &str| -> &Value {
        let result = &results[name];
        assert!(result.get("ok").is_some(), "{name}: {result}");
        &result["ok"]
    };
    let error = |name: &str| -> (String, u64) {
        let result = &results[name];
        let code = result["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: {result}"));
        (code.to_string(), result["status"].as_u64().unwrap_or(0))
    };
    ok("create_pool");
    assert!(
        ok("list_pools")["DedicatedIpPools"]
            .as_array()
            .expect("pools")
            .iter()
            .any(|p| p == "sdk-pool")
    );
    assert_eq!(ok("get_ipv6")["DedicatedIp"]["Ip"], "::1");
    ok("move_ipv6");
    let in_pool = &ok("ips_in_pool")["DedicatedIps"];
    assert_eq!(in_pool[0]["Ip"], "::1", "{in_pool}");
    ok("create_set");
    assert_eq!(
        ok("get_set")["DeliveryOptions"]["SendingPoolName"],
        "sdk-pool"
    );
    assert_eq!(error("missing_set"), ("NotFoundException".into(), 404));
    ok("suppress");
    // Every List pages: two per page, all items once.
    let listed = |name: &str| -> Vec<String> {
        results[name]["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: {}", results[name]))
            .iter()
            .map(|item| match item {
                Value::String(text) => text.clone(),
                other => other["Ip"]
                    .as_str()
                    .or(other["IdentityName"].as_str())
                    .unwrap_or_default()
                    .to_string(),
            })
            .collect()
    };
    let pools = listed("pool_pages");
    assert_eq!(
        pools.len(),
        8,
        "5 + sdk-pool + the two reserved pools: {pools:?}"
    );
    assert_eq!(results["pool_pages"]["pages"], 4);
    let mut unique = pools.clone();
    unique.dedup();
    assert_eq!(unique, pools, "nothing repeated");
    assert_eq!(listed("set_pages").len(), 6);
    assert_eq!(listed("ip_pages"), ["127.0.0.2", "127.0.0.3", "::1"]);
    assert_eq!(results["ip_pages"]["pages"], 2);
    assert_eq!(error("made_up_token"), ("BadRequestException".into(), 400));
    assert_eq!(ok("get_pool")["DedicatedIpPool"]["PoolName"], "sdk-pool");
    assert_eq!(
        ok("get_set_after")["DeliveryOptions"]["TlsPolicy"],
        "REQUIRE"
    );
    assert_eq!(ok("account")["SendingEnabled"], true);
    ok("account_suppression");
    ok("set_suppression");
    ok("unsuppress");
    ok("delete_set");
    ok("delete_pool");
    // Every response body matches botocore's model.
    assert_eq!(results["shape_errors"], serde_json::json!([]));
    let checked = results["shapes_checked"].to_string();
    for operation in [
        "ListDedicatedIpPools",
        "GetDedicatedIps",
        "ListConfigurationSets",
        "GetAccount",
        "ListSuppressedDestinations",
        "ListEmailIdentities",
    ] {
        assert!(
            checked.contains(operation),
            "{operation} was not checked: {checked}"
        );
    }
    assert_eq!(
        ok("get_suppressed")["SuppressedDestination"]["Reason"],
        "BOUNCE"
    );

    assert_eq!(
        error("wrong_secret"),
        ("SignatureDoesNotMatchException".into(), 403)
    );
    assert_eq!(
        error("unknown_key"),
        ("UnrecognizedClientException".into(), 403)
    );
    assert_eq!(
        error("send_key_on_admin"),
        ("AccessDeniedException".into(), 403)
    );
    assert_eq!(error("old_date").0, "InvalidSignatureException");
    assert!(
        results["old_date"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Signature expired"))
    );
    assert_eq!(results["changed_body"]["status"], 403);
    assert_eq!(
        results["changed_body"]["type"],
        "SignatureDoesNotMatchException"
    );
    assert_eq!(results["unknown_route"]["status"], 404);
    assert_eq!(
        results["unknown_route"]["body"]["__type"],
        "UnknownOperationException"
    );
    // The pool the changed body would have created does not exist.
    let config = std::fs::read_to_string(relay.dir.path().join("poolrelay.toml")).expect("config");
    assert!(
        config.contains("sdk-pool")
            && !config.contains("evil-pool")
            && !config.contains("raw-pool")
    );

    // The aws CLI, as a user types it.
    let Some(pools) = aws(
        &endpoint,
        (ADMIN_KEY, ADMIN_SECRET),
        &["list-dedicated-ip-pools"],
    )
    .await
    else {
        return;
    };
    assert!(
        pools["DedicatedIpPools"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p == "sdk-pool"))
    );
    // Sending with the send-only key, as the README shows it.
    let content = r#"{"Simple": {"Subject": {"Data": "Hello"}, "Body": {"Text": {"Data": "Hi"}}}}"#;
    let sent = aws(
        &endpoint,
        (SEND_KEY, SEND_SECRET),
        &[
            "send-email",
            "--from-email-address",
            "news@example.com",
            "--destination",
            "ToAddresses=ann@example.org",
            "--content",
            content,
        ],
    )
    .await
    .expect("aws ran before");
    let id = sent["MessageId"].as_str().expect("a MessageId").to_string();
    // The next hop of this relay is gone: the message is in the spool under the id answered.
    let queued = queued_envelopes(&relay.spool_dir());
    assert!(
        queued
            .iter()
            .any(|e| e.id == id && e.recipients[0].address == "ann@example.org"),
        "{id} not in {queued:?}"
    );
    let paused = aws(
        &endpoint,
        (ADMIN_KEY, ADMIN_SECRET),
        &[
            "put-configuration-set-sending-options",
            "--configuration-set-name",
            "sdk-set",
            "--no-sending-enabled",
        ],
    )
    .await
    .expect("aws ran before");
    assert_eq!(paused, serde_json::json!({}));
    let config = std::fs::read_to_string(relay.dir.path().join("poolrelay.toml")).expect("config");
    assert!(config.contains("sending_enabled = false"), "{config}");
    relay.stop().await;
}

#[tokio::test]
async fn a_secret_file_others_can_read_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("open.secret");
    std::fs::write(&secret, "s").expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("mode");
    let path = dir.path().join("poolrelay.toml");
    let text = format!(
        "{}[api]\nlisten = [\"127.0.0.1:0\"]\n[[api.key]]\naccess_key_id = \"AKID1\"\nsecret_access_key_file = \"open.secret\"\nallow = [\"admin\", \"everything\"]\n",
        smtp_section("")
    );
    std::fs::write(&path, text).expect("config");
    let errors = poolrelay::config::load(&path)
        .expect_err("refused")
        .to_string();
    assert!(
        errors.contains("readable by other users") && errors.contains("chmod 600"),
        "{errors}"
    );
    assert!(errors.contains("\"everything\""), "{errors}");
}
