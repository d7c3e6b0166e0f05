//! Which identity signs (the domain, a parent domain, none) and which configuration set an
//! identity gives a message that names none, proven with source addresses at the sink.

use super::signing::{send, signing_relay};
use super::{dkimpy_verify, python_with_dkimpy};
use crate::common::{TestRelay, WAIT, catch_all_route, ip, smtp_section};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_domain_signs_its_mail_a_parent_signs_a_subdomain_and_other_mail_is_unsigned() {
    let Some(python) = python_with_dkimpy() else {
        return;
    };
    let (relay, sink, records) = signing_relay().await;
    for (from, subject) in [
        ("a@rsa.test", "domain"),
        ("a@mail.eu.rsa.test", "subdomain"),
        ("a@unrelated.test", "unrelated"),
        ("a@notrsa.test", "lookalike"),
    ] {
        let content = format!("From: {from}\r\nSubject: {subject}\r\n\r\nx\r\n");
        send(&relay, from, content.as_bytes()).await;
    }
    let messages = sink.wait_for(4, WAIT).await;
    let by_subject = |subject: &str| {
        let needle = format!("Subject: {subject}\r\n");
        messages
            .iter()
            .find(|m| String::from_utf8_lossy(&m.content).contains(&needle))
            .unwrap_or_else(|| panic!("{subject} arrived"))
    };
    for subject in ["domain", "subdomain"] {
        let verdict = dkimpy_verify(&python, &by_subject(subject).content, &records);
        assert!(verdict.verified, "{subject}: {verdict:?}");
        assert_eq!(verdict.d.as_deref(), Some("rsa.test"), "{subject}");
        let signed = verdict.h.unwrap_or_default().to_ascii_lowercase();
        assert_eq!(
            signed.matches("from").count(),
            2,
            "From is oversigned: {signed}"
        );
    }
    for subject in ["unrelated", "lookalike"] {
        let content = String::from_utf8_lossy(&by_subject(subject).content).to_string();
        assert!(
            !content.contains("DKIM-Signature"),
            "{subject} is unsigned: {content}"
        );
    }
    drop(relay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_default_set_chooses_the_pool_unless_the_header_names_one() {
    let sink = crate::common::start_sink().await;
    let config = format!(
        r#"{}{}
[dkim]
key_dir = "keys"
algorithm = "ed25519"

[[pool]]
name = "marketing"

[[ip]]
address = "127.0.0.2"

[[ip]]
address = "127.0.0.3"
pool = "marketing"

[[configuration_set]]
name = "campaigns"
sending_pool = "marketing"

[[configuration_set]]
name = "transactional"

[[identity]]
name = "brand.test"
configuration_set = "campaigns"

[[identity]]
name = "receipts@brand.test"
configuration_set = "transactional"
"#,
        smtp_section(""),
        catch_all_route(sink.addr())
    );
    let relay = TestRelay::start(&config).await;
    let cases = [
        ("news@brand.test", None, "identity default", "127.0.0.3"),
        (
            "news@brand.test",
            Some("transactional"),
            "header wins",
            "127.0.0.2",
        ),
        (
            "receipts@brand.test",
            None,
            "address identity first",
            "127.0.0.2",
        ),
        ("news@other.test", None, "no identity", "127.0.0.2"),
    ];
    for (from, set, subject, _) in cases {
        let header = set.map_or(String::new(), |s| {
            format!("X-SES-CONFIGURATION-SET: {s}\r\n")
        });
        let content = format!("{header}From: {from}\r\nSubject: {subject}\r\n\r\nx\r\n");
        send(&relay, from, content.as_bytes()).await;
    }
    let messages = sink.wait_for(cases.len(), WAIT).await;
    for (_, _, subject, source) in cases {
        let needle = format!("Subject: {subject}\r\n");
        let message = messages
            .iter()
            .find(|m| String::from_utf8_lossy(&m.content).contains(&needle))
            .unwrap_or_else(|| panic!("{subject} arrived"));
        assert_eq!(message.peer.ip(), ip(source), "{subject}");
    }
    drop(relay);
}
