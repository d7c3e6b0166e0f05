//! Command-line framing for the server side.
//!
//! RFC 5321 §4.5.3.1.4 caps a command line at 512 octets including CRLF. A longer line is not
//! cut into pieces (the tail would be read as another command); it is skipped up to its end and
//! answered with one `500 5.5.2`.

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
}
