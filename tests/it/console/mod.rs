//! The console in a real browser: headless Chromium driven by Selenium signs in, runs the
//! Create a New IP Pool wizard (moving an IP from another pool, assigning the pool to an
//! existing set, then to a new one), and mail sent with those sets leaves from the chosen IPs.
//! Refusals: a taken name on its step, a form without its CSRF token, a viewer.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;

const ADMIN_PASSWORD: &str = "correct horse battery";
const VIEWER_PASSWORD: &str = "viewer password";

fn browser_python() -> Option<std::path::PathBuf> {
    let python = python_with(
        "selenium",
        "drive Chromium: selenium is not installed (.venv/bin/pip install selenium)",
    )?;
    if !std::path::Path::new("/usr/bin/chromedriver").exists() {
        privilege_missing(
            "drive Chromium: chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)",
        );
        return None;
    }
    Some(python)
}

/// Runs one phase of `browser.py` against the console at `base` (on a blocking thread).
async fn browser(
    python: std::path::PathBuf,
    phase: &str,
    base: &str,
    shots: Option<&str>,
) -> Value {
    let mut args: Vec<String> = [
        phase,
        base,
        "ops",
        ADMIN_PASSWORD,
        "watcher",
        VIEWER_PASSWORD,
    ]
    .map(String::from)
    .to_vec();
    args.extend(shots.map(String::from));
    python_json(python, "console/browser.py", args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wizard_creates_pools_that_mail_then_leaves_from() {
    let Some(python) = browser_python() else {
        return;
    };
    let sink = start_sink().await;
    let admin_hash = poolrelay::password::hash(ADMIN_PASSWORD).expect("hash");
    let viewer_hash = poolrelay::password::hash(VIEWER_PASSWORD).expect("hash");
    // 127.0.0.3 warms up from today: the Dedicated IPs page shows its cap in use.
    let today = chrono::Utc::now().date_naive();
    let config = format!(
        r#"{}{}[api]
listen = ["127.0.0.1:0"]
[admin]
socket = "var/admin.sock"
[[admin.user]]
username = "ops"
password_hash = "{admin_hash}"
role = "admin"
[[admin.user]]
username = "watcher"
password_hash = "{viewer_hash}"
role = "viewer"
[[pool]]
name = "old"
[[ip]]
address = "127.0.0.2"
[[ip]]
address = "127.0.0.3"
pool = "old"
warmup_started = "{today}"
[[ip]]
address = "127.0.0.4"
[[configuration_set]]
name = "promo"
sending_pool = "old"
"#,
        smtp_section(""),
        catch_all_route(sink.addr())
    );
    let relay = TestRelay::start(&config).await;
    let base = format!(
        "http://{}",
        relay.relay.as_ref().expect("running").api_addrs()[0]
    );
    let results = browser(python.clone(), "wizard", &base, None).await;
    let text = |name: &str| results[name].as_str().unwrap_or_default().to_string();

    assert!(
        text("unsigned_url").ends_with("/console/login"),
        "{results}"
    );
    assert!(text("wrong_password").contains("Wrong username or password"));
    assert!(text("ips_page").contains("Dedicated IPs") && text("ips_page").contains("127.0.0.3"));
    let cookie = results["cookies"]
        .as_array()
        .and_then(|cookies| cookies.iter().find(|c| c["name"] == "poolrelay_console"))
        .expect("the session cookie");
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Strict", "{cookie}");

    assert!(
        results["taken"]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("already exists")
    );
    assert_eq!(results["taken"]["on_name_step"], true);
    let first = &results["first"];
    assert!(
        first["moved"]
            .as_str()
            .unwrap_or_default()
            .contains("(in old; choosing it moves it to wizard-pool)"),
        "{first}"
    );
    assert_eq!(results["ip_kept_after_previous"], true);
    assert!(
        first["review"]
            .as_str()
            .unwrap_or_default()
            .contains("127.0.0.3 moves from old"),
        "{first}"
    );
    assert!(
        first["after"]
            .as_str()
            .unwrap_or_default()
            .contains("Pool wizard-pool was created."),
        "{first}"
    );
    assert!(
        results["second"]["after"]
            .as_str()
            .unwrap_or_default()
            .contains("Pool wizard-two was created.")
    );

    assert_eq!(results["post_without_csrf"], 403);
    assert_eq!(results["post_with_wrong_csrf"], 403);
    assert!(text("after_sign_out").ends_with("/console/login"));
    assert!(text("viewer_pools").contains("wizard-pool"));
    assert_eq!(results["viewer_create_links"], 0);
    assert_eq!(results["viewer_post"], 403);
    assert!(text("viewer_wizard").contains("A viewer cannot create pools"));

    // The config says what the wizard did, once each.
    let config = std::fs::read_to_string(relay.dir.path().join("poolrelay.toml")).expect("config");
    assert!(!config.contains("csrf-pool"), "{config}");
    // Mail with those sets leaves from the chosen IPs.
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send_for_set("promo", "a@example.test", "promo")
        .await;
    client
        .send_for_set("fresh-set", "b@example.test", "fresh")
        .await;
    let received = sink.wait_for(2, Duration::from_secs(15)).await;
    let from = |subject: &str| {
        received
            .iter()
            .find(|m| String::from_utf8_lossy(&m.content).contains(&format!("Subject: {subject}")))
            .map(|m| m.peer.ip())
    };
    assert_eq!(from("promo"), Some(ip("127.0.0.3")));
    assert_eq!(from("fresh"), Some(ip("127.0.0.4")));

    // The Overview and Dedicated IPs pages count those deliveries.
    let spool = relay.spool_dir();
    eventually(|| spool_files(&spool, "queue").is_empty().then_some(()))
        .await
        .expect("delivered");
    // The same counts as JSON (the API extension the console reads from).
    let socket = relay.dir.path().join("var/admin.sock");
    let (status, history) =
        crate::common::http::call(&socket, "GET", "/v2/email/poolrelay/history", None).await;
    assert_eq!(status, 200);
    let minutes = history["Minutes"].as_array().expect("minutes");
    assert_eq!(minutes.len(), 60);
    let delivered = |pool: &str| -> u64 {
        minutes
            .iter()
            .filter_map(|m| m["Pools"][pool]["Delivered"].as_u64())
            .sum()
    };
    assert_eq!(
        (delivered("wizard-pool"), delivered("wizard-two")),
        (1, 1),
        "{history}"
    );

    // A receiver whose reply carries markup defers the default pool's mail.
    sink.refuse(
        ip("127.0.0.2"),
        Some(poolrelay::sink::Refusal {
            at_greeting: false,
            reply: "554 5.7.1 <script>alert(1)</script> blocked using zen.spamhaus.org".into(),
        }),
    );
    client
        .send_message(
            "app@example.test",
            &["c@example.test"],
            b"Subject: deferred\r\n\r\nx\r\n.\r\n",
        )
        .await;
    eventually(|| {
        queued_envelopes(&spool)
            .iter()
            .any(|e| e.attempts > 0)
            .then_some(())
    })
    .await
    .expect("the message was tried and deferred");
    // Screenshots of every page: into a temporary folder, or where POOLRELAY_CONSOLE_SHOTS says
    // (docs/ for the README: `POOLRELAY_CONSOLE_SHOTS=$PWD/docs cargo test console`).
    let temporary = tempfile::tempdir().expect("temp dir");
    let shots = std::env::var("POOLRELAY_CONSOLE_SHOTS")
        .unwrap_or_else(|_| temporary.path().display().to_string());
    let seen = browser(python, "overview", &base, Some(&shots)).await;
    let overview = seen["overview"].as_str().unwrap_or_default();
    assert!(
        overview.contains("wizard-pool — last hour: 1 delivered"),
        "{seen}"
    );
    assert!(
        overview.contains("127.0.0.4 — last hour: 1 delivered"),
        "{overview}"
    );
    assert!(seen["bars"].as_u64().unwrap_or(0) >= 2, "{seen}");
    assert_eq!(seen["live_script"], 1);
    assert!(
        seen["ips_after"]
            .as_str()
            .unwrap_or_default()
            .contains("1 delivered")
    );
    let ips_after = seen["ips_after"].as_str().unwrap_or_default();
    assert!(ips_after.contains("1 of today's"), "{ips_after}");
    // The blocklisted IP shows its suspension for the sink's site, the reply as text, and until.
    let suspended = seen["ips_suspended"].as_str().unwrap_or_default();
    assert!(
        suspended.contains("127.0.0.1: 554 5.7.1 <script>alert(1)</script> blocked using zen.spamhaus.org (until 20"),
        "{suspended}"
    );
    let queue = seen["queue"].as_str().unwrap_or_default();
    assert!(queue.contains("<script>alert(1)</script>"), "{queue}");
    assert!(
        queue.contains("127.0.0.2"),
        "the last attempt's source IP: {queue}"
    );
    assert_eq!(seen["scripts_in_main"], 0);
    let config = std::fs::read_to_string(relay.dir.path().join("poolrelay.toml")).expect("config");
    let console_set = config
        .split("[[configuration_set]]")
        .find(|block| block.contains("name = \"console-set\""))
        .unwrap_or_default();
    assert!(console_set.contains("sending_enabled = false"), "{config}");
    assert!(
        config.contains("address = \"127.0.0.4\"\npool = \"wizard-two\"\nsuspended = true"),
        "{config}"
    );
    assert_eq!(
        seen["screenshots"].as_array().map(Vec::len),
        Some(9),
        "{seen}"
    );
    for page in [
        "overview",
        "dedicated-ips",
        "ip-pools",
        "configuration-sets",
        "queue",
    ] {
        let png = std::fs::read(format!("{shots}/console-{page}.png")).expect("screenshot");
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 5_000,
            "{page}: {} bytes",
            png.len()
        );
    }
    relay.stop().await;
}
