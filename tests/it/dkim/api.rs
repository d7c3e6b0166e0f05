//! The identities API on the admin socket: creating identities with and without a key, the
//! DKIM status read from a test DNS server in all four states, key rotation, the default
//! configuration set, deletion — and private keys kept out of the config file.

use serde_json::{Value, json};

use super::signing::send;
use crate::common::dns::{DnsStub, Entry};
use crate::common::http::call;
use crate::common::{TestRelay, WAIT, catch_all_route, eventually_async, smtp_section};
use poolrelay::identity::key::{DkimKey, KeyAlgorithm};
use poolrelay::sink::Sink;

/// A relay with an admin socket whose DNS is `dns`.
async fn relay_with_dns(dns: &DnsStub, sink: &Sink) -> TestRelay {
    let config = format!(
        "{}{}[admin]\nsocket = \"var/admin.sock\"\n[dns]\nnameservers = [\"{}\"]\n[dkim]\nkey_dir = \"var/dkim\"\n[[ip]]\naddress = \"127.0.0.2\"\n[[configuration_set]]\nname = \"news\"\n",
        smtp_section(""),
        catch_all_route(sink.addr()),
        dns.addr
    );
    TestRelay::start(&config).await
}

/// An RSA-2048 private key as SES takes it: base64 of the DER, no PEM lines.
fn ses_private_key() -> String {
    let pem = DkimKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

async fn status_becomes(socket: &std::path::Path, name: &str, wanted: &str) -> Value {
    let path = format!("/v2/email/identities/{name}");
    eventually_async(|| async {
        let (status, body) = call(socket, "GET", &path, None).await;
        assert_eq!(status, 200, "{body}");
        (body["DkimAttributes"]["Status"] == wanted).then_some(body)
    })
    .await
    .unwrap_or_else(|| panic!("{name} never reached {wanted}"))
}

fn record(body: &Value) -> (String, String) {
    let record = &body["DkimAttributes"]["DnsRecords"][0];
    (
        record["Name"].as_str().unwrap().to_string(),
        record["Value"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_are_created_rotated_and_report_what_dns_publishes() {
    let dns = DnsStub::start(vec![]).await;
    let sink = crate::common::start_sink().await;
    let relay = relay_with_dns(&dns, &sink).await;
    let socket = relay.dir.path().join("var/admin.sock");
    let create = |body: Value| {
        let socket = socket.clone();
        async move { call(&socket, "POST", "/v2/email/identities", Some(body)).await }
    };

    // Easy DKIM: the relay makes the key; publishing the record makes it SUCCESS.
    let (status, good) = create(json!({"EmailIdentity": "good.test"})).await;
    assert_eq!(status, 200, "{good}");
    assert_eq!(good["DkimAttributes"]["SigningAttributesOrigin"], "AWS_SES");
    assert_eq!(
        good["DkimAttributes"]["CurrentSigningKeyLength"],
        "RSA_2048_BIT"
    );
    let (name, value) = record(&good);
    let selector = good["DkimAttributes"]["Tokens"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(name, format!("{selector}._domainkey.good.test"));
    assert!(value.starts_with("v=DKIM1; k=rsa; p=MII"), "{value}");
    dns.add(&name, Entry::Txt(value.clone()));

    // A key given through the API, with another key published: FAILED.
    let private_key = ses_private_key();
    let (status, wrong) = create(json!({
        "EmailIdentity": "wrong.test",
        "DkimSigningAttributes": {"DomainSigningSelector": "given1", "DomainSigningPrivateKey": private_key},
    }))
    .await;
    assert_eq!(status, 200, "{wrong}");
    assert_eq!(
        wrong["DkimAttributes"]["SigningAttributesOrigin"],
        "EXTERNAL"
    );
    dns.add("given1._domainkey.wrong.test", Entry::Txt(value.clone()));

    // Nothing published: PENDING. DNS failing: TEMPORARY_FAILURE.
    let (status, _) = create(json!({"EmailIdentity": "pending.test"})).await;
    assert_eq!(status, 200);
    let (status, broken) = create(json!({"EmailIdentity": "broken.test"})).await;
    assert_eq!(status, 200);
    dns.add(&record(&broken).0, Entry::ServFail);
    // Ask for a check now (any change rings it): the records above were added after the last.
    let (status, _) = create(json!({"EmailIdentity": "a@good.test"})).await;
    assert_eq!(status, 200);

    status_becomes(&socket, "good.test", "SUCCESS").await;
    status_becomes(&socket, "wrong.test", "FAILED").await;
    status_becomes(&socket, "pending.test", "PENDING").await;
    status_becomes(&socket, "broken.test", "TEMPORARY_FAILURE").await;

    // The given key is in the key folder (0600), not in the config file, not in any answer.
    let config = std::fs::read_to_string(relay.dir.path().join("poolrelay.toml")).unwrap();
    assert!(
        !config.contains(&private_key[40..80]),
        "the key stays out of the TOML"
    );
    assert!(
        config.contains("dkim_key = \"var/dkim/wrong.test.given1.pem\""),
        "{config}"
    );
    let key_file = relay.dir.path().join("var/dkim/wrong.test.given1.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (_, list) = call(&socket, "GET", "/v2/email/identities", None).await;
    assert!(!list.to_string().contains(&private_key[40..80]));
    assert_eq!(
        list["EmailIdentities"].as_array().unwrap().len(),
        5,
        "{list}"
    );

    // Rotation: a new selector and key; mail is signed with it at once.
    let (status, rotated) = call(
        &socket,
        "PUT",
        "/v2/email/identities/good.test/dkim/signing",
        Some(json!({"SigningAttributesOrigin": "AWS_SES", "SigningAttributes": {"NextSigningKeyLength": "RSA_1024_BIT"}})),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let new_selector = rotated["DkimTokens"][0].as_str().unwrap().to_string();
    assert_ne!(new_selector, selector);
    assert_ne!(rotated["DnsRecords"][0]["Value"].as_str().unwrap(), value);
    status_becomes(&socket, "good.test", "PENDING").await;
    send(
        &relay,
        "x@good.test",
        b"From: x@good.test\r\nSubject: rotated\r\n\r\nx\r\n",
    )
    .await;
    let message = &sink.wait_for(1, WAIT).await[0];
    let text = String::from_utf8_lossy(&message.content);
    assert!(text.contains(&format!("s={new_selector};")), "{text}");

    // The default configuration set, then deletion.
    let path = "/v2/email/identities/good.test/configuration-set";
    let (status, _) = call(
        &socket,
        "PUT",
        path,
        Some(json!({"ConfigurationSetName": "nope"})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &socket,
        "PUT",
        path,
        Some(json!({"ConfigurationSetName": "news"})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, good) = call(&socket, "GET", "/v2/email/identities/good.test", None).await;
    assert_eq!(good["ConfigurationSetName"], "news");
    let (status, _) = call(
        &socket,
        "DELETE",
        "/v2/email/identities/a%40good.test",
        None,
    )
    .await;
    assert_eq!(
        status, 200,
        "an address identity is addressed percent-encoded"
    );
    let (status, _) = call(&socket, "GET", "/v2/email/identities/a@good.test", None).await;
    assert_eq!(status, 404);
    drop(relay);
}

#[tokio::test]
async fn bad_identity_requests_get_ses_errors() {
    let dns = DnsStub::start(vec![]).await;
    let sink = Sink::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let relay = relay_with_dns(&dns, &sink).await;
    let socket = relay.dir.path().join("var/admin.sock");
    let cases = [
        (
            json!({"EmailIdentity": "not a domain"}),
            400,
            "BadRequestException",
        ),
        (
            json!({"EmailIdentity": "x.test", "DkimSigningAttributes": {"DomainSigningSelector": "s"}}),
            400,
            "BadRequestException",
        ),
        (
            json!({"EmailIdentity": "x.test", "DkimSigningAttributes": {"DomainSigningSelector": "s", "DomainSigningPrivateKey": "bm90IGEga2V5"}}),
            400,
            "BadRequestException",
        ),
        (
            json!({"EmailIdentity": "x.test", "ConfigurationSetName": "missing"}),
            404,
            "NotFoundException",
        ),
    ];
    for (body, code, kind) in cases {
        let (status, reply) =
            call(&socket, "POST", "/v2/email/identities", Some(body.clone())).await;
        assert_eq!(
            (status, reply["__type"].as_str()),
            (code, Some(kind)),
            "{body}: {reply}"
        );
    }
    let (status, _) = call(
        &socket,
        "POST",
        "/v2/email/identities",
        Some(json!({"EmailIdentity": "x.test"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, reply) = call(
        &socket,
        "POST",
        "/v2/email/identities",
        Some(json!({"EmailIdentity": "X.TEST"})),
    )
    .await;
    assert_eq!(
        (status, reply["__type"].as_str()),
        (400, Some("AlreadyExistsException"))
    );
    drop(relay);
}
