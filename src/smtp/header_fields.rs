//! The fields of a header block (RFC 5322 §2.2): one rule for what a field name is, used by the
//! DATA-phase header filter line by line and by whoever reads a finished header block (the
//! `From:` lookup, the fields DKIM signs, the sink's count of signed messages).

/// The name of the field that `line` starts, or `None` when the line is not a field (no colon,
/// or a name with characters outside printable ASCII).
pub fn field_name(line: &[u8]) -> Option<&[u8]> {
    let colon = memchr::memchr(b':', line)?;
    let name = &line[..colon];
    // White space before the colon is obsolete syntax (RFC 5322 §4.5) but still sent.
    let end = name
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |last| last + 1);
    let name = &name[..end];
    let valid = !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b));
    valid.then_some(name)
}

/// One field: its name and its raw bytes, continuation lines included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a [u8],
    pub raw: &'a [u8],
}

impl Field<'_> {
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }
}

/// The fields at the start of `content`, up to the blank line or the first line that is neither
/// a field nor a continuation of one (as the DATA-phase filter ends a header block).
pub fn fields(content: &[u8]) -> impl Iterator<Item = Field<'_>> {
    let mut rest = content;
    std::iter::from_fn(move || {
        let end = line_end(rest);
        let name = field_name(&rest[..end])?;
        let mut at = end;
        while matches!(rest.get(at), Some(b' ' | b'\t')) {
            at += line_end(&rest[at..]);
        }
        let field = Field {
            name,
            raw: &rest[..at],
        };
        rest = &rest[at..];
        Some(field)
    })
}

/// The length of the first line of `bytes`, with its line feed.
fn line_end(bytes: &[u8]) -> usize {
    memchr::memchr(b'\n', bytes).map_or(bytes.len(), |at| at + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_their_continuations_up_to_the_blank_line() {
        let head =
            b"From : a@b.test\r\nSubject: one\r\n\ttwo\r\n three\r\nX: y\r\n\r\nDate: body\r\n";
        let found: Vec<(&[u8], &[u8])> = fields(head).map(|f| (f.name, f.raw)).collect();
        assert_eq!(
            found,
            vec![
                (&b"From"[..], &b"From : a@b.test\r\n"[..]),
                (b"Subject", b"Subject: one\r\n\ttwo\r\n three\r\n"),
                (b"X", b"X: y\r\n"),
            ]
        );
        assert_eq!(fields(b"not a field\r\nFrom: x\r\n").count(), 0);
        assert_eq!(fields(b"From: no line end").count(), 1);
        assert_eq!(fields(b"").count(), 0);
        assert!(field_name(b"Bad Name: x").is_none());
    }
}
