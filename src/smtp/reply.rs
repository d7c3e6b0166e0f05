//! SMTP replies with enhanced status codes (RFC 5321 §4.2, RFC 3463).

use std::fmt;

/// A reply the server sends: a three-digit code, an enhanced status code and one or more lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code such as `2.0.0`; empty for replies that carry none (greeting, EHLO).
    pub status: &'static str,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, status: &'static str, text: impl Into<String>) -> Self {
        Self {
            code,
            status,
            lines: vec![text.into()],
        }
    }

    pub fn multiline(code: u16, lines: Vec<String>) -> Self {
        Self {
            code,
            status: "",
            lines,
        }
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// Appends the wire form to `out`: every line but the last is `code-`, the last `code `.
    /// Line breaks inside a text can never reach the wire: they would let a reply forge another.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (index, line) in self.lines.iter().enumerate() {
            let separator = if index == last { ' ' } else { '-' };
            let clean: String = line
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let text = if self.status.is_empty() {
                format!("{}{}{}\r\n", self.code, separator, clean)
            } else {
                format!("{}{}{} {}\r\n", self.code, separator, self.status, clean)
            };
            out.extend_from_slice(text.as_bytes());
        }
        if self.lines.is_empty() {
            out.extend_from_slice(format!("{} {}\r\n", self.code, self.status).as_bytes());
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if !self.status.is_empty() {
            write!(f, " {}", self.status)?;
        }
        write!(f, " {}", self.lines.join(" / "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form() {
        let mut out = Vec::new();
        Reply::new(250, "2.0.0", "Ok").write_to(&mut out);
        Reply::multiline(250, vec!["host".into(), "PIPELINING".into()]).write_to(&mut out);
        Reply::new(554, "5.3.0", "a\r\n250 forged").write_to(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "250 2.0.0 Ok\r\n250-host\r\n250 PIPELINING\r\n554 5.3.0 a  250 forged\r\n"
        );
    }
}
