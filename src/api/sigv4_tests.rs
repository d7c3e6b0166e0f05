//! Signatures made by botocore 1.44 (`SigV4Auth(Credentials("AKIDPOOLRELAY",
//! "secret/Key+example"), "ses", "us-east-1")` at 2026-12-02T08:30:00Z) must verify; any change
//! to what they cover must not.

use super::*;

const SECRET: &str = "secret/Key+example";
const GET_SIGNATURE: &str = "f16019328b1a63ebd4417762146c587ac7f660f214f414df336f22775503404f";
const POST_SIGNATURE: &str = "fdaf3499a8be4bfc9be0370a9ac778bfae2be6451c901c79eaf36228d3d87cc6";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-02T08:31:00Z")
        .map(|d| d.with_timezone(&Utc))
        .unwrap()
}

fn headers(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut headers = vec![
        ("host".to_string(), "127.0.0.1:8787".to_string()),
        ("x-amz-date".to_string(), "20261202T083000Z".to_string()),
    ];
    headers.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    headers
}

fn authorization(signed: &str, signature: &str) -> Authorization {
    parse_authorization(&format!(
        "AWS4-HMAC-SHA256 Credential=AKIDPOOLRELAY/20261202/us-east-1/ses/aws4_request, SignedHeaders={signed}, Signature={signature}"
    ))
    .unwrap()
}

/// The botocore-signed GET, as it would arrive with `path` and `query`, checked by `verify`.
fn verify_get(
    auth: &Authorization,
    path: &str,
    query: &str,
    secret: &str,
    region: &str,
    at: DateTime<Utc>,
) -> Result<(), SigV4Error> {
    let headers = headers(&[]);
    let request = Request {
        method: "GET",
        raw_path: path,
        raw_query: Some(query),
        headers: &headers,
        body: b"",
    };
    verify(&request, auth, secret, region, at)
}

fn get(path: &str, query: &str, at: DateTime<Utc>, secret: &str) -> Result<(), SigV4Error> {
    let auth = authorization("host;x-amz-date", GET_SIGNATURE);
    verify_get(&auth, path, query, secret, "us-east-1", at)
}

fn post(body: &[u8], extra: &[(&str, &str)]) -> Result<(), SigV4Error> {
    let headers = headers(&[&[("content-type", "application/json")][..], extra].concat());
    let request = Request {
        method: "POST",
        raw_path: "/v2/email/dedicated-ip-pools",
        raw_query: None,
        headers: &headers,
        body,
    };
    let auth = authorization("content-type;host;x-amz-date", POST_SIGNATURE);
    verify(&request, &auth, SECRET, "us-east-1", now())
}

#[test]
fn botocore_signatures_verify() {
    let path = "/v2/email/dedicated-ips/%3A%3A1";
    assert_eq!(
        get(path, "PageSize=10&NextToken=a%2Fb%3D", now(), SECRET),
        Ok(())
    );
    // Query order does not matter.
    assert_eq!(
        get(path, "NextToken=a%2Fb%3D&PageSize=10", now(), SECRET),
        Ok(())
    );
    assert_eq!(post(br#"{"PoolName": "bulk"}"#, &[]), Ok(()));
}

#[test]
fn anything_changed_is_refused() {
    let path = "/v2/email/dedicated-ips/%3A%3A1";
    let query = "PageSize=10&NextToken=a%2Fb%3D";
    assert_eq!(
        get(path, query, now(), "another secret"),
        Err(SigV4Error::Mismatch)
    );
    assert_eq!(
        get("/v2/email/dedicated-ips/%3A%3A2", query, now(), SECRET),
        Err(SigV4Error::Mismatch)
    );
    assert_eq!(
        get(path, "PageSize=11&NextToken=a%2Fb%3D", now(), SECRET),
        Err(SigV4Error::Mismatch)
    );
    assert_eq!(
        post(br#"{"PoolName": "bulk2"}"#, &[]),
        Err(SigV4Error::Mismatch)
    );
    // A payload hash header that does not match the body.
    let wrong = sha256_hex(b"something else");
    assert_eq!(
        post(
            br#"{"PoolName": "bulk"}"#,
            &[("x-amz-content-sha256", &wrong)]
        ),
        Err(SigV4Error::Mismatch)
    );
    let twenty_minutes = TimeDelta::minutes(20);
    for at in [now() + twenty_minutes, now() - twenty_minutes] {
        assert!(matches!(
            get(path, query, at, SECRET),
            Err(SigV4Error::Expired(_))
        ));
    }
    let auth = authorization("host;x-amz-date", GET_SIGNATURE);
    let wrong_region = verify_get(&auth, path, query, SECRET, "eu-west-1", now());
    assert!(matches!(wrong_region, Err(SigV4Error::WrongScope(_))));
    let unsigned_host = authorization("x-amz-date", GET_SIGNATURE);
    let result = verify_get(&unsigned_host, path, query, SECRET, "us-east-1", now());
    assert!(matches!(result, Err(SigV4Error::Malformed(_))));
}

#[test]
fn malformed_headers_are_refused() {
    for bad in [
        "",
        "AWS4-HMAC-SHA1 Credential=a/20261202/us-east-1/ses/aws4_request, SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=a/20261202/us-east-1/ses, SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=a/20261202/us-east-1/ses/aws4_request, SignedHeaders=host, Signature=zz",
        "AWS4-HMAC-SHA256 Credential=a/20261202/us-east-1/ses/aws4_request SignedHeaders=host",
        "AWS4-HMAC-SHA256 \u{0}=\u{ff}",
    ] {
        assert!(
            matches!(parse_authorization(bad), Err(SigV4Error::Malformed(_))),
            "{bad:?}"
        );
    }
    let mut path = String::new();
    push_canonical_path(&mut path, "/a/./b/../c/%3A");
    assert_eq!(path, "/a/c/%253A");
    assert_eq!(canonical_query("b=2&a=x%20y&a=1"), "a=1&a=x%20y&b=2");
}

#[test]
fn signing_makes_what_botocore_makes() {
    let headers = headers(&[("content-type", "application/json")]);
    let request = Request {
        method: "POST",
        raw_path: "/v2/email/dedicated-ip-pools",
        raw_query: None,
        headers: &headers,
        body: br#"{"PoolName": "bulk"}"#,
    };
    let signed = sign(&request, "AKIDPOOLRELAY", SECRET, "us-east-1").unwrap();
    assert_eq!(
        signed,
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDPOOLRELAY/20261202/us-east-1/ses/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature={POST_SIGNATURE}"
        )
    );
}
