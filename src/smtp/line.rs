//! Command-line framing for the server side.
//!
//! RFC 5321 §4.5.3.1.4 caps a command line at 512 octets including CRLF. A longer line is not
//! cut into pieces (the tail would be read as another command); it is skipped up to its end and
//! answered with one `500 5.5.2`.

use bytes::{Buf, BytesMut};

/// The longest command line, CRLF included.
pub const MAX_COMMAND_LINE: usize = 512;

/// What the start of a buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed<'a> {
    /// A whole line without its line ending, and how many bytes it used.
    Line(&'a [u8], usize),
    /// No line end yet and still within the limit: read more.
    Incomplete,
    /// The line is over the limit. `consumed` bytes can be dropped; `finished` says whether the
    /// line end was among them (if not, keep skipping until it comes).
    TooLong { consumed: usize, finished: bool },
}

/// Frames the first line of `buf`. A bare LF ends a command line too (as in Postfix): commands
/// are not message content, and being lenient here cannot merge or split a message.
pub fn frame_command(buf: &[u8]) -> Framed<'_> {
    match memchr::memchr(b'\n', buf) {
        Some(end) if end < MAX_COMMAND_LINE => {
            let line = &buf[..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            Framed::Line(line, end + 1)
        }
        Some(end) => Framed::TooLong {
            consumed: end + 1,
            finished: true,
        },
        None if buf.len() >= MAX_COMMAND_LINE => Framed::TooLong {
            consumed: buf.len(),
            finished: false,
        },
        None => Framed::Incomplete,
    }
}

/// What [`CommandLines::next`] found at the start of the input.
#[derive(Debug, PartialEq, Eq)]
pub enum NextLine {
    /// A whole command line, without its line ending.
    Line(Vec<u8>),
    /// An over-long line has been skipped to its end: answer it with one `500 5.5.2`.
    TooLong,
    /// Read more.
    Incomplete,
}

/// Command lines out of a connection's input, across reads. Remembers when it is in the middle
/// of skipping an over-long line, so the tail of that line is never read as a command.
#[derive(Debug, Default)]
pub struct CommandLines {
    skipping: bool,
}

impl CommandLines {
    /// Takes the next command line (or the end of an over-long one) off the front of `input`.
    pub fn next(&mut self, input: &mut BytesMut) -> NextLine {
        loop {
            if self.skipping {
                return match memchr::memchr(b'\n', input) {
                    Some(end) => {
                        input.advance(end + 1);
                        self.skipping = false;
                        NextLine::TooLong
                    }
                    None => {
                        input.clear();
                        NextLine::Incomplete
                    }
                };
            }
            match frame_command(input) {
                Framed::Incomplete => return NextLine::Incomplete,
                Framed::TooLong { consumed, finished } => {
                    input.advance(consumed);
                    if finished {
                        return NextLine::TooLong;
                    }
                    self.skipping = true;
                }
                Framed::Line(line, used) => {
                    let line = line.to_vec();
                    input.advance(used);
                    return NextLine::Line(line);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_lines() {
        assert_eq!(frame_command(b"NOOP\r\nQUIT\r\n"), Framed::Line(b"NOOP", 6));
        assert_eq!(frame_command(b"NOOP\nX"), Framed::Line(b"NOOP", 5));
        assert_eq!(frame_command(b"NOO"), Framed::Incomplete);
        let mut long = vec![b'A'; 510];
        long.extend_from_slice(b"\r\n");
        assert!(matches!(frame_command(&long), Framed::Line(_, 512)));
        long.insert(0, b'A');
        assert_eq!(
            frame_command(&long),
            Framed::TooLong {
                consumed: 513,
                finished: true
            }
        );
        assert_eq!(
            frame_command(&[b'A'; 600]),
            Framed::TooLong {
                consumed: 600,
                finished: false
            }
        );
    }

    #[test]
    fn an_over_long_line_is_skipped_across_reads_and_reported_once() {
        let mut lines = CommandLines::default();
        let mut input = BytesMut::from(&[b'A'; 600][..]);
        assert_eq!(lines.next(&mut input), NextLine::Incomplete);
        input.extend_from_slice(b"AAAA\r\nNOOP\r\n");
        assert_eq!(lines.next(&mut input), NextLine::TooLong);
        assert_eq!(lines.next(&mut input), NextLine::Line(b"NOOP".to_vec()));
        assert_eq!(lines.next(&mut input), NextLine::Incomplete);
    }
}
