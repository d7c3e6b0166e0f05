//! The Debian package (`pkg/build-deb`, cargo-deb): built from the binary `cargo test` made, its
//! contents listed with `dpkg-deb -c`, its unit checked by `systemd-analyze verify` and scored by
//! `systemd-analyze security`, checked by lintian, and its files unpacked into a temporary root where the packaged
//! binary runs `--version` and `check-config` on the packaged config.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::privilege_missing;

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("the command runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn has_command(name: &str, version_flag: &str) -> bool {
    Command::new(name)
        .arg(version_flag)
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Builds the package into `out` from the debug binary and returns its path.
fn build_package(out: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"));
    run(Command::new(source.join("pkg/build-deb"))
        .args(["--profile", "dev", "--no-build", "--output"])
        .arg(out)
        .current_dir(source));
    let mut debs: Vec<PathBuf> = std::fs::read_dir(out)
        .expect("the output folder")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "one package: {debs:?}");
    let deb = debs.remove(0);
    let name = deb.file_name().unwrap_or_default().to_string_lossy();
    let prefix = format!("poolrelay_{}-1_", env!("CARGO_PKG_VERSION"));
    assert!(name.starts_with(&prefix), "{name}");
    deb
}

#[test]
fn the_debian_package_installs_a_relay_its_unit_man_pages_and_completions() {
    if !has_command("cargo-deb", "--version") {
        privilege_missing(
            "build the Debian package without cargo-deb (cargo install --locked cargo-deb)",
        );
        return;
    }
    if !has_command("dpkg-deb", "--version") {
        privilege_missing("inspect a Debian package without dpkg-deb");
        return;
    }
    let work = tempfile::tempdir().expect("temp dir");
    let deb = build_package(&work.path().join("out"));

    let listing = text(&run(Command::new("dpkg-deb").arg("-c").arg(&deb)));
    let files: Vec<&str> = listing
        .lines()
        .filter_map(|line| line.split_whitespace().last())
        .collect();
    for wanted in [
        "./usr/bin/poolrelay",
        "./etc/poolrelay/poolrelay.toml",
        "./etc/logrotate.d/poolrelay",
        "./usr/lib/systemd/system/poolrelay.service",
        "./usr/share/man/man8/poolrelay.8.gz",
        "./usr/share/man/man8/poolrelay-serve.8.gz",
        "./usr/share/man/man8/poolrelay-check-config.8.gz",
        "./usr/share/man/man5/poolrelay.toml.5.gz",
        "./usr/share/bash-completion/completions/poolrelay",
        "./usr/share/zsh/vendor-completions/_poolrelay",
        "./usr/share/fish/vendor_completions.d/poolrelay.fish",
        "./usr/share/doc/poolrelay/copyright",
    ] {
        assert!(files.contains(&wanted), "{wanted} missing:\n{listing}");
    }

    let control = work.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let read = |name: &str| std::fs::read_to_string(control.join(name)).unwrap_or_default();
    assert_eq!(
        read("conffiles").lines().collect::<Vec<_>>(),
        [
            "/etc/poolrelay/poolrelay.toml",
            "/etc/logrotate.d/poolrelay"
        ]
    );
    let postinst = read("postinst");
    assert!(postinst.contains("adduser --system"), "{postinst}");
    assert!(postinst.contains("/var/spool/poolrelay"), "{postinst}");
    let postrm = read("postrm");
    assert!(
        postrm.contains("\"purge\"") && postrm.contains("rm -rf /var/spool/poolrelay"),
        "{postrm}"
    );

    let root = work.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    check_unpacked(&root);
    check_unit(&root);
    check_lint(&deb);
}

/// Debian's own package checker: no error or warning (an initial upload closing no Debian bug
/// is normal for a package built outside Debian).
fn check_lint(deb: &Path) {
    if !has_command("lintian", "--version") {
        privilege_missing("check the package without lintian (Debian package lintian)");
        return;
    }
    let output = Command::new("lintian")
        .args([
            "--fail-on",
            "error,warning",
            "--suppress-tags",
            "initial-upload-closes-no-bugs",
            "--tag-display-limit",
            "0",
        ])
        .arg(deb)
        .output()
        .expect("lintian runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "lintian:\n{report}");
    assert!(
        !report
            .lines()
            .any(|l| l.starts_with("E:") || l.starts_with("W:")),
        "{report}"
    );
}

/// The packaged binary on the packaged config, its man page and completions.
fn check_unpacked(root: &Path) {
    let binary = root.join("usr/bin/poolrelay");
    let version = text(&run(Command::new(&binary).arg("--version")));
    assert!(
        version.starts_with(&format!("poolrelay {} (git ", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let config = root.join("etc/poolrelay/poolrelay.toml");
    let checked = text(&run(Command::new(&binary)
        .args(["check-config", "--quiet", "--config"])
        .arg(&config)));
    assert_eq!(checked, format!("{}: ok\n", config.display()));
    // Without --config, away from a source checkout, commands use the installed path.
    let help = text(&run(Command::new(&binary)
        .args(["check-config", "--help"])
        .current_dir(root)));
    assert!(help.contains("/etc/poolrelay/poolrelay.toml"), "{help}");

    let page = text(&run(Command::new("gzip")
        .arg("-dc")
        .arg(root.join("usr/share/man/man8/poolrelay.8.gz"))));
    assert!(page.contains(".TH poolrelay 8"), "{page}");
    let bash =
        std::fs::read_to_string(root.join("usr/share/bash-completion/completions/poolrelay"))
            .expect("bash completion");
    assert!(bash.contains("check-config") && bash.contains("_poolrelay()"));
}

/// `systemd-analyze verify` on the unit (its commands pointed at the unpacked binary, which is
/// not installed here), and its `security` exposure score.
fn check_unit(root: &Path) {
    if !has_command("systemd-analyze", "--version") {
        privilege_missing("check the unit without systemd-analyze (Debian package systemd)");
        return;
    }
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/poolrelay.service"))
        .expect("the unit");
    for directive in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "User=poolrelay",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/spool/poolrelay",
        "NoNewPrivileges=yes",
        "SystemCallFilter=@system-service",
        "LimitNOFILE=",
    ] {
        assert!(unit.contains(directive), "{directive} missing:\n{unit}");
    }
    let units = root.join("verify");
    std::fs::create_dir_all(&units).expect("folder");
    let copy = units.join("poolrelay.service");
    let binary = root.join("usr/bin/poolrelay");
    std::fs::write(
        &copy,
        unit.replace("/usr/bin/poolrelay", &binary.to_string_lossy()),
    )
    .expect("unit copy");
    let verified = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy));
    let complaints = String::from_utf8_lossy(&verified.stderr);
    assert!(complaints.trim().is_empty(), "{complaints}");

    let security = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&copy));
    let report = text(&security);
    let score: f64 = report
        .lines()
        .find_map(|line| line.split("poolrelay.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("an exposure score in:\n{report}"));
    // 0 is fully locked down, 10 is unprotected; the README states the packaged unit's score.
    assert!(score <= 2.0, "exposure {score}:\n{report}");
}
