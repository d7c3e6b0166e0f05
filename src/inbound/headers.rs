//! Header classification while the message streams in.
//!
//! [`HeaderFilter`] sits between the DATA reader and the spool. In the header block it:
//!
//! * captures the first `X-SES-CONFIGURATION-SET` field (name matched case-insensitively, value
//!   decoded with mail-parser, so folding and encoded words are handled as any MUA would);
//! * drops every `X-SES-*` control field, including their folded continuation lines, as SES does;
//! * passes every other byte through unchanged.
//!
//! After the blank line that ends the header block, everything is passed through untouched.
//! Memory stays bounded: header lines are at most 998 octets (enforced by the DATA reader) and a
//! captured field is capped.

use crate::smtp::header_fields::field_name;

/// Longest captured `X-SES-CONFIGURATION-SET` field; longer folded values are cut (no valid
/// configuration set name comes close: names are at most 64 characters).
const MAX_CAPTURED_FIELD: usize = 8 * 1024;
/// A partial line longer than this cannot be a header line: the header block is over.
const MAX_HEADER_LINE: usize = 4 * 1024;

const CONFIGURATION_SET_FIELD: &str = "x-ses-configuration-set";
const MESSAGE_TAGS_FIELD: &str = "x-ses-message-tags";
const CONTROL_FIELD_PREFIX: &str = "x-ses-";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// Before the first field, or after a field we keep.
    Keep,
    /// An `X-SES-*` field: dropped with its continuation lines.
    Drop,
    /// The first `X-SES-CONFIGURATION-SET`: dropped from the message, kept here.
    Capture,
    /// The first `X-SES-MESSAGE-TAGS`: dropped from the message, kept here.
    CaptureTags,
}

#[derive(Debug)]
pub struct HeaderFilter {
    in_headers: bool,
    /// `Received:` fields seen: the hops the message has made.
    received: usize,
    /// No line of the header block seen yet.
    at_start: bool,
    field: Field,
    partial: Vec<u8>,
    captured: Option<Vec<u8>>,
    captured_tags: Option<Vec<u8>>,
    configuration_set: Option<String>,
    tags: Vec<(String, String)>,
    /// The first `Message-ID` value (kept in the message too), for matching reports later.
    message_id: Option<String>,
}

impl Default for HeaderFilter {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderFilter {
    pub fn new() -> Self {
        Self {
            in_headers: true,
            received: 0,
            at_start: true,
            field: Field::Keep,
            partial: Vec::new(),
            captured: None,
            captured_tags: None,
            configuration_set: None,
            tags: Vec::new(),
            message_id: None,
        }
    }

    /// True once the blank line ending the header block has been seen.
    pub fn headers_complete(&self) -> bool {
        !self.in_headers
    }

    /// How many `Received:` fields the header block has (so far): the hops already made.
    pub fn hops(&self) -> usize {
        self.received
    }

    /// The `X-SES-CONFIGURATION-SET` value, once the header block is complete.
    pub fn configuration_set(&self) -> Option<&str> {
        self.configuration_set.as_deref()
    }

    /// The `X-SES-MESSAGE-TAGS` pairs (`name=value`, comma-separated; names and values of
    /// `0-9A-Za-z_-`, at most 256 characters), once the header block is complete. Malformed
    /// pairs are left out.
    pub fn tags(&self) -> &[(String, String)] {
        &self.tags
    }

    /// The `Message-ID` field's value as written (unfolded first line, trimmed), if any.
    pub fn message_id(&self) -> Option<&str> {
        self.message_id.as_deref()
    }

    /// Feeds content (CRLF line ends) and appends what is to be kept to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut body = Vec::new();
        self.feed_split(input, out, &mut body);
        out.extend_from_slice(&body);
    }

    /// As [`HeaderFilter::feed`], with the kept lines of the header block (up to and including
    /// the blank line) appended to `head` and everything after it to `body`.
    pub fn feed_split(&mut self, mut input: &[u8], head: &mut Vec<u8>, body: &mut Vec<u8>) {
        while self.in_headers && !input.is_empty() {
            match memchr::memchr(b'\n', input) {
                Some(end) => {
                    let (piece, rest) = input.split_at(end + 1);
                    input = rest;
                    if self.partial.is_empty() {
                        self.header_line(piece, head, body);
                    } else {
                        let mut line = std::mem::take(&mut self.partial);
                        line.extend_from_slice(piece);
                        self.header_line(&line, head, body);
                    }
                }
                None => {
                    self.partial.extend_from_slice(input);
                    input = &[];
                    if self.partial.len() > MAX_HEADER_LINE {
                        let line = std::mem::take(&mut self.partial);
                        self.end_of_headers();
                        body.extend_from_slice(&line);
                    }
                }
            }
        }
        body.extend_from_slice(input);
    }

    /// Call at the end of the content: a header block without a body ends here.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.in_headers {
            let line = std::mem::take(&mut self.partial);
            if !line.is_empty() {
                let mut body = Vec::new();
                self.header_line(&line, out, &mut body);
                out.extend_from_slice(&body);
            }
            self.end_of_headers();
        }
    }

    fn end_of_headers(&mut self) {
        self.in_headers = false;
        if let Some(raw) = self.captured.take() {
            self.configuration_set = Some(decode_field_value(&raw));
        }
        if let Some(raw) = self.captured_tags.take() {
            self.tags = parse_tags(&decode_field_value(&raw));
        }
    }

    fn header_line(&mut self, line: &[u8], out: &mut Vec<u8>, body: &mut Vec<u8>) {
        // An mbox "From " line before the first field is an envelope artefact, not a header:
        // it is dropped, and the header block goes on.
        if self.at_start && line.starts_with(b"From ") {
            self.at_start = false;
            return;
        }
        self.at_start = false;
        if line == b"\r\n" || line == b"\n" {
            out.extend_from_slice(line);
            self.end_of_headers();
            return;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            match self.field {
                Field::Keep => out.extend_from_slice(line),
                Field::Drop => {}
                Field::Capture | Field::CaptureTags => {
                    let slot = if self.field == Field::Capture {
                        &mut self.captured
                    } else {
                        &mut self.captured_tags
                    };
                    if let Some(captured) = slot
                        && captured.len() + line.len() <= MAX_CAPTURED_FIELD
                    {
                        captured.extend_from_slice(line);
                    }
                }
            }
            return;
        }
        let Some(name) = field_name(line) else {
            // Not a header field: the header block is over and this line is body.
            self.end_of_headers();
            body.extend_from_slice(line);
            return;
        };
        let lower = name.to_ascii_lowercase();
        if lower == b"received" {
            self.received += 1;
        } else if lower == b"message-id" && self.message_id.is_none() {
            let colon = memchr::memchr(b':', line).unwrap_or(line.len() - 1);
            let value = String::from_utf8_lossy(&line[colon + 1..]);
            let value = value.trim();
            if !value.is_empty() && value.len() <= 998 {
                self.message_id = Some(value.to_string());
            }
        }
        self.field = if lower == CONFIGURATION_SET_FIELD.as_bytes() && self.captured.is_none() {
            self.captured = Some(line.to_vec());
            Field::Capture
        } else if lower == MESSAGE_TAGS_FIELD.as_bytes() && self.captured_tags.is_none() {
            self.captured_tags = Some(line.to_vec());
            Field::CaptureTags
        } else if lower.starts_with(CONTROL_FIELD_PREFIX.as_bytes()) {
            Field::Drop
        } else {
            out.extend_from_slice(line);
            Field::Keep
        };
    }
}

/// `name1=value1, name2=value2` into pairs, keeping only well-formed ones.
fn parse_tags(text: &str) -> Vec<(String, String)> {
    let valid = |part: &str| {
        !part.is_empty()
            && part.len() <= 256
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    text.split(',')
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            let (name, value) = (name.trim(), value.trim());
            (valid(name) && valid(value)).then(|| (name.to_string(), value.to_string()))
        })
        .take(50)
        .collect()
}

/// The unfolded, decoded, trimmed text of one raw header field. The value is parsed as an
/// unstructured field (as `Subject` is): mail-parser decodes encoded words (RFC 2047) only in
/// fields it knows, and `X-SES-*` fields are not among them.
fn decode_field_value(raw: &[u8]) -> String {
    let colon = memchr::memchr(b':', raw).map_or(raw.len(), |c| c + 1);
    let mut block = b"Subject:".to_vec();
    block.extend_from_slice(&raw[colon.min(raw.len())..]);
    block.extend_from_slice(b"\r\n");
    let parsed = mail_parser::MessageParser::new().parse_headers(&block[..]);
    let text = parsed
        .as_ref()
        .and_then(|message| message.headers().first())
        .and_then(|header| header.value().as_text().map(str::to_string));
    match text {
        Some(text) => text.trim().to_string(),
        None => {
            // mail-parser found no text (an empty value): fall back to the raw bytes after ':'.
            String::from_utf8_lossy(&raw[colon.min(raw.len())..])
                .trim()
                .to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(message: &[u8], step: usize) -> (String, Option<String>) {
        let mut filter = HeaderFilter::new();
        let mut out = Vec::new();
        for chunk in message.chunks(step) {
            filter.feed(chunk, &mut out);
        }
        filter.finish(&mut out);
        (
            String::from_utf8(out).unwrap(),
            filter.configuration_set().map(str::to_string),
        )
    }

    #[test]
    fn first_configuration_set_wins_and_control_headers_go() {
        let message = b"From: a@example.test\r\nx-ses-configuration-set: promo\r\nX-SES-MESSAGE-TAGS: a=b,\r\n c=d\r\nX-SES-CONFIGURATION-SET: other\r\nSubject: hi\r\n\tthere\r\nX-SES-SOURCE-ARN: arn\r\n\r\nX-SES-CONFIGURATION-SET: body\r\n";
        for step in [1, 5, 4096] {
            let (out, set) = filter(message, step);
            assert_eq!(set.as_deref(), Some("promo"));
            assert_eq!(
                out,
                "From: a@example.test\r\nSubject: hi\r\n\tthere\r\n\r\nX-SES-CONFIGURATION-SET: body\r\n"
            );
        }
    }

    #[test]
    fn message_tags_are_parsed() {
        let mut filter = HeaderFilter::new();
        let mut out = Vec::new();
        filter.feed(b"X-SES-MESSAGE-TAGS: campaign=spring, variant=b,\r\n bad tag=x, ok_2=v-2\r\nX-SES-MESSAGE-TAGS: second=ignored\r\n\r\n", &mut out);
        filter.finish(&mut out);
        let tags: Vec<(&str, &str)> = filter
            .tags()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            tags,
            [("campaign", "spring"), ("variant", "b"), ("ok_2", "v-2")]
        );
        assert_eq!(out, b"\r\n");
    }

    #[test]
    fn folded_value_is_unfolded() {
        let (_, set) = filter(
            b"X-Ses-Configuration-Set:\r\n   transactional  \r\n\r\nbody",
            3,
        );
        assert_eq!(set.as_deref(), Some("transactional"));
    }

    #[test]
    fn no_header_and_no_body() {
        let (out, set) = filter(b"Subject: x\r\n", 2);
        assert_eq!((out.as_str(), set), ("Subject: x\r\n", None));
        let (out, set) = filter(b"", 2);
        assert_eq!((out.as_str(), set), ("", None));
    }

    #[test]
    fn a_non_header_line_starts_the_body() {
        let (out, set) = filter(b"not a header\r\nX-SES-CONFIGURATION-SET: late\r\n", 4);
        assert_eq!(set, None);
        assert_eq!(out, "not a header\r\nX-SES-CONFIGURATION-SET: late\r\n");
    }

    #[test]
    fn empty_value_is_an_empty_name() {
        let (_, set) = filter(b"X-SES-CONFIGURATION-SET:\r\n\r\n", 100);
        assert_eq!(set.as_deref(), Some(""));
    }

    #[test]
    fn obsolete_and_encoded_forms_are_still_control_fields() {
        for message in [
            &b"X-SES-CONFIGURATION-SET  : news\r\nX-SES-MESSAGE-TAGS\t: a=b\r\nSubject: s\r\n\r\nbody\r\n"[..],
            b"From someone@example.test Mon Dec  1 10:00:00 2026\r\nX-SES-CONFIGURATION-SET: news\r\nSubject: s\r\n\r\nbody\r\n",
            b"X-SES-CONFIGURATION-SET: =?utf-8?q?news?=\r\nSubject: s\r\n\r\nbody\r\n",
            b"X-SES-CONFIGURATION-SET: =?UTF-8?B?bmV3cw==?=\r\nSubject: s\r\n\r\nbody\r\n",
        ] {
            for step in [1, 7, message.len()] {
                let (out, set) = filter(message, step);
                assert_eq!(set.as_deref(), Some("news"), "{message:?}");
                assert_eq!(out, "Subject: s\r\n\r\nbody\r\n", "{message:?}");
            }
        }
    }

    #[test]
    fn received_fields_are_counted_as_hops() {
        let mut filter = HeaderFilter::new();
        let mut out = Vec::new();
        filter.feed(
            b"Received: from a\r\n\tby b\r\nRECEIVED : from c\r\nSubject: x\r\n\r\nReceived: body\r\n",
            &mut out,
        );
        assert_eq!(filter.hops(), 2, "header fields only, folded ones once");
    }
}
