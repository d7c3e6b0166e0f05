//! SendEmail (Simple, Raw, Template) and SendBulkEmail through boto3: each message arrives at
//! the sink from its configuration set's pool address, built as asked, with the request's
//! tags in its events; every refusal has SES's error type.

use std::time::Duration;

use serde_json::Value;

use super::{ADMIN_KEY, ADMIN_SECRET, api_relay_with, error, ok, python, run_script};
use crate::common::*;

/// The sink's message whose content has `Message-ID: <id@...>`.
fn message_with_id<'a>(
    messages: &'a [poolrelay::sink::SinkMessage],
    id: &str,
) -> &'a poolrelay::sink::SinkMessage {
    let needle = format!("<{id}@relay.test>");
    messages
        .iter()
        .find(|m| String::from_utf8_lossy(&m.content).contains(&needle))
        .unwrap_or_else(|| panic!("no message with Message-ID {needle}"))
}

fn events(dir: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("var/events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

#[tokio::test]
async fn simple_raw_template_and_bulk_mail_arrive_from_the_pool_with_tags() {
    let Some(python) = python() else { return };
    let (relay, endpoint, sink) = api_relay_with(
        "max_message_bytes = 200000",
        "[events]\npath = \"var/events.jsonl\"\n",
    )
    .await;
    let args = vec![endpoint, ADMIN_KEY.into(), ADMIN_SECRET.into()];
    let results = run_script(python, "send.py", args).await;
    let id_of = |name: &str| {
        ok(&results, name)["MessageId"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no MessageId"))
            .to_string()
    };
    let (simple, raw, templated) = (id_of("simple"), id_of("raw"), id_of("templated"));
    let bulk = ok(&results, "bulk")["BulkEmailEntryResults"].clone();
    assert_eq!(bulk[0]["Status"], "SUCCESS", "{bulk}");
    assert_eq!(bulk[1]["Status"], "SUCCESS", "{bulk}");
    assert_eq!(bulk[2]["Status"], "INVALID_PARAMETER", "{bulk}");
    let bulk_ids: Vec<String> = (0..2)
        .map(|i| bulk[i]["MessageId"].as_str().expect("id").to_string())
        .collect();

    let messages = sink.wait_for(5, Duration::from_secs(20)).await;
    assert_eq!(
        messages.len(),
        5,
        "simple, raw, templated and two bulk messages"
    );
    for message in &messages {
        assert_eq!(
            message.peer.ip(),
            ip("127.0.0.3"),
            "sent from send-pool's address"
        );
    }
    let simple_message = message_with_id(&messages, &simple);
    let mut recipients = simple_message.recipients.clone();
    recipients.sort();
    assert_eq!(
        recipients,
        [
            "bcc@example.test",
            "cc@example.test",
            "to1@example.test",
            "to2@example.test"
        ]
    );
    assert_eq!(simple_message.sender, "news@sender.test");
    let text = String::from_utf8_lossy(&simple_message.content);
    for expected in [
        "From: \"News Desk\" <news@sender.test>",
        "Reply-To: <replies@sender.test>",
        "X-Campaign: spring",
        "multipart/mixed",
        "multipart/alternative",
        "plain body",
        "<p>html body</p>",
        "filename=\"note.txt\"",
        "=?utf-8?",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    assert!(
        !text.to_ascii_lowercase().contains("bcc"),
        "Bcc is never shown:\n{text}"
    );
    assert_eq!(simple_message.violation, None);

    let raw_text = String::from_utf8_lossy(
        &message_with_id_or_subject(&messages, &raw, "raw via API").content,
    )
    .into_owned();
    assert!(raw_text.contains("raw body line\r\n"), "{raw_text}");
    assert!(
        raw_text.contains(&format!("Message-ID: <{raw}@relay.test>")),
        "a raw message without one gets a Message-ID: {raw_text}"
    );
    assert!(!raw_text.contains("X-SES-MESSAGE-TAGS"), "{raw_text}");

    let templated_text =
        String::from_utf8_lossy(&message_with_id(&messages, &templated).content).into_owned();
    assert!(
        templated_text.contains("Subject: Welcome Ann <3"),
        "updated template:\n{templated_text}"
    );
    assert!(
        templated_text.contains("Dear Ann <3, order 7"),
        "{templated_text}"
    );
    assert!(
        templated_text.contains("Dear Ann &lt;3"),
        "HTML escaped:\n{templated_text}"
    );
    let bulk_texts: Vec<String> = bulk_ids
        .iter()
        .map(|id| String::from_utf8_lossy(&message_with_id(&messages, id).content).into_owned())
        .collect();
    assert!(
        bulk_texts[0].contains("Dear Bo, order 1"),
        "{}",
        bulk_texts[0]
    );
    assert!(
        bulk_texts[1].contains("Dear friend, order 0"),
        "{}",
        bulk_texts[1]
    );

    // Every message's Send and Delivery events carry its tags.
    let dir = relay.dir.path().to_path_buf();
    let wanted = [
        (simple.as_str(), "campaign", "spring"),
        (raw.as_str(), "kind", "raw"),
        (raw.as_str(), "source", "raw"),
        (bulk_ids[0].as_str(), "entry", "one"),
        (bulk_ids[1].as_str(), "campaign", "bulk"),
    ];
    let all_tagged = eventually(|| {
        let events = events(&dir);
        wanted
            .iter()
            .all(|(id, tag, value)| {
                ["Send", "Delivery"].iter().all(|kind| {
                    events.iter().any(|e| {
                        e["eventType"] == *kind
                            && e["mail"]["messageId"] == *id
                            && e["mail"]["tags"][tag]
                                .as_array()
                                .is_some_and(|v| v.iter().any(|x| x == value))
                            && e["mail"]["tags"]["ses:configuration-set"][0] == "send-set"
                    })
                })
            })
            .then_some(())
    })
    .await;
    assert!(all_tagged.is_some(), "events:\n{:#?}", events(&dir));

    assert_eq!(results["shape_errors"], serde_json::json!([]));
    let checked = results["shapes_checked"].to_string();
    for operation in [
        "SendEmail",
        "SendBulkEmail",
        "GetEmailTemplate",
        "ListEmailTemplates",
        "ListTagsForResource",
        "GetDedicatedIp",
        "GetConfigurationSet",
    ] {
        assert!(
            checked.contains(operation),
            "{operation} was not checked: {checked}"
        );
    }

    // Templates.
    assert_eq!(
        error(&results, "template_exists"),
        ("AlreadyExistsException".into(), 400)
    );
    assert_eq!(
        ok(&results, "get_template")["TemplateContent"]["Subject"],
        "Welcome {{name}}"
    );
    assert_eq!(
        results["template_pages"],
        serde_json::json!([["receipt"], ["reset"], ["welcome"]])
    );
    assert_eq!(error(&results, "bad_token").0, "BadRequestException");
    assert_eq!(
        error(&results, "get_deleted_template"),
        ("NotFoundException".into(), 404)
    );

    // Refusals.
    assert_eq!(
        error(&results, "unknown_set"),
        ("NotFoundException".into(), 404)
    );
    assert_eq!(
        error(&results, "bad_address"),
        ("BadRequestException".into(), 400)
    );
    assert_eq!(
        error(&results, "too_many_recipients"),
        ("MessageRejected".into(), 400)
    );
    assert_eq!(
        error(&results, "too_large"),
        ("MessageRejected".into(), 400)
    );
    assert_eq!(
        error(&results, "unimplemented_member").0,
        "BadRequestException"
    );
    assert!(
        results["unimplemented_member"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("ListManagementOptions"))
    );
    assert_eq!(error(&results, "header_injection").0, "BadRequestException");
    assert_eq!(error(&results, "tracking").0, "BadRequestException");

    // Tags, warm-up, account.
    let set_tags = &ok(&results, "set_tags")["Tags"];
    assert_eq!(
        set_tags,
        &serde_json::json!([{"Key": "owner", "Value": "mail-team"}])
    );
    assert_eq!(
        ok(&results, "pool_tags")["Tags"],
        serde_json::json!([{"Key": "team", "Value": "growth"}])
    );
    assert_eq!(
        error(&results, "tag_missing"),
        ("NotFoundException".into(), 404)
    );
    ok(&results, "account_warmup_empty");
    assert_eq!(
        ok(&results, "warmup_read")["DedicatedIp"]["WarmupPercentage"],
        50
    );
    let account = ok(&results, "account");
    assert_eq!(account["SendingEnabled"], true);
    assert_eq!(
        account["SendQuota"]["SentLast24Hours"], 8.0,
        "4 + 1 + 1 + 2 recipients"
    );

    // Pauses.
    assert_eq!(
        ok(&results, "paused_set")["SendingOptions"]["SendingEnabled"],
        false
    );
    assert_eq!(
        error(&results, "send_paused"),
        ("SendingPausedException".into(), 400)
    );
    assert_eq!(
        error(&results, "send_account_paused"),
        ("SendingPausedException".into(), 400)
    );
    let config = std::fs::read_to_string(relay.dir.path().join("poolrelay.toml")).expect("config");
    assert!(
        config.contains("owner = \"mail-team\"") && config.contains("warmup_percentage = 50"),
        "{config}"
    );
    relay.stop().await;
}

/// The raw message kept its own Message-ID (none here: found by subject).
fn message_with_id_or_subject<'a>(
    messages: &'a [poolrelay::sink::SinkMessage],
    id: &str,
    subject: &str,
) -> &'a poolrelay::sink::SinkMessage {
    messages
        .iter()
        .find(|m| {
            let text = String::from_utf8_lossy(&m.content);
            text.contains(id) || text.contains(&format!("Subject: {subject}"))
        })
        .unwrap_or_else(|| panic!("no message {id} / {subject}"))
}
