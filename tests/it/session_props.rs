//! The inbound session's invariants under random command sequences (proptest, no sockets):
//! it never panics, every line it writes is a well-formed reply, it answers each command once
//! and in order, and it never says 354 unless a MAIL and at least one RCPT were accepted since
//! the last reset.

use std::sync::{Arc, OnceLock};

use poolrelay::inbound::InboundContext;
use poolrelay::inbound::harness;
use proptest::prelude::*;

fn context() -> &'static Arc<InboundContext> {
    static CONTEXT: OnceLock<Arc<InboundContext>> = OnceLock::new();
    CONTEXT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("poolrelay-props-{}", std::process::id()));
        harness::context(&dir).expect("a harness context")
    })
}

fn command() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("EHLO client.test".to_string()),
        Just("HELO client.test".to_string()),
        Just("MAIL FROM:<a@example.test>".to_string()),
        Just("MAIL FROM:<a@example.test> SIZE=99999999999".to_string()),
        Just("RCPT TO:<b@example.test>".to_string()),
        Just("RCPT TO:<\"q r\"@example.test>".to_string()),
        Just("RCPT TO:<nodomain>".to_string()),
        Just("RSET".to_string()),
        Just("NOOP".to_string()),
        Just("VRFY x".to_string()),
        Just("DATA".to_string()),
        Just("BDAT 10 LAST".to_string()),
        Just("AUTH PLAIN".to_string()),
        Just("STARTTLS".to_string()),
        "[ -~]{0,40}",
        "[\\x00-\\xff]{0,20}".prop_map(|s| s.replace(['\r', '\n'], "")),
        Just("X".repeat(600)),
    ]
}

/// Replays the dialogue: the commands and the replies, one each, in order.
fn check_dialogue(commands: &[String], transcript: &harness::Transcript) {
    let finals: Vec<&String> = transcript
        .lines
        .iter()
        .filter(|l| l.as_bytes().get(3) == Some(&b' ') || l.len() == 5)
        .collect();
    for line in &transcript.lines {
        let bytes = line.as_bytes();
        assert!(
            bytes.len() >= 5
                && bytes[..3].iter().all(u8::is_ascii_digit)
                && (bytes[3] == b' ' || bytes[3] == b'-')
                && line.ends_with("\r\n")
                && !line[..line.len() - 2].contains(['\r', '\n']),
            "malformed reply line {line:?}"
        );
    }
    // One reply per command, plus at most one farewell (421 after too many errors).
    assert!(
        finals.len() <= commands.len() + 1,
        "{commands:?} {finals:?}"
    );
    if !transcript.stopped {
        assert_eq!(finals.len(), commands.len(), "{commands:?} {finals:?}");
    }
    let (mut mail, mut recipients) = (false, 0);
    for (command, reply) in commands.iter().zip(&finals) {
        let verb = command.get(..4).unwrap_or_default().to_ascii_uppercase();
        let ok = reply.starts_with('2');
        match verb.as_str() {
            "EHLO" | "HELO" | "RSET" if ok => (mail, recipients) = (false, 0),
            "MAIL" if ok => (mail, recipients) = (true, 0),
            "RCPT" if ok => recipients += 1,
            _ => {}
        }
        if reply.starts_with("354") {
            assert!(
                mail && recipients > 0,
                "354 without an accepted MAIL and RCPT: {commands:?} {finals:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_session_answers_each_command_once_and_in_order(
        commands in prop::collection::vec(command(), 1..30),
        one_read in any::<bool>(),
    ) {
        let lines: Vec<String> = commands.iter().map(|c| format!("{c}\r\n")).collect();
        let transcript = if one_read {
            let all = lines.concat();
            harness::run(context(), &[all.as_bytes()])
        } else {
            let chunks: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
            harness::run(context(), &chunks)
        };
        check_dialogue(&commands, &transcript);
    }
}
