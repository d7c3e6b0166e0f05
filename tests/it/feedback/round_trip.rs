//! The whole loop: a campaign goes out through the relay with return paths naming each
//! recipient; the next hop refuses one recipient at RCPT; bounces and complaints in Postfix,
//! Gmail, Microsoft, Exim and ARF layouts come back from outside; the relay turns them into SES
//! events, suppresses exactly the hard-bounced and complained addresses, forwards each report
//! to the sender through the original pool, and the next campaign skips the suppressed.

use std::collections::BTreeMap;

use super::*;

const SENDER: &str = "app@sender.test";
const CAMPAIGN: [&str; 7] = [
    "alice@dest.test",
    "bob@dest.test",
    "carol@dest.test",
    "dave@dest.test",
    "frank@dest.test",
    "harry@dest.test",
    "reject-gina@dest.test",
];
const SINGLE: &str = "erin@dest.test";

fn campaign_message(set: Option<&str>, message_id: &str) -> Vec<u8> {
    let set = set
        .map(|s| format!("X-SES-CONFIGURATION-SET: {s}\n"))
        .unwrap_or_default();
    as_data(
        format!(
            "{set}Message-ID: {message_id}\nFrom: App <{SENDER}>\nSubject: Campaign\n\nHello.\n"
        )
        .as_bytes(),
    )
}

/// Return path used for each recipient, as the sink saw it.
fn return_paths(sink: &poolrelay::sink::Sink) -> BTreeMap<String, String> {
    sink.messages()
        .into_iter()
        .filter(|m| !m.sender.is_empty())
        .map(|m| (m.recipients[0].clone(), m.sender.clone()))
        .collect()
}

#[tokio::test]
async fn bounces_and_complaints_become_events_suppression_and_forwarded_reports() {
    let (sink, relay, dir, socket) = start_feedback_relay().await;

    // An outsider may not relay, but may send to the relay's own addresses (below).
    let mut outsider = outsider_in_mail(relay.addr, "x@outside.test").await;
    let denied = outsider.command("RCPT TO:<someone@dest.test>").await;
    assert!(denied.starts_with("554 5.7.1"), "{denied}");
    // Mail for the relay and mail to relay do not share a transaction.
    let (mut mixed, _) = RawClient::connect(relay.addr).await;
    assert!(mixed.command("EHLO app.test").await.starts_with("250"));
    assert!(
        mixed
            .command("MAIL FROM:<app@sender.test>")
            .await
            .starts_with("250")
    );
    assert!(
        mixed
            .command("RCPT TO:<someone@dest.test>")
            .await
            .starts_with("250")
    );
    let second = mixed
        .command(&format!("RCPT TO:<{FEEDBACK_ADDRESS}>"))
        .await;
    assert!(second.starts_with("452 4.5.3"), "{second}");

    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send_accepted(
            SENDER,
            &CAMPAIGN,
            &campaign_message(Some("marketing"), "<campaign-a@sender.test>"),
        )
        .await;
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send_accepted(
            SENDER,
            &[SINGLE],
            &campaign_message(None, "<single-b@sender.test>"),
        )
        .await;
    // Six campaign recipients and erin, each with a return path (the DSN for reject-gina, from
    // <>, may arrive before erin's message: count return paths, not messages).
    let arrived = eventually(|| (return_paths(&sink).len() >= 7).then_some(())).await;
    assert!(arrived.is_some(), "{:?}", return_paths(&sink));

    // One transaction per recipient, each with its own signed return path; From: untouched.
    let paths = return_paths(&sink);
    assert_eq!(paths.len(), 7, "{paths:?}");
    let delivered: Vec<_> = sink
        .messages()
        .into_iter()
        .filter(|m| !m.sender.is_empty())
        .collect();
    for (recipient, path) in &paths {
        assert!(
            path.starts_with("b-") && path.ends_with(&format!("@{BOUNCE_DOMAIN}")),
            "{recipient}: {path}"
        );
    }
    let distinct: std::collections::BTreeSet<_> = paths.values().collect();
    assert_eq!(distinct.len(), 7);
    for message in &delivered {
        let text = String::from_utf8_lossy(&message.content);
        assert!(text.contains(&format!("From: App <{SENDER}>")), "{text}");
        let expected = if message.recipients[0] == SINGLE {
            "127.0.0.2"
        } else {
            "127.0.0.3"
        };
        assert_eq!(peer_ip(message).to_string(), expected);
    }

    // The next hop's own 550 at RCPT is a hard bounce: suppressed at once.
    wait_for_event(&dir, |e| {
        is_bounce(e, "reject-gina@dest.test", "NoEmail")
            || is_bounce(e, "reject-gina@dest.test", "General")
    })
    .await;

    // Reports arrive from outside, in the layouts real servers use.
    // (fixture, recipient it is about, sent to the feedback-loop address rather than the return
    // path, original Message-ID). Reports arriving moments after delivery still match: the relay
    // flushes its record of sent mail before calling a message unknown.
    let campaign_id = "<campaign-a@sender.test>";
    let reports = [
        (
            "postfix-user-unknown.eml",
            "alice@dest.test",
            false,
            campaign_id,
        ),
        ("gmail-inbox-full.eml", "bob@dest.test", false, campaign_id),
        (
            "exim-unrouteable.eml",
            "carol@dest.test",
            false,
            campaign_id,
        ),
        ("arf-abuse.eml", "dave@dest.test", true, campaign_id),
        ("postfix-delayed.eml", "frank@dest.test", false, campaign_id),
        (
            "microsoft-recipient-not-found.eml",
            "harry@dest.test",
            false,
            campaign_id,
        ),
        (
            "arf-headers-only.eml",
            SINGLE,
            true,
            "<single-b@sender.test>",
        ),
    ];
    for (name, rcpt, to_feedback_address, message_id) in reports {
        let return_path = paths[rcpt].as_str();
        let to = if to_feedback_address {
            FEEDBACK_ADDRESS
        } else {
            return_path
        };
        let fill = [
            ("{{TO}}", to),
            ("{{RP}}", return_path),
            ("{{RCPT}}", rcpt),
            ("{{MSGID}}", message_id),
        ];
        let reply = send_report(relay.addr, to, &fixture(name, &fill)).await;
        assert!(reply.starts_with("250"), "{name}: {reply}");
    }

    wait_for_event(&dir, |e| {
        is_bounce(e, "alice@dest.test", "NoEmail") && e["bounce"]["bounceType"] == "Permanent"
    })
    .await;
    let bob = wait_for_event(&dir, |e| is_bounce(e, "bob@dest.test", "MailboxFull")).await;
    assert_eq!(bob["bounce"]["bounceType"], "Transient");
    assert_eq!(bob["bounce"]["reportingMTA"], "googlemail.com");
    let carol = wait_for_event(&dir, |e| is_bounce(e, "carol@dest.test", "General")).await;
    assert_eq!(carol["bounce"]["bounceType"], "Permanent");
    let frank = wait_for_event(&dir, |e| is_bounce(e, "frank@dest.test", "General")).await;
    assert_eq!(frank["bounce"]["bounceType"], "Transient");
    assert_eq!(frank["bounce"]["bouncedRecipients"][0]["action"], "delayed");
    let harry = wait_for_event(&dir, |e| is_bounce(e, "harry@dest.test", "NoEmail")).await;
    assert_eq!(harry["bounce"]["bouncedRecipients"][0]["status"], "5.1.10");
    // The original mail object: message id, set, pool, outgoing IP.
    assert_eq!(
        harry["mail"]["tags"]["ses:configuration-set"][0],
        "marketing"
    );
    assert_eq!(harry["mail"]["tags"]["poolrelay:pool"][0], "bulk");
    assert_eq!(harry["mail"]["tags"]["ses:outgoing-ip"][0], "127.0.0.3");
    assert!(harry["bounce"]["feedbackId"].is_string());
    let dave = wait_for_event(&dir, |e| {
        e["eventType"] == "Complaint"
            && e["complaint"]["complainedRecipients"][0]["emailAddress"] == "dave@dest.test"
    })
    .await;
    assert_eq!(dave["complaint"]["complaintFeedbackType"], "abuse");
    assert_eq!(dave["complaint"]["userAgent"], "SomeGenerator/1.0");
    assert!(dave["complaint"]["arrivalDate"].is_string());
    let erin = wait_for_event(&dir, |e| {
        e["eventType"] == "Complaint"
            && e["complaint"]["complainedRecipients"][0]["emailAddress"] == SINGLE
    })
    .await;
    assert_eq!(
        erin["mail"]["tags"]["poolrelay:pool"][0],
        "ses-default-dedicated-pool"
    );

    // Exactly the hard-bounced and complained addresses are suppressed.
    let expected = [
        "alice@dest.test",
        "carol@dest.test",
        "dave@dest.test",
        "erin@dest.test",
        "harry@dest.test",
        "reject-gina@dest.test",
    ];
    let listed = eventually_async(|| async {
        let list = suppression_list(&socket).await;
        (list == expected).then_some(list)
    })
    .await;
    assert!(
        listed.is_some(),
        "suppressed: {:?}",
        suppression_list(&socket).await
    );
    let (status, dave_entry) = http::call(
        &socket,
        "GET",
        "/v2/email/suppression/addresses/dave%40dest.test",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(dave_entry["SuppressedDestination"]["Reason"], "COMPLAINT");
    assert!(dave_entry["SuppressedDestination"]["Attributes"]["MessageId"].is_string());

    // Each report was forwarded to the sender from <>, through the pool its message used.
    let forwarded = eventually(|| {
        let to_sender: Vec<_> = sink
            .messages()
            .into_iter()
            .filter(|m| m.sender.is_empty() && m.recipients == [SENDER])
            .collect();
        // Every report, and the relay's own bounce for reject-gina.
        (to_sender.len() > reports.len()).then_some(to_sender)
    })
    .await
    .expect("every report and the relay's own bounce reach the sender");
    let from_ip = |needle: &str| {
        forwarded
            .iter()
            .find(|m| String::from_utf8_lossy(&m.content).contains(needle))
            .map(|m| peer_ip(m).to_string())
    };
    assert_eq!(
        from_ip("Undelivered Mail Returned to Sender").as_deref(),
        Some("127.0.0.3")
    );
    assert_eq!(from_ip("JMRP/2.0").as_deref(), Some("127.0.0.2"));

    // The next campaign: suppressed recipients are never attempted, the others are delivered.
    let attempts_before = sink.rcpt_attempts().len();
    let mut next: Vec<&str> = CAMPAIGN.to_vec();
    next.push(SINGLE);
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client
        .send_accepted(
            SENDER,
            &next,
            &campaign_message(Some("marketing"), "<campaign-c@sender.test>"),
        )
        .await;
    // One Bounce event for the suppressed recipients of that message, as SES sends it.
    let stopped = wait_for_event(&dir, |e| {
        e["bounce"]["bounceSubType"] == "OnAccountSuppressionList"
            && e["mail"]["destination"]
                .as_array()
                .is_some_and(|d| d.len() == 8)
    })
    .await;
    assert_eq!(stopped["bounce"]["bounceType"], "Permanent");
    let mut stopped: Vec<&str> = stopped["bounce"]["bouncedRecipients"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["emailAddress"].as_str())
        .collect();
    stopped.sort();
    assert_eq!(stopped, expected);
    let later = eventually(|| {
        let attempts: Vec<String> = sink.rcpt_attempts()[attempts_before..]
            .iter()
            .map(|a| a.recipient.clone())
            .collect();
        let campaign: Vec<&String> = attempts.iter().filter(|r| r.as_str() != SENDER).collect();
        (campaign.len() >= 2).then_some(attempts)
    })
    .await
    .expect("bob and frank are attempted");
    for address in expected {
        assert!(
            !later.iter().any(|r| r == address),
            "{address} was attempted: {later:?}"
        );
    }
    // The sender hears of the suppressed recipients in a DSN.
    let dsn = eventually(|| {
        sink.messages().into_iter().find(|m| {
            m.sender.is_empty() && String::from_utf8_lossy(&m.content).contains("suppression list")
        })
    })
    .await
    .expect("a DSN for the suppressed recipients");
    assert_eq!(dsn.recipients, [SENDER]);
    relay.stop().await;
}
