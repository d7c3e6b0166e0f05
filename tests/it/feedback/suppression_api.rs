//! The suppression list through the SESv2 API and the CLI: put, get, delete, pages and their
//! tokens, account and configuration-set reasons written to the config file, a 100,000-line
//! import with bad lines named, and entries that survive SIGKILL.

use std::io::Write;
use std::process::Command;

use serde_json::json;

use super::*;

const BASE: &str = "/v2/email/suppression/addresses";

fn cli(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_poolrelay"))
        .arg("suppression")
        .args(args)
        .arg("--socket")
        .arg(admin_socket(dir))
        .output()
        .expect("the CLI runs")
}

#[tokio::test]
async fn suppression_api_round_trips_with_pages_and_reasons() {
    let (sink, relay, dir, socket) = start_feedback_relay().await;

    let put = |address: &str, reason: &str| json!({"EmailAddress": address, "Reason": reason});
    let (status, _) = http::call(
        &socket,
        "PUT",
        BASE,
        Some(put("Someone@Example.TEST", "BOUNCE")),
    )
    .await;
    assert_eq!(status, 200);
    let (status, got) = http::call(
        &socket,
        "GET",
        &format!("{BASE}/Someone%40example.test"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        got["SuppressedDestination"]["EmailAddress"],
        "Someone@example.test"
    );
    assert_eq!(got["SuppressedDestination"]["Reason"], "BOUNCE");
    assert!(
        got["SuppressedDestination"]["LastUpdateTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    // The local part is exact.
    let (status, _) = http::call(
        &socket,
        "GET",
        &format!("{BASE}/someone%40example.test"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    for (body, field) in [
        (put("not-an-address", "BOUNCE"), "address"),
        (put("a@b.test", "SPAM"), "reason"),
    ] {
        let (status, error) = http::call(&socket, "PUT", BASE, Some(body)).await;
        assert_eq!(
            (status, error["__type"].as_str()),
            (400, Some("BadRequestException")),
            "{field}: {error}"
        );
    }
    let (status, _) = http::call(
        &socket,
        "DELETE",
        &format!("{BASE}/Someone%40example.test"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, error) = http::call(
        &socket,
        "DELETE",
        &format!("{BASE}/Someone%40example.test"),
        None,
    )
    .await;
    assert_eq!(
        (status, error["__type"].as_str()),
        (404, Some("NotFoundException"))
    );

    // 25 entries in pages of 10: three pages, each entry once, in order.
    let entries: Vec<_> = (0..25)
        .map(|i| {
            put(
                &format!("user{i:02}@example.test"),
                if i % 5 == 0 { "COMPLAINT" } else { "BOUNCE" },
            )
        })
        .collect();
    let (status, added) = http::call(
        &socket,
        "POST",
        &format!("{BASE}/batch"),
        Some(json!({"SuppressedDestinations": entries})),
    )
    .await;
    assert_eq!((status, added["Added"].as_u64()), (200, Some(25)));
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let (status, page) =
            http::call(&socket, "GET", &format!("{BASE}?PageSize=10{token}"), None).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        for entry in page["SuppressedDestinationSummaries"]
            .as_array()
            .expect("a list")
        {
            seen.push(
                entry["EmailAddress"]
                    .as_str()
                    .expect("an address")
                    .to_string(),
            );
        }
        match page["NextToken"].as_str() {
            Some(next) => {
                token = format!(
                    "&NextToken={}",
                    percent_encoding::utf8_percent_encode(next, percent_encoding::NON_ALPHANUMERIC)
                )
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25)
        .map(|i| format!("user{i:02}@example.test"))
        .collect();
    assert_eq!(seen, expected);
    let (_, complaints) = http::call(
        &socket,
        "GET",
        &format!("{BASE}?Reasons=COMPLAINT&StartDate=2020-01-01T00%3A00%3A00Z"),
        None,
    )
    .await;
    assert_eq!(
        complaints["SuppressedDestinationSummaries"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );
    let (_, none) = http::call(
        &socket,
        "GET",
        &format!("{BASE}?EndDate=2020-01-01T00%3A00%3A00Z"),
        None,
    )
    .await;
    assert_eq!(
        none["SuppressedDestinationSummaries"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    let (status, error) =
        http::call(&socket, "GET", &format!("{BASE}?NextToken=bogus"), None).await;
    assert_eq!(
        (status, error["__type"].as_str()),
        (400, Some("InvalidNextTokenException"))
    );

    // Account and configuration-set reasons go into the config file.
    let (status, _) = http::call(
        &socket,
        "PUT",
        "/v2/email/account/suppression",
        Some(json!({"SuppressedReasons": ["COMPLAINT"]})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = http::call(
        &socket,
        "PUT",
        "/v2/email/configuration-sets/marketing/suppression-options",
        Some(json!({"SuppressedReasons": []})),
    )
    .await;
    assert_eq!(status, 200);
    let text = std::fs::read_to_string(dir.join("poolrelay.toml")).expect("config");
    assert!(
        text.contains("[suppression]") && text.contains(r#"reasons = ["COMPLAINT"]"#),
        "{text}"
    );
    assert!(text.contains("suppressed_reasons = []"), "{text}");
    let (_, set) = http::call(
        &socket,
        "GET",
        "/v2/email/configuration-sets/marketing",
        None,
    )
    .await;
    assert_eq!(set["SuppressionOptions"]["SuppressedReasons"], json!([]));
    let (status, error) = http::call(
        &socket,
        "PUT",
        "/v2/email/configuration-sets/nope/suppression-options",
        Some(json!({"SuppressedReasons": []})),
    )
    .await;
    assert_eq!(status, 404, "{error}");

    // With its set's reasons empty, a suppressed address of a marketing message is attempted;
    // with the account's (COMPLAINT only) a bounce-suppressed one is too.
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send_for_set("marketing", "user05@example.test", "set")
        .await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send_accepted(
            "app@example.test",
            &["user01@example.test", "user10@example.test"],
            &as_data(b"Subject: acct\n\nx\n"),
        )
        .await;
    // The relay's DSN for user10 goes to the sink too; count the campaign's messages only.
    let got = eventually(|| {
        let mut got: Vec<String> = sink
            .messages()
            .iter()
            .filter(|m| !m.sender.is_empty())
            .flat_map(|m| m.recipients.clone())
            .collect();
        got.sort();
        (got.len() >= 2).then_some(got)
    })
    .await;
    assert_eq!(
        got.as_deref(),
        Some(
            &[
                "user01@example.test".to_string(),
                "user05@example.test".to_string()
            ][..]
        )
    );
    let suppressed_dsn =
        eventually(|| sink.messages().into_iter().find(|m| m.sender.is_empty())).await;
    assert!(
        suppressed_dsn
            .is_some_and(|m| String::from_utf8_lossy(&m.content).contains("user10@example.test"))
    );
    assert!(
        !sink
            .rcpt_attempts()
            .iter()
            .any(|a| a.recipient == "user10@example.test"),
        "user10 is a complaint, still suppressed"
    );
    relay.stop().await;
}

#[tokio::test]
async fn cli_imports_100000_lines_names_bad_ones_and_entries_survive_sigkill() {
    let sink = start_sink().await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("poolrelay.toml"),
        feedback_config(sink.addr(), ""),
    )
    .expect("config");
    let (mut child, _) = spawn_relay(dir.path());

    let csv_path = dir.path().join("import.csv");
    let mut csv = std::io::BufWriter::new(std::fs::File::create(&csv_path).expect("csv"));
    writeln!(csv, "emailAddress,reason").expect("write");
    for i in 0..100_000 {
        match i {
            4 => writeln!(csv, "not an address,BOUNCE"),
            50_000 => writeln!(csv, "x{i}@import.test,SPAM"),
            99_999 => writeln!(csv, "\"unterminated@import.test,BOUNCE"),
            _ => writeln!(
                csv,
                "User{i}@Import.TEST,{}",
                if i % 2 == 0 { "BOUNCE" } else { "complaint" }
            ),
        }
        .expect("write");
    }
    drop(csv);
    let output = cli(
        dir.path(),
        &["import", csv_path.to_str().expect("utf-8 path")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success(),
        "bad lines make the exit status non-zero"
    );
    assert!(
        stdout.contains("imported 99997 addresses (99997 new), skipped 3 bad lines"),
        "{stdout}\n{stderr}"
    );
    for line in ["line 6:", "line 50002:", "line 100001:"] {
        assert!(stderr.contains(line), "{line} named in: {stderr}");
    }

    let listed = cli(dir.path(), &["list", "--json"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let all: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).expect("a JSON list");
    assert_eq!(all.len(), 99_997);
    assert!(
        all.iter()
            .any(|e| e["EmailAddress"] == "User7@import.test" && e["Reason"] == "COMPLAINT")
    );

    let added = cli(
        dir.path(),
        &["add", "late@example.test", "--reason", "COMPLAINT"],
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let removed = cli(dir.path(), &["remove", "User2@import.test"]);
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    let missing = cli(dir.path(), &["remove", "User2@import.test"]);
    assert!(!missing.status.success());

    // Acknowledged entries survive SIGKILL.
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let (mut child, _) = spawn_relay(dir.path());
    let socket = admin_socket(dir.path());
    let (status, entry) =
        http::call(&socket, "GET", &format!("{BASE}/late%40example.test"), None).await;
    assert_eq!(
        (status, entry["SuppressedDestination"]["Reason"].as_str()),
        (200, Some("COMPLAINT")),
        "{entry}"
    );
    let (status, _) =
        http::call(&socket, "GET", &format!("{BASE}/User2%40import.test"), None).await;
    assert_eq!(status, 404);
    let (status, _) = http::call(
        &socket,
        "GET",
        &format!("{BASE}/User99998%40import.test"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
}
