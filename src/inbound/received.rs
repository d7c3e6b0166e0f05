//! The `Received:` trace header poolrelay adds to every accepted message (RFC 5321 §4.4).

use std::net::IpAddr;

/// Makes a client-supplied name safe to put in a header or a log: only characters that can appear
/// in a host name or address literal are kept, everything else becomes `_`. A hostile EHLO
/// (CR, LF, escape codes, shell syntax) therefore cannot add a header or break the trace line.
pub fn sanitize_name(name: &str) -> String {
    let mut clean: String = name
        .chars()
        .take(255)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        clean.push_str("unknown");
    }
    clean
}

/// Everything the header names.
pub struct Trace<'a> {
    pub helo: &'a str,
    pub client_ip: IpAddr,
    pub hostname: &'a str,
    pub esmtp: bool,
    pub id: &'a str,
    /// Named in a `for` clause only when there is exactly one recipient (to not leak the others).
    pub recipients: &'a [String],
    /// TLS version and cipher suite, when the session is encrypted.
    pub tls: Option<(String, String)>,
    /// The AUTH user name, when the client authenticated (never the password).
    pub authenticated: Option<&'a str>,
}

/// The header, folded, ending in CRLF.
pub fn received_header(trace: &Trace<'_>) -> String {
    // RFC 3848 protocol types.
    let with = match (
        trace.esmtp,
        trace.tls.is_some(),
        trace.authenticated.is_some(),
    ) {
        (true, true, true) => "ESMTPSA",
        (true, true, false) => "ESMTPS",
        (true, false, true) => "ESMTPA",
        (true, false, false) => "ESMTP",
        (false, true, _) => "SMTPS",
        (false, false, _) => "SMTP",
    };
    let tls = trace
        .tls
        .as_ref()
        .map(|(version, cipher)| format!("\r\n\t(using {version} with cipher {cipher})"))
        .unwrap_or_default();
    let auth = trace
        .authenticated
        .map(|user| format!("\r\n\t(Authenticated sender: {})", sanitize_name(user)))
        .unwrap_or_default();
    let recipient = match trace.recipients {
        [only] => format!("\r\n\tfor <{}>", sanitize_address(only)),
        _ => String::new(),
    };
    format!(
        "Received: from {} ([{}]){}{}\r\n\tby {} (poolrelay) with {} id {}{};\r\n\t{}\r\n",
        sanitize_name(trace.helo),
        trace.client_ip,
        tls,
        auth,
        trace.hostname,
        with,
        trace.id,
        recipient,
        chrono::Utc::now().to_rfc2822()
    )
}

fn sanitize_address(address: &str) -> String {
    address
        .chars()
        .map(|c| {
            if c.is_control() || c == '<' || c == '>' {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_helo_stays_on_its_line() {
        let header = received_header(&Trace {
            helo: "evil\r\nX-Injected: yes $(rm -rf /)\x1b[31m",
            client_ip: "127.0.0.1".parse().unwrap(),
            hostname: "relay.example.test",
            esmtp: true,
            id: "abc",
            recipients: &["a@example.test".into()],
            tls: Some(("TLSv1.3".into(), "TLS13_AES_256_GCM_SHA384".into())),
            authenticated: Some("app1"),
        });
        assert!(
            header.starts_with(
                "Received: from evil__X-Injected:_yes___rm_-rf____[31m ([127.0.0.1])\r\n"
            ),
            "{header}"
        );
        assert!(header.contains("\r\n\tfor <a@example.test>;\r\n\t"));
        assert!(header.contains("\r\n\t(using TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384)\r\n\t(Authenticated sender: app1)\r\n\tby relay.example.test (poolrelay) with ESMTPSA id abc"), "{header}");
        // Every line after the first is a continuation line: one header only.
        assert!(
            header
                .trim_end()
                .split("\r\n")
                .skip(1)
                .all(|line| line.starts_with('\t'))
        );
    }
}
