//! The command line's operator comforts: `--version` names the commit, `check-config --quiet`
//! says one line or fails, `completions SHELL` prints a script that knows the subcommands.

use std::process::{Command, Output};

fn poolrelay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_poolrelay"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("poolrelay runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn version_names_the_release_and_the_commit_it_was_built_from() {
    let output = poolrelay(&["--version"]);
    assert!(output.status.success());
    let text = stdout(&output);
    assert!(
        text.starts_with(&format!("poolrelay {} (git ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        Some(head) => assert!(text.contains(&format!("(git {head})")), "{text} vs {head}"),
        None => assert!(text.contains("(git unknown)"), "{text}"),
    }
}

#[test]
fn check_config_quiet_prints_one_line_or_fails_with_the_errors() {
    let output = poolrelay(&[
        "check-config",
        "--quiet",
        "--config",
        "config/poolrelay.toml",
    ]);
    assert!(output.status.success());
    assert_eq!(stdout(&output), "config/poolrelay.toml: ok\n");

    let dir = tempfile::tempdir().expect("temp dir");
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        "[smtp]\nlisten = [\"nowhere\"]\nhostname = \"x\"\n",
    )
    .expect("write");
    let output = poolrelay(&[
        "check-config",
        "--quiet",
        "--config",
        &broken.to_string_lossy(),
    ]);
    assert!(!output.status.success());
    assert_eq!(stdout(&output), "", "nothing on standard output");
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(errors.contains("broken.toml:2:"), "{errors}");
}

#[test]
fn completions_know_every_subcommand_for_each_shell() {
    for (shell, marker) in [
        ("bash", "_poolrelay()"),
        ("zsh", "#compdef poolrelay"),
        ("fish", "complete -c poolrelay"),
    ] {
        let output = poolrelay(&["completions", shell]);
        assert!(output.status.success(), "{shell}");
        let script = stdout(&output);
        assert!(script.contains(marker), "{shell}: {script}");
        for subcommand in ["serve", "check-config", "cluster", "suppression"] {
            assert!(script.contains(subcommand), "{shell} lacks {subcommand}");
        }
    }
    assert!(
        !poolrelay(&["completions", "tcsh"]).status.success(),
        "an unknown shell is refused"
    );
}

#[test]
fn man_pages_cover_the_relay_and_every_subcommand() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = poolrelay(&["man", "--dir", &dir.path().to_string_lossy()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let page = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    let main = page("poolrelay.8");
    assert!(main.contains(".TH poolrelay 8"), "{main}");
    assert!(
        main.contains("check\\-config"),
        "subcommands are listed: {main}"
    );
    let status = page("poolrelay-cluster-status.8");
    assert!(
        status.contains(".TH poolrelay-cluster-status 8"),
        "{status}"
    );
    assert!(status.contains("\\-\\-json"), "{status}");
    assert!(page("poolrelay-serve.8").contains("\\-\\-config"));
    let config = page("poolrelay.toml.5");
    assert!(config.contains(".TH poolrelay.toml 5"), "{config}");
    // The documented example, whole: its first and last sections.
    assert!(
        config.contains("\n[smtp]\n") && config.contains("# [[api.key]]"),
        "{config}"
    );
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("poolrelay.toml");
    let text =
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"relay.test\"\n[log]\nformat = \"json\"\n";
    std::fs::write(&config, text).expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_poolrelay"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("relay starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut accepting = None;
    use std::io::BufRead;
    for line in std::io::BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
    {
        let parsed: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
        assert!(
            parsed["timestamp"].is_string() && parsed["level"].is_string(),
            "{line}"
        );
        if parsed["fields"]["message"] == "poolrelay is accepting mail" {
            accepting = Some(parsed);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let accepting = accepting.expect("the start-up line");
    assert!(
        accepting["fields"]["listen"]
            .as_str()
            .unwrap_or_default()
            .contains("127.0.0.1"),
        "{accepting}"
    );

    std::fs::write(&config, text.replace("\"json\"", "\"yaml\"")).expect("config");
    let output = Command::new(env!("CARGO_BIN_EXE_poolrelay"))
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not \"text\" or \"json\""));
}

#[test]
fn init_writes_a_config_that_checks_and_never_overwrites_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = dir.path().join("etc");
    let output = poolrelay(&["init", "--dir", &target.to_string_lossy()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let config = target.join("poolrelay.toml");
    let written = std::fs::read_to_string(&config).expect("the config");
    let checked = poolrelay(&[
        "check-config",
        "--quiet",
        "--config",
        &config.to_string_lossy(),
    ]);
    assert!(
        checked.status.success(),
        "{}\n{written}",
        String::from_utf8_lossy(&checked.stderr)
    );

    std::fs::write(&config, "# edited by hand\n").expect("edit");
    let again = poolrelay(&["init", "--dir", &target.to_string_lossy()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwrites"));
    assert_eq!(
        std::fs::read_to_string(&config).expect("kept"),
        "# edited by hand\n"
    );
}
