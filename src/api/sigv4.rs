//! AWS Signature Version 4, the header form, verified as AWS services verify it: the server
//! rebuilds the canonical request from what arrived, signs it with the key's secret, and
//! compares in constant time. Pure: a request's parts and a clock in, a verdict out.
//!
//! The canonical request follows the SigV4 specification as botocore implements it: the path
//! as sent, with dot segments removed, URI-encoded once more (so `%3A` is signed as `%253A`);
//! query pairs decoded, re-encoded (RFC 3986 unreserved characters kept) and sorted; the signed
//! headers lower-cased with their values trimmed and inner white space collapsed; the payload's
//! SHA-256 (`x-amz-content-sha256` must agree with the body when it is sent).

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use ring::{digest, hmac};

/// The service name in the credential scope.
pub const SERVICE: &str = "ses";
const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far `x-amz-date` may be from the server's clock.
const MAX_SKEW_MINUTES: i64 = 5;

/// RFC 3986 unreserved characters stay; everything else is `%XX`.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// As [`QUERY`], and `/` separates path segments.
const PATH: &AsciiSet = &QUERY.remove(b'/');

/// A parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    /// `YYYYMMDD`.
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    /// Lower-case hex, as sent.
    pub signature: String,
}

/// The parts of a request the signature covers.
pub struct Request<'a> {
    pub method: &'a str,
    /// The path exactly as it arrived (still percent-encoded).
    pub raw_path: &'a str,
    pub raw_query: Option<&'a str>,
    /// Every header, names lower-cased, in arrival order.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// Why a request's signature is not accepted; the API answers each as SES does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    #[error("Request is missing Authentication Token")]
    Missing,
    #[error("{0}")]
    Malformed(String),
    #[error("Signature expired: {0}")]
    Expired(String),
    #[error("Credential should be scoped to {0}")]
    WrongScope(String),
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."
    )]
    Mismatch,
}

/// Reads `AWS4-HMAC-SHA256 Credential=AKID/20261202/us-east-1/ses/aws4_request,
/// SignedHeaders=host;x-amz-date, Signature=...`.
pub fn parse_authorization(value: &str) -> Result<Authorization, SigV4Error> {
    let malformed = |what: &str| SigV4Error::Malformed(format!("Authorization header: {what}"));
    let rest = value
        .trim()
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| malformed("only AWS4-HMAC-SHA256 is supported"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| malformed("a part without '='"))?;
        match key {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed = Some(value),
            "Signature" => signature = Some(value),
            _ => return Err(malformed("an unknown part")),
        }
    }
    let credential = credential.ok_or_else(|| malformed("no Credential"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = scope[..] else {
        return Err(malformed(
            "Credential is not key/date/region/service/aws4_request",
        ));
    };
    let signature = signature.ok_or_else(|| malformed("no Signature"))?;
    let valid_signature = signature.len() == 64 && signature.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid_signature || date.len() != 8 || access_key_id.is_empty() {
        return Err(malformed("a malformed Credential or Signature"));
    }
    let signed_headers: Vec<String> = signed
        .ok_or_else(|| malformed("no SignedHeaders"))?
        .split(';')
        .map(str::to_ascii_lowercase)
        .collect();
    Ok(Authorization {
        access_key_id: access_key_id.to_string(),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers,
        signature: signature.to_ascii_lowercase(),
    })
}

fn header<'a>(request: &'a Request<'_>, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(text.as_bytes())
        .ok()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, bytes).as_ref())
}

/// Checks `request` against `authorization` with `secret`, for `region`, at `now`.
pub fn verify(
    request: &Request<'_>,
    authorization: &Authorization,
    secret: &str,
    region: &str,
    now: DateTime<Utc>,
) -> Result<(), SigV4Error> {
    let amz_date = header(request, "x-amz-date")
        .ok_or_else(|| SigV4Error::Malformed("the request has no x-amz-date header".into()))?;
    let signed_at = NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| {
            SigV4Error::Malformed(format!("x-amz-date {amz_date:?} is not YYYYMMDDTHHMMSSZ"))
        })?
        .and_utc();
    let skew = TimeDelta::minutes(MAX_SKEW_MINUTES);
    if signed_at < now - skew || signed_at > now + skew {
        let stamp = |t: DateTime<Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
        return Err(SigV4Error::Expired(format!(
            "{amz_date} is not within {MAX_SKEW_MINUTES} minutes of {}",
            stamp(now)
        )));
    }
    if authorization.region != region || authorization.service != SERVICE {
        return Err(SigV4Error::WrongScope(format!(
            "region {region}, service {SERVICE}"
        )));
    }
    if authorization.date != amz_date[..8] {
        return Err(SigV4Error::Malformed(
            "the Credential date is not the x-amz-date's day".into(),
        ));
    }
    for required in ["host", "x-amz-date"] {
        if !authorization.signed_headers.iter().any(|h| h == required) {
            return Err(SigV4Error::Malformed(format!(
                "SignedHeaders must include {required}"
            )));
        }
    }
    let body_hash = sha256_hex(request.body);
    if let Some(claimed) = header(request, "x-amz-content-sha256")
        && !claimed.eq_ignore_ascii_case(&body_hash)
    {
        return Err(SigV4Error::Mismatch);
    }
    let canonical = canonical_request(request, &authorization.signed_headers, &body_hash)?;
    let scope = format!("{}/{region}/{SERVICE}/aws4_request", authorization.date);
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let key = signing_key(secret, &authorization.date, region);
    // ring compares the tags in constant time.
    let claimed = unhex(&authorization.signature).ok_or(SigV4Error::Mismatch)?;
    hmac::verify(&key, string_to_sign.as_bytes(), &claimed).map_err(|_| SigV4Error::Mismatch)?;
    Ok(())
}

/// Signs `request` (whose headers must include `host` and `x-amz-date`) as a client does, for
/// `poolrelay load --api`: the `Authorization` header's value, covering every header given.
pub fn sign(
    request: &Request<'_>,
    access_key_id: &str,
    secret: &str,
    region: &str,
) -> Result<String, SigV4Error> {
    let amz_date = header(request, "x-amz-date")
        .ok_or_else(|| SigV4Error::Malformed("no x-amz-date header to sign".into()))?;
    let date = amz_date.get(..8).unwrap_or_default();
    let mut signed: Vec<String> = request.headers.iter().map(|(n, _)| n.clone()).collect();
    signed.sort();
    signed.dedup();
    let body_hash = sha256_hex(request.body);
    let canonical = canonical_request(request, &signed, &body_hash)?;
    let scope = format!("{date}/{region}/{SERVICE}/aws4_request");
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let signature = hmac::sign(
        &signing_key(secret, date, region),
        string_to_sign.as_bytes(),
    );
    Ok(format!(
        "{ALGORITHM} Credential={access_key_id}/{scope}, SignedHeaders={}, Signature={}",
        signed.join(";"),
        hex(signature.as_ref())
    ))
}

/// The key for one day, region and service (the HMAC chain from `AWS4<secret>`).
fn signing_key(secret: &str, date: &str, region: &str) -> hmac::Key {
    let step = |key: &[u8], data: &str| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
    };
    let day = step(format!("AWS4{secret}").as_bytes(), date);
    let in_region = step(day.as_ref(), region);
    let service = step(in_region.as_ref(), SERVICE);
    let signing = step(service.as_ref(), "aws4_request");
    hmac::Key::new(hmac::HMAC_SHA256, signing.as_ref())
}

fn canonical_request(
    request: &Request<'_>,
    signed_headers: &[String],
    body_hash: &str,
) -> Result<String, SigV4Error> {
    let mut names: Vec<&str> = signed_headers.iter().map(String::as_str).collect();
    names.sort_unstable();
    let mut out = String::with_capacity(512);
    out.push_str(request.method);
    out.push('\n');
    push_canonical_path(&mut out, request.raw_path);
    out.push('\n');
    out.push_str(&canonical_query(request.raw_query.unwrap_or("")));
    out.push('\n');
    // Each signed header once, its values joined by commas, inner white space collapsed.
    for name in &names {
        out.push_str(name);
        out.push(':');
        let mut values = request.headers.iter().filter(|(n, _)| n == name).peekable();
        if values.peek().is_none() {
            return Err(SigV4Error::Malformed(format!(
                "signed header {name} is missing"
            )));
        }
        for (index, (_, value)) in values.enumerate() {
            if index > 0 {
                out.push(',');
            }
            for (word_index, word) in value.split_whitespace().enumerate() {
                if word_index > 0 {
                    out.push(' ');
                }
                out.push_str(word);
            }
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&names.join(";"));
    out.push('\n');
    match header(request, "x-amz-content-sha256") {
        Some(claimed) => out.push_str(&claimed.to_ascii_lowercase()),
        None => out.push_str(body_hash),
    }
    Ok(out)
}

/// The path with `.` and `..` segments resolved, encoded once more, appended to `out`.
fn push_canonical_path(out: &mut String, raw: &str) {
    let mut segments: Vec<&str> = Vec::new();
    for segment in raw.split('/').skip(1) {
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    out.push('/');
    for (index, segment) in segments.iter().enumerate() {
        if index > 0 {
            out.push('/');
        }
        out.extend(utf8_percent_encode(segment, PATH));
    }
}

/// Pairs decoded, re-encoded and sorted by key, then value.
fn canonical_query(raw: &str) -> String {
    let encode = |part: &str| {
        let decoded = percent_decode_str(part).decode_utf8_lossy();
        utf8_percent_encode(&decoded, QUERY).to_string()
    };
    let mut pairs: Vec<(String, String)> = raw
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (encode(key), encode(value))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
#[path = "sigv4_tests.rs"]
mod tests;
