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

/// One HTTP/1.1 exchange over a fresh connection: the status line and headers, and the body.
fn http(addr: &str, request: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("console listening");
    stream.write_all(request.as_bytes()).expect("request sent");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer read");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.to_string(), body.to_string())
}

#[test]
fn the_demo_with_console_keeps_running_and_its_password_signs_in() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_poolrelay"))
        .args(["demo", "--console", "--config", "config/poolrelay.toml"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the demo starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let (mut url, mut password) = (String::new(), String::new());
    for line in lines.by_ref() {
        let line = line.expect("a line");
        if let Some(rest) = line.strip_prefix("console: http://") {
            url = rest.trim_end_matches("/console/").to_string();
        }
        if let Some(rest) = line.split("one-time password ").nth(1) {
            password = rest.trim().to_string();
            break;
        }
    }
    assert!(!url.is_empty() && !password.is_empty(), "no console line");
    let form = format!("username=admin&password={password}");
    let (head, _) = http(
        &url,
        &format!(
            "POST /console/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        ),
    );
    assert!(head.starts_with("HTTP/1.1 303"), "{head}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    let (head, body) = http(
        &url,
        &format!(
            "GET /console/overview HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.contains("Per pool") && body.contains("<svg"), "{body}");
    // SAFETY: kill with a pid we started and still own.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().expect("the demo stops");
    assert!(status.success(), "{status}");
    let example = std::fs::read_to_string("config/poolrelay.toml").expect("example config");
    assert!(
        !example.contains("[[admin.user]]"),
        "the example config was not touched"
    );
}
