//! The record to publish, as `check-config` and `identities list|show` print it, and a key that
//! cannot be used as a config error with its line (never a failure at DATA time).

use std::process::Command;

use crate::common::{TestRelay, catch_all_route, smtp_section};

fn poolrelay(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_poolrelay"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_and_the_cli_show_the_record_to_publish() {
    let config = format!(
        "{}{}[admin]\nsocket = \"var/admin.sock\"\n[dkim]\nalgorithm = \"ed25519\"\n[[identity]]\nname = \"example.test\"\n[[identity]]\nname = \"news@example.test\"\n",
        smtp_section(""),
        catch_all_route("127.0.0.1:9".parse().unwrap())
    );
    let relay = TestRelay::start(&config).await;
    let path = relay.dir.path().join("poolrelay.toml");
    let path = path.to_str().unwrap().to_string();
    let loaded = poolrelay::config::load(std::path::Path::new(&path)).unwrap();
    let identity = loaded
        .registry
        .identities()
        .get("example.test")
        .unwrap()
        .clone();
    let name = identity.dns_record_name().unwrap();
    let value = identity.dkim.unwrap().key.dns_record_value();
    assert!(value.starts_with("v=DKIM1; k=ed25519; p="), "{value}");
    let record = format!("{name} TXT \"{value}\"");

    let (ok, out, err) = tokio::task::spawn_blocking({
        let path = path.clone();
        move || poolrelay(&["check-config", "--config", &path])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains(&record), "check-config shows {record}:\n{out}");

    let (ok, out, err) = tokio::task::spawn_blocking({
        let path = path.clone();
        move || poolrelay(&["identities", "list", "--config", &path])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains("example.test") && out.contains("DOMAIN"),
        "{out}"
    );
    assert!(
        out.contains("news@example.test") && out.contains("EMAIL_ADDRESS"),
        "{out}"
    );

    let (ok, out, err) = tokio::task::spawn_blocking({
        let path = path.clone();
        move || poolrelay(&["identities", "show", "example.test", "--config", &path])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains(&format!("publish: {record}")), "{out}");
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        poolrelay(&["identities", "show", "nope.test", "--config", &path])
    })
    .await
    .unwrap();
    assert!(!ok && err.contains("NotFoundException"), "{err}");
    relay.stop().await;
}

#[test]
fn a_key_that_cannot_be_used_is_a_config_error_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.pem"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let config = format!(
        "{}[[identity]]\nname = \"a.test\"\ndkim_selector = \"s1\"\ndkim_key = \"bad.pem\"\n\n[[identity]]\nname = \"b.test\"\ndkim_selector = \"s1\"\ndkim_key = \"missing.pem\"\n\n[[identity]]\nname = \"c.test\"\ndkim_key = \"bad.pem\"\n\n[[identity]]\nname = \"not a domain\"\n\n[[identity]]\nname = \"d.test\"\nconfiguration_set = \"nope\"\n",
        smtp_section("")
    );
    let path = dir.path().join("poolrelay.toml");
    std::fs::write(&path, &config).unwrap();
    let (ok, _, err) = poolrelay(&["check-config", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    let line_of = |needle: &str| {
        config
            .lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap()
    };
    for (line, says) in [
        (
            line_of("dkim_key = \"bad.pem\""),
            "not an RSA or Ed25519 private key",
        ),
        (line_of("missing.pem"), "cannot read"),
        (
            line_of("name = \"c.test\"") + 1,
            "dkim_key needs dkim_selector",
        ),
        (
            line_of("not a domain"),
            "is not a domain or an email address",
        ),
        (
            line_of("configuration_set = \"nope\""),
            "configuration set \"nope\" does not exist",
        ),
    ] {
        let wanted = format!("poolrelay.toml:{line}:");
        assert!(
            err.lines().any(|l| l.contains(&wanted) && l.contains(says)),
            "line {line} says {says:?}:\n{err}"
        );
    }
}
