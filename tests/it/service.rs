//! Running under systemd (`Type=notify`): the relay says READY=1 on `NOTIFY_SOCKET` only once its
//! listeners answer, announces reloads (SIGHUP) and shutdown (SIGTERM), and exits cleanly.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{KilledOnDrop, WAIT};

/// The next notification (`what` the test waits for): its `KEY=value` lines. On a timeout the
/// relay's log says why.
fn next_notification(socket: &UnixDatagram, what: &str, log: &Path) -> Vec<String> {
    let mut buffer = [0u8; 4096];
    let length = socket.recv(&mut buffer).unwrap_or_else(|error| {
        let log = std::fs::read_to_string(log).unwrap_or_default();
        panic!("no {what} notification ({error}); the relay's log:\n{log}")
    });
    String::from_utf8_lossy(&buffer[..length])
        .lines()
        .map(str::to_string)
        .collect()
}

fn signal(child: &KilledOnDrop, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.0.id()).expect("a pid");
    // SAFETY: kill(2) with a child's pid and a signal number has no memory effects.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "signal sent");
}

#[test]
fn the_relay_notifies_systemd_when_ready_reloading_and_stopping() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&socket_path).expect("notify socket");
    notify.set_read_timeout(Some(WAIT)).expect("timeout");
    let config = dir.path().join("poolrelay.toml");
    let log = dir.path().join("relay.log");
    std::fs::write(
        &config,
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"relay.test\"\n[spool]\ndir = \"spool\"\n\
         [events]\npath = \"events.jsonl\"\n",
    )
    .expect("config");
    let mut relay = KilledOnDrop(
        Command::new(env!("CARGO_BIN_EXE_poolrelay"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("NOTIFY_SOCKET", &socket_path)
            .env("RUST_LOG", "info")
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log file")))
            .spawn()
            .expect("relay starts"),
    );

    let ready = next_notification(&notify, "READY", &log);
    assert!(ready.contains(&"READY=1".to_string()), "{ready:?}");
    let status = ready
        .iter()
        .find_map(|line| line.strip_prefix("STATUS=accepting mail on "))
        .unwrap_or_else(|| panic!("a status naming the listener: {ready:?}"));
    let listener: SocketAddr = status.parse().expect("the listener's address");
    // READY means the listener answers now: no retry loop here.
    let mut client = TcpStream::connect(listener).expect("the listener accepts at READY");
    client.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut greeting = [0u8; 3];
    client.read_exact(&mut greeting).expect("a greeting");
    assert_eq!(&greeting, b"220");

    // logrotate moves the event log away, then reloads: the relay starts a new file.
    let events = dir.path().join("events.jsonl");
    assert!(events.exists(), "the event log is created at start");
    std::fs::rename(&events, dir.path().join("events.jsonl.1")).expect("rotate");
    signal(&relay, libc::SIGHUP);
    let reloading = next_notification(&notify, "RELOADING", &log);
    assert!(
        reloading.contains(&"RELOADING=1".to_string()),
        "{reloading:?}"
    );
    assert!(
        reloading.iter().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "systemd needs the reload's time: {reloading:?}"
    );
    let reloaded = next_notification(&notify, "READY after reload", &log);
    assert!(reloaded.contains(&"READY=1".to_string()), "{reloaded:?}");
    assert!(events.exists(), "the event log is opened again at its path");

    signal(&relay, libc::SIGTERM);
    let stopping = next_notification(&notify, "STOPPING", &log);
    assert!(stopping.contains(&"STOPPING=1".to_string()), "{stopping:?}");
    let status = relay.0.wait().expect("the relay exits");
    assert!(status.success(), "{status}");
}

/// The relay's stderr (a file) once it holds `wanted`, polled until [`WAIT`] runs out.
fn log_once_it_has(log: &Path, wanted: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(wanted) || std::time::Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn under_journald_log_lines_carry_priorities_instead_of_timestamps() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("poolrelay.toml");
    std::fs::write(
        &config,
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"relay.test\"\n[spool]\ndir = \"spool\"\n",
    )
    .expect("config");
    // systemd names the journal stream it gives as stderr by device and inode: the same file
    // is "the journal" only when JOURNAL_STREAM names it.
    for (journal, log_name) in [(true, "journal.log"), (false, "plain.log")] {
        let log = dir.path().join(log_name);
        let stderr = std::fs::File::create(&log).expect("log file");
        let metadata = stderr.metadata().expect("metadata");
        let stream = match journal {
            true => format!("{}:{}", metadata.dev(), metadata.ino()),
            false => format!("{}:{}", metadata.dev(), metadata.ino() + 1),
        };
        let mut relay = KilledOnDrop(
            Command::new(env!("CARGO_BIN_EXE_poolrelay"))
                .args(["serve", "--config"])
                .arg(&config)
                .env("JOURNAL_STREAM", stream)
                .env("RUST_LOG", "info")
                .stderr(Stdio::from(stderr))
                .spawn()
                .expect("relay starts"),
        );
        let text = log_once_it_has(&log, "poolrelay is accepting mail");
        relay.kill();
        let line = text
            .lines()
            .find(|line| line.contains("poolrelay is accepting mail"))
            .unwrap_or_else(|| panic!("the start-up line in:\n{text}"));
        match journal {
            true => assert!(line.starts_with("<6> INFO poolrelay::server:"), "{line}"),
            false => assert!(line.starts_with("20"), "a timestamp first: {line}"),
        }
    }
}
