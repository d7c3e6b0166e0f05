//! The README's first command: `poolrelay demo` on the example config succeeds and says what it
//! showed (every message from its pool, and a blocklisted IP's mail moving to its pool's other IP).

#[test]
fn the_demo_runs_on_the_example_config() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_poolrelay"))
        .args(["demo", "--config", "config/poolrelay.toml"])
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("0 from a wrong pool, 0 missing"),
        "{stdout}"
    );
    assert!(
        stdout.contains("127.0.0.4 is suspended for site 127.0.0.1"),
        "{stdout}"
    );
    assert!(stdout.contains("newsletter       127.0.0.5: 3"), "{stdout}");
    assert!(
        stdout.contains("every message left from an IP of its configuration set's pool"),
        "{stdout}"
    );
}
