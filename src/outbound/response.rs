//! What a next hop says: its replies, and the capabilities its EHLO reply announces.

use std::fmt;

use bytes::{Buf, BytesMut};
use smtp_proto::response::parser::ResponseReceiver;

/// A reply from the remote server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteReply {
    pub code: u16,
    /// Enhanced status code (`5.1.1`) if the server sent one.
    pub enhanced: Option<String>,
    pub text: String,
}

impl RemoteReply {
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }
}

impl fmt::Display for RemoteReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(enhanced) = &self.enhanced {
            write!(f, " {enhanced}")?;
        }
        let text: String = self
            .text
            .chars()
            .map(|c| {
                if c == '\n' {
                    ' '
                } else if c.is_control() {
                    '?'
                } else {
                    c
                }
            })
            .collect();
        write!(f, " {}", text.trim())
    }
}

/// What the server announced in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub esmtp: bool,
    pub pipelining: bool,
    pub starttls: bool,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub size: Option<u64>,
}

impl Capabilities {
    pub(super) fn parse(ehlo_text: &str) -> Self {
        let mut caps = Self {
            esmtp: true,
            ..Self::default()
        };
        for line in ehlo_text.lines().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let keyword = words.next().unwrap_or_default().to_ascii_uppercase();
            match keyword.as_str() {
                "PIPELINING" => caps.pipelining = true,
                "STARTTLS" => caps.starttls = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "SIZE" => caps.size = words.next().and_then(|n| n.parse().ok()).filter(|&n| n > 0),
                _ => {}
            }
        }
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_from_ehlo() {
        let caps =
            Capabilities::parse("mx.example.test hello\nPIPELINING\nsize 1000\nSTARTTLS\n8BITMIME");
        assert!(caps.pipelining && caps.starttls && caps.eight_bit_mime && !caps.smtputf8);
        assert_eq!(caps.size, Some(1000));
    }
}

/// The most a reply may take (a hostile server sending endless `250-` lines is cut off).
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// One reply out of a stream of bytes, however they arrive (a byte at a time, several replies
/// in one read). Free of I/O, so it can be fed anything.
#[derive(Default)]
pub struct ReplyReader {
    receiver: ResponseReceiver,
    used: usize,
}

impl ReplyReader {
    /// Takes what it can of `input`: `Ok(Some(reply))` when a reply is complete (the bytes
    /// after it stay in `input`), `Ok(None)` to read more, `Err` for a malformed or over-long
    /// reply.
    pub fn next(&mut self, input: &mut BytesMut) -> Result<Option<RemoteReply>, String> {
        if input.is_empty() {
            return Ok(None);
        }
        let mut bytes = input.iter();
        let result = self.receiver.parse(&mut bytes);
        let consumed = input.len() - bytes.len();
        input.advance(consumed);
        self.used += consumed;
        match result {
            Ok(response) => {
                let enhanced = (response.esc[0] != 0).then(|| {
                    format!(
                        "{}.{}.{}",
                        response.esc[0], response.esc[1], response.esc[2]
                    )
                });
                Ok(Some(RemoteReply {
                    code: response.code,
                    enhanced,
                    text: response.message,
                }))
            }
            Err(smtp_proto::Error::NeedsMoreData { .. }) if self.used <= MAX_REPLY_BYTES => {
                Ok(None)
            }
            Err(smtp_proto::Error::NeedsMoreData { .. }) => {
                Err(format!("reply longer than {MAX_REPLY_BYTES} bytes"))
            }
            Err(error) => Err(error.to_string()),
        }
    }
}
