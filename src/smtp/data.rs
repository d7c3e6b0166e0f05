//! The DATA reader: turns the bytes a client sends after `354` into message content.
//!
//! It is a byte-level state machine, fed whatever arrived, so pipelined input and one byte per
//! packet work the same. It enforces the rules that keep one transaction one message:
//!
//! * only `<CRLF>.<CRLF>` ends DATA (or `.<CRLF>` as the very first line: an empty message);
//! * a bare LF or bare CR is refused (default) or, in normalize mode, written as CRLF — but a line
//!   that began after a bare line end can never end DATA, so `\n.\n`, `\r.\r\n` and friends
//!   (SMTP smuggling) stay inside the message they arrived in;
//! * a leading dot is removed (RFC 5321 §4.5.2);
//! * lines over 998 octets and messages over the size limit are refused after the end of data,
//!   and their content is not kept in memory meanwhile.
//!
//! smtp-proto has a DATA receiver, but it neither treats the first byte as a line start nor
//! knows about bare line ends, so poolrelay keeps its own.

use crate::settings::BareNewline;

/// The longest text line, without its CRLF (RFC 5322 §2.1.1).
pub const MAX_TEXT_LINE: usize = 998;

/// Why a message is refused once its end has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    BareNewline,
    LineTooLong,
    TooBig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line. `strict` is true when the previous line ended with a real CRLF,
    /// the only kind of line start from which a lone dot ends DATA.
    LineStart { strict: bool },
    /// A dot at the start of a line.
    Dot { strict: bool },
    /// A dot and a CR at the start of a line.
    DotCr { strict: bool },
    /// Inside a line.
    Middle,
    /// A CR inside a line; an LF must follow.
    Cr,
}

/// Result of one [`DataReader::feed`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Input bytes used. When `finished`, the rest belongs to the next command.
    pub consumed: usize,
    pub finished: bool,
}

#[derive(Debug)]
pub struct DataReader {
    mode: BareNewline,
    max_bytes: u64,
    state: State,
    line_len: usize,
    size: u64,
    violation: Option<Violation>,
}

impl DataReader {
    pub fn new(mode: BareNewline, max_bytes: u64) -> Self {
        Self {
            mode,
            max_bytes,
            state: State::LineStart { strict: true },
            line_len: 0,
            size: 0,
            violation: None,
        }
    }

    /// The first rule the message broke, if any. Once set, no more content is produced.
    pub fn violation(&self) -> Option<Violation> {
        self.violation
    }

    /// Content bytes seen so far (after removing stuffed dots), kept or not.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn violate(&mut self, violation: Violation) {
        self.violation.get_or_insert(violation);
    }

    fn text(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        self.line_len += bytes.len();
        self.size += bytes.len() as u64;
        if self.line_len > MAX_TEXT_LINE {
            self.violate(Violation::LineTooLong);
        }
        if self.size > self.max_bytes {
            self.violate(Violation::TooBig);
        }
        if self.violation.is_none() {
            out.extend_from_slice(bytes);
        }
    }

    fn line_end(&mut self, strict: bool, out: &mut Vec<u8>) {
        self.line_len = 0;
        self.size += 2;
        if self.size > self.max_bytes {
            self.violate(Violation::TooBig);
        }
        if self.violation.is_none() {
            out.extend_from_slice(b"\r\n");
        }
        self.state = State::LineStart { strict };
    }

    fn bare_newline(&mut self, out: &mut Vec<u8>) {
        if self.mode == BareNewline::Reject {
            self.violate(Violation::BareNewline);
        }
        self.line_end(false, out);
    }

    /// Consumes `input`, appending content to `out`, until the end of data or of the input.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Fed {
        let mut at = 0;
        while at < input.len() {
            let byte = input[at];
            match self.state {
                State::Middle => {
                    let rest = &input[at..];
                    match memchr::memchr2(b'\r', b'\n', rest) {
                        None => {
                            self.text(rest, out);
                            at = input.len();
                        }
                        Some(pos) => {
                            self.text(&rest[..pos], out);
                            at += pos + 1;
                            if rest[pos] == b'\r' {
                                self.state = State::Cr;
                            } else {
                                self.bare_newline(out);
                            }
                        }
                    }
                }
                State::Cr => {
                    if byte == b'\n' {
                        at += 1;
                        self.line_end(true, out);
                    } else {
                        // Bare CR: the byte after it starts a new (non-strict) line.
                        self.bare_newline(out);
                    }
                }
                State::LineStart { strict } => {
                    if byte == b'.' {
                        at += 1;
                        self.state = State::Dot { strict };
                    } else {
                        self.state = State::Middle;
                    }
                }
                State::Dot { strict } => {
                    if byte == b'\r' {
                        at += 1;
                        self.state = State::DotCr { strict };
                    } else {
                        // A stuffed dot: drop it, the rest of the line is content.
                        self.state = State::Middle;
                    }
                }
                State::DotCr { strict } => {
                    if byte == b'\n' {
                        at += 1;
                        if strict {
                            return Fed {
                                consumed: at,
                                finished: true,
                            };
                        }
                        // A lone dot after a bare line end is content, never the end.
                        self.text(b".", out);
                        self.line_end(true, out);
                    } else {
                        self.text(b".", out);
                        self.bare_newline(out);
                    }
                }
            }
        }
        Fed {
            consumed: at,
            finished: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns content, whether the end was found, and
    /// how many bytes were left after it.
    fn read(
        mode: BareNewline,
        input: &[u8],
        step: usize,
    ) -> (Vec<u8>, Option<Violation>, Option<usize>) {
        let mut reader = DataReader::new(mode, 1 << 20);
        let mut out = Vec::new();
        let mut offset = 0;
        while offset < input.len() {
            let end = (offset + step).min(input.len());
            let mut chunk_at = offset;
            loop {
                let fed = reader.feed(&input[chunk_at..end], &mut out);
                chunk_at += fed.consumed;
                if fed.finished {
                    return (out, reader.violation(), Some(input.len() - chunk_at));
                }
                if chunk_at == end {
                    break;
                }
            }
            offset = end;
        }
        (out, reader.violation(), None)
    }

    #[test]
    fn ends_only_at_crlf_dot_crlf() {
        for step in [1, 2, 3, 1000] {
            let (out, violation, left) = read(
                BareNewline::Reject,
                b"a\r\n..b\r\n.c\r\n.\r\nQUIT\r\n",
                step,
            );
            assert_eq!(out, b"a\r\n.b\r\nc\r\n");
            assert_eq!(violation, None);
            assert_eq!(left, Some(6));
        }
    }

    #[test]
    fn empty_message_and_leading_dot() {
        assert_eq!(
            read(BareNewline::Reject, b".\r\n", 1),
            (vec![], None, Some(0))
        );
        let (out, _, left) = read(BareNewline::Reject, b"..x\r\n.\r\n", 1);
        assert_eq!((out.as_slice(), left), (&b".x\r\n"[..], Some(0)));
    }

    #[test]
    fn smuggling_payloads_never_end_data() {
        let payloads: [&[u8]; 10] = [
            b"\n.\n",
            b"\n.\r\n",
            b"\r.\r\n",
            b"\r\n.\r",
            b"\r.\r",
            b"\r.\n",
            b"\n.\r",
            b"\r\n.\n",
            b"\r\n\x00.\r\n",
            b"\r\n.\x00\r\n",
        ];
        for payload in payloads {
            for mode in [BareNewline::Reject, BareNewline::Normalize] {
                let mut input = b"Subject: x\r\n\r\nbody".to_vec();
                input.extend_from_slice(payload);
                input.extend_from_slice(
                    b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nsmuggled\r\n.\r\n",
                );
                for step in [1, 7, 4096] {
                    let (out, violation, left) = read(mode, &input, step);
                    // The only end is the final one: nothing is left over to be read as commands.
                    assert_eq!(left, Some(0), "{payload:?} {mode:?} step {step}");
                    // Every payload but the two NUL ones holds a bare CR or LF.
                    let has_bare = !payload.contains(&0);
                    if mode == BareNewline::Reject && has_bare {
                        assert_eq!(violation, Some(Violation::BareNewline), "{payload:?}");
                    }
                    if mode == BareNewline::Normalize {
                        assert_eq!(violation, None);
                        // Normalized content has CRLF line ends only.
                        for (i, &b) in out.iter().enumerate() {
                            if b == b'\n' {
                                assert_eq!(out[i - 1], b'\r');
                            }
                            if b == b'\r' {
                                assert_eq!(out.get(i + 1), Some(&b'\n'));
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn long_lines_and_size() {
        let mut ok = vec![b'x'; 998];
        ok.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(read(BareNewline::Reject, &ok, 100).1, None);
        let mut long = vec![b'x'; 999];
        long.extend_from_slice(b"\r\n.\r\n");
        let (out, violation, left) = read(BareNewline::Reject, &long, 100);
        assert_eq!((violation, left), (Some(Violation::LineTooLong), Some(0)));
        assert!(out.len() < 999, "content past a violation is not kept");

        let mut reader = DataReader::new(BareNewline::Reject, 10);
        let mut out = Vec::new();
        let fed = reader.feed(b"0123456789\r\nmore\r\n.\r\n", &mut out);
        assert!(fed.finished);
        assert_eq!(reader.violation(), Some(Violation::TooBig));
        assert_eq!(reader.size(), 18);
    }
}
