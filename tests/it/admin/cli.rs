//! The `poolrelay` command line as an admin client.

use crate::common::*;

use super::*;

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
