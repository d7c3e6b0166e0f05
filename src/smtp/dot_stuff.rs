//! Dot-stuffing for the outbound side (RFC 5321 §4.5.2).
//!
//! Every line that starts with a dot gets one more, and the content is closed with
//! `<CRLF>.<CRLF>`. The stuffer also writes any stray bare CR or LF as CRLF, so what poolrelay
//! sends never holds a line end other than CRLF, whatever is in the spool file.

/// Streaming dot-stuffer: feed the content in any pieces, then call [`DotStuffer::finish`].
#[derive(Debug)]
pub struct DotStuffer {
    at_line_start: bool,
    after_cr: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        Self {
            at_line_start: true,
            after_cr: false,
        }
    }
}

impl DotStuffer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stuff(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 64 + 8);
        while let Some(&first) = input.first() {
            if self.after_cr {
                self.after_cr = false;
                out.push(b'\n');
                self.at_line_start = true;
                if first == b'\n' {
                    input = &input[1..];
                    continue;
                }
            }
            match first {
                b'\r' => {
                    out.push(b'\r');
                    self.after_cr = true;
                    input = &input[1..];
                }
                b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    self.at_line_start = true;
                    input = &input[1..];
                }
                _ => {
                    if self.at_line_start && first == b'.' {
                        out.push(b'.');
                    }
                    self.at_line_start = false;
                    let run = memchr::memchr2(b'\r', b'\n', input).unwrap_or(input.len());
                    out.extend_from_slice(&input[..run]);
                    input = &input[run..];
                }
            }
        }
    }

    /// Ends the content: completes a last line without CRLF, then writes `.<CRLF>`.
    pub fn finish(self, out: &mut Vec<u8>) {
        if self.after_cr {
            out.push(b'\n');
        } else if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// Watches content go by and tells whether [`DotStuffer`] would leave it unchanged apart from
/// the end marker: no line starting with a dot, no bare CR or LF, and a CRLF at the end (or no
/// content). Such content can be sent from the spool to the socket as it is (`sendfile`).
#[derive(Debug)]
pub struct AsIsCheck {
    at_line_start: bool,
    after_cr: bool,
    changed: bool,
}

impl Default for AsIsCheck {
    fn default() -> Self {
        Self {
            at_line_start: true,
            after_cr: false,
            changed: false,
        }
    }
}

impl AsIsCheck {
    pub fn feed(&mut self, mut input: &[u8]) {
        while !self.changed && !input.is_empty() {
            let first = input[0];
            if self.after_cr {
                self.after_cr = false;
                self.changed |= first != b'\n';
                self.at_line_start = true;
                input = &input[1..];
                continue;
            }
            match first {
                b'\r' => self.after_cr = true,
                b'\n' => self.changed = true,
                b'.' if self.at_line_start => self.changed = true,
                _ => {
                    self.at_line_start = false;
                    let run = memchr::memchr2(b'\r', b'\n', input).unwrap_or(input.len());
                    input = &input[run..];
                    continue;
                }
            }
            input = &input[1..];
        }
    }

    /// True when the content fed so far goes on the wire unchanged, followed by `.<CRLF>`.
    pub fn as_is(&self) -> bool {
        !self.changed && !self.after_cr && self.at_line_start
    }
}

/// Stuffs a whole body at once.
pub fn dot_stuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 8);
    let mut stuffer = DotStuffer::new();
    stuffer.stuff(content, &mut out);
    stuffer.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::BareNewline;
    use crate::smtp::data::DataReader;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert_eq!(dot_stuff(b""), b".\r\n");
        assert_eq!(dot_stuff(b".\r\n"), b"..\r\n.\r\n");
        assert_eq!(
            dot_stuff(b".x\r\n..\r\na.b\r\n"),
            b"..x\r\n...\r\na.b\r\n.\r\n"
        );
        assert_eq!(dot_stuff(b"no end"), b"no end\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\nb\r.c\r"), b"a\r\nb\r\n..c\r\n.\r\n");
    }

    proptest! {
        /// Whatever CRLF content goes in, the receiving side reads back exactly that content and
        /// finds the end exactly at the end, however the bytes are split.
        #[test]
        fn stuffing_round_trips(lines in proptest::collection::vec("[.a\\x00 ]{0,6}", 0..12), split in 1usize..9) {
            let mut content = Vec::new();
            for line in &lines {
                content.extend_from_slice(line.as_bytes());
                content.extend_from_slice(b"\r\n");
            }
            let mut wire = Vec::new();
            let mut stuffer = DotStuffer::new();
            for piece in content.chunks(split) {
                stuffer.stuff(piece, &mut wire);
            }
            stuffer.finish(&mut wire);
            prop_assert_eq!(wire.len(), content.len() + 3 + lines.iter().filter(|l| l.starts_with('.')).count());
            let mut reader = DataReader::new(BareNewline::Reject, u64::MAX);
            let mut back = Vec::new();
            let fed = reader.feed(&wire, &mut back);
            prop_assert!(fed.finished);
            prop_assert_eq!(fed.consumed, wire.len());
            prop_assert_eq!(back, content);
        }

        /// Arbitrary bytes come out with CRLF as the only line end.
        #[test]
        fn as_is_means_stuffing_only_adds_the_end_marker(
            bytes in proptest::collection::vec(proptest::sample::select(vec![b'a', b'.', b'\r', b'\n']), 0..24),
            split in 1usize..9,
        ) {
            let mut check = AsIsCheck::default();
            for piece in bytes.chunks(split) {
                check.feed(piece);
            }
            let mut expected = bytes.clone();
            expected.extend_from_slice(b".\r\n");
            prop_assert_eq!(check.as_is(), dot_stuff(&bytes) == expected, "{:?}", bytes);
        }

        #[test]
        fn output_has_only_crlf(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let wire = dot_stuff(&bytes);
            for (i, &b) in wire.iter().enumerate() {
                if b == b'\n' { prop_assert_eq!(wire[i - 1], b'\r'); }
                if b == b'\r' { prop_assert_eq!(wire.get(i + 1), Some(&b'\n')); }
            }
            prop_assert!(wire.ends_with(b".\r\n"));
        }
    }
}
