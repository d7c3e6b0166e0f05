//! Reports are internet input: forged and expired tokens, truncated and deeply nested MIME, a
//! 50 MB report, non-UTF-8 text, reports about mail the relay never sent. None may crash the
//! relay, suppress an address, or hold up other sessions; the unusable ones are kept aside.

use poolrelay::return_path::ReturnPath;

use super::*;

const VICTIM: &str = "victim@dest.test";

fn arf_about(mail_from: &str, message_id: &str) -> Vec<u8> {
    as_data(
        format!(
            "From: fbl@receiver.test\nTo: {FEEDBACK_ADDRESS}\nSubject: report\nMIME-Version: 1.0\n\
             Content-Type: multipart/report; report-type=feedback-report; boundary=\"b\"\n\n\
             --b\nContent-Type: text/plain\n\nreport\n--b\nContent-Type: message/feedback-report\n\n\
             Feedback-Type: abuse\nVersion: 1\nOriginal-Mail-From: <{mail_from}>\nOriginal-Rcpt-To: <{VICTIM}>\n\n\
             --b\nContent-Type: text/rfc822-headers\n\nMessage-ID: {message_id}\nReturn-Path: <{mail_from}>\n\n--b--\n"
        )
        .as_bytes(),
    )
}

/// A DSN cut off inside its delivery-status part, before any status.
fn truncated(to: &str) -> Vec<u8> {
    as_data(
        format!(
            "From: MAILER-DAEMON@mx.dest.test\nTo: {to}\nMIME-Version: 1.0\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"cut\"\n\n\
             --cut\nContent-Type: text/plain\n\nYour message could not be\n--cut\n\
             Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.dest.test\n\nFinal-Recipient: rfc822; {VICTIM}\nAction: fai"
        )
        .as_bytes(),
    )
}

/// Multiparts nested `depth` deep, with no report inside.
fn nested(to: &str, depth: usize) -> Vec<u8> {
    let mut text = format!("From: x@mx.test\nTo: {to}\nMIME-Version: 1.0\n");
    for level in 0..depth {
        text.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"n{level}\"\n\n--n{level}\n"
        ));
    }
    text.push_str("Content-Type: text/plain\n\nsomething went wrong\n");
    for level in (0..depth).rev() {
        text.push_str(&format!("--n{level}--\n"));
    }
    as_data(text.as_bytes())
}

/// A 50 MB report: an ARF whose original message is one huge base64 attachment.
fn huge() -> Vec<u8> {
    let mut text = format!(
        "From: fbl@receiver.test\nTo: {FEEDBACK_ADDRESS}\nMIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"h\"\n\n\
         --h\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\n\n--h\n\
         Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
    );
    let line = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\n";
    text.push_str(&line.repeat(50 * 1024 * 1024 / line.len()));
    text.push_str("--h--\n");
    as_data(text.as_bytes())
}

#[tokio::test]
async fn hostile_reports_suppress_nothing_and_stall_nobody() {
    let (sink, relay, dir, socket) = start_feedback_relay().await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send_accepted(
            "app@sender.test",
            &[VICTIM],
            &as_data(b"Message-ID: <v1@sender.test>\nSubject: x\n\nx\n"),
        )
        .await;
    let delivered = sink.wait_for(1, WAIT).await;
    let return_path = delivered[0].sender.clone();

    // Forged and expired tokens are refused at RCPT.
    let mut outsider = outsider_in_mail(relay.addr, "").await;
    let (local, _) = return_path.split_once('@').expect("an address");
    let flipped = if local.ends_with('a') { 'b' } else { 'a' };
    let forged = format!("{}{flipped}@{BOUNCE_DOMAIN}", &local[..local.len() - 1]);
    let reply = outsider.command(&format!("RCPT TO:<{forged}>")).await;
    assert!(reply.starts_with("550 5.1.1"), "{reply}");
    let secret = std::fs::read(dir.join("var/bounce.key")).expect("the generated secret");
    let old_id = format!(
        "{:016x}-000001",
        (poolrelay::spool::unix_now() - 90 * 86_400) * 1_000_000
    );
    let expired = ReturnPath::new(BOUNCE_DOMAIN, &secret, 30 * 86_400)
        .sender_for(&old_id, 0)
        .expect("a token");
    let reply = outsider.command(&format!("RCPT TO:<{expired}>")).await;
    assert!(
        reply.starts_with("550 5.1.1") && reply.contains("older"),
        "{reply}"
    );
    let reply = outsider
        .command(&format!("RCPT TO:<b-garbage@{BOUNCE_DOMAIN}>"))
        .await;
    assert!(reply.starts_with("550 5.1.1"), "{reply}");

    // Broken reports for a real token are accepted (they are mail for the relay) but decide
    // nothing.
    for (what, content) in [
        ("truncated", truncated(&return_path)),
        ("nested", nested(&return_path, 300)),
    ] {
        let reply = send_report(relay.addr, &return_path, &content).await;
        assert!(reply.starts_with("250"), "{what}: {reply}");
    }
    let mut non_utf8 = b"From: x@mx.test\nTo: fbl@example.test\nSubject: \xff\xfe\n\n\xc3\x28 550 5.1.1 \x80\x81\n".to_vec();
    non_utf8.extend_from_slice(&[0xf0, 0x28, 0x8c, 0x28, b'\n']);
    let reports = [
        ("non-UTF-8", as_data(&non_utf8)),
        (
            "never sent",
            arf_about("someone@elsewhere.test", "<never-sent@elsewhere.test>"),
        ),
        ("forged token", arf_about(&forged, "<v1@sender.test>")),
    ];
    for (what, content) in &reports {
        let reply = send_report(relay.addr, FEEDBACK_ADDRESS, content).await;
        assert!(reply.starts_with("250"), "{what}: {reply}");
    }

    // A 50 MB report does not hold up another session.
    let big = tokio::spawn(async move { send_report(relay.addr, FEEDBACK_ADDRESS, &huge()).await });
    let (mut other, _) = RawClient::connect(relay.addr).await;
    other
        .send_accepted(
            "app@sender.test",
            &["second@dest.test"],
            &as_data(b"Subject: y\n\ny\n"),
        )
        .await;
    let reply = big.await.expect("the big report is sent");
    assert!(reply.starts_with("250"), "50 MB: {reply}");

    // The broken ones for the token are Undetermined bounces; the rest are kept aside.
    let undetermined = eventually(|| {
        let found: Vec<_> = events(&dir)
            .into_iter()
            .filter(|e| is_bounce(e, VICTIM, "Undetermined"))
            .collect();
        (found.len() == 2).then_some(found)
    })
    .await;
    assert!(undetermined.is_some(), "events: {:#?}", events(&dir));
    let unmatched = eventually(|| {
        let kept = relay.spool_files("feedback-unmatched");
        (kept.len() == 4).then_some(kept)
    })
    .await;
    assert!(
        unmatched.is_some(),
        "kept: {:?}",
        relay.spool_files("feedback-unmatched")
    );
    let (_, metrics) = http::get_text(&socket, "/metrics").await;
    // Metrics are process-wide and other tests run beside this one: at least these.
    let counted = |reason: &str| -> u64 {
        let prefix = format!("poolrelay_feedback_unmatched_total{{reason=\"{reason}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str())?.parse().ok())
            .unwrap_or(0)
    };
    assert!(
        counted("unknown_message") >= 3 && counted("bad_token") >= 1,
        "{metrics}"
    );
    assert!(suppression_list(&socket).await.is_empty());
    assert!(
        relay
            .spool_files("feedback")
            .iter()
            .all(|f| f.starts_with('.')),
        "inbox drained"
    );
    // Still serving.
    let (mut last, _) = RawClient::connect(relay.addr).await;
    last.send_accepted("app@sender.test", &[VICTIM], &as_data(b"Subject: z\n\nz\n"))
        .await;
    relay.stop().await;
}

#[tokio::test]
async fn unmatched_reports_kept_are_capped_by_max_unmatched() {
    let sink = start_sink().await;
    let config = feedback_config(sink.addr(), "").replace(
        &format!("address = \"{FEEDBACK_ADDRESS}\"\n"),
        &format!("address = \"{FEEDBACK_ADDRESS}\"\nmax_unmatched = 3\n"),
    );
    assert!(config.contains("max_unmatched = 3"), "{config}");
    let relay = TestRelay::start(&config).await;
    let unmatched = relay.spool_dir().join("feedback-unmatched");
    let count = || std::fs::read_dir(&unmatched).map_or(0, |d| d.count());
    // Anyone may write to the feedback address: eight reports about nothing the relay sent.
    for n in 0..8 {
        let junk = as_data(format!("From: x@mx.test\nSubject: junk {n}\n\nnothing\n").as_bytes());
        let reply = send_report(relay.addr, FEEDBACK_ADDRESS, &junk).await;
        assert!(reply.starts_with("250"), "{reply}");
        // Pruned right after each one is set aside (every max_unmatched / 10, at least 1).
        assert!(count() <= 4, "{} reports kept", count());
    }
    // Once the inbox is empty, the three newest are what is kept.
    let inbox = relay.spool_dir().join("feedback");
    let drained = eventually(|| {
        let waiting = std::fs::read_dir(&inbox).map_or(0, |d| d.count());
        (waiting == 0 && count() == 3).then_some(())
    })
    .await;
    assert!(drained.is_some(), "{} kept", count());
    let mut kept: Vec<String> = std::fs::read_dir(&unmatched)
        .expect("folder")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).unwrap_or_default())
        .collect();
    kept.sort();
    for n in 5..8 {
        assert!(
            kept.iter()
                .any(|report| report.contains(&format!("junk {n}"))),
            "junk {n} missing: {kept:?}"
        );
    }
}
