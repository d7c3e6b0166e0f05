//! The "relaxed" body canonicalization of DKIM (RFC 6376 §3.4.4), streaming.
//!
//! mail-auth 0.13 computes it itself, but keeps a line of only white space that ends the body
//! (`text\r\n\t\r\n` hashes as `text\r\n\r\n`; dkimpy and the RFC say `text\r\n`), so receivers
//! would see a body hash mismatch. The body therefore reaches mail-auth already relaxed, a form
//! its canonicalization leaves unchanged.

/// Turns a body, fed in pieces, into its relaxed canonical form.
#[derive(Debug, Default)]
pub struct RelaxedBody {
    /// Empty lines seen and not written yet: written only if a non-empty line follows.
    blank_lines: usize,
    /// White space seen in the current line since its last written character.
    space: bool,
    /// The current line has a character other than white space.
    has_content: bool,
    /// A CR that may start a line break.
    carriage_return: bool,
}

impl RelaxedBody {
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while let Some((&byte, rest)) = input.split_first() {
            if self.carriage_return {
                self.carriage_return = false;
                if byte == b'\n' {
                    self.end_line(out);
                    input = rest;
                    continue;
                }
                self.character(b'\r', out);
            }
            match byte {
                b'\r' => self.carriage_return = true,
                b'\n' => self.end_line(out),
                b' ' | b'\t' => self.space = true,
                _ => {
                    // A run of ordinary bytes goes out in one piece.
                    let run = input
                        .iter()
                        .position(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                        .unwrap_or(input.len());
                    self.character(byte, out);
                    out.extend_from_slice(&input[1..run]);
                    input = &input[run..];
                    continue;
                }
            }
            input = rest;
        }
    }

    /// Call after the last piece.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.carriage_return {
            self.carriage_return = false;
            self.character(b'\r', out);
        }
        if self.has_content {
            out.extend_from_slice(b"\r\n");
        }
        self.blank_lines = 0;
        self.has_content = false;
        self.space = false;
    }

    fn character(&mut self, byte: u8, out: &mut Vec<u8>) {
        if !self.has_content {
            for _ in 0..self.blank_lines {
                out.extend_from_slice(b"\r\n");
            }
            self.blank_lines = 0;
        }
        if self.space {
            out.push(b' ');
            self.space = false;
        }
        out.push(byte);
        self.has_content = true;
    }

    fn end_line(&mut self, out: &mut Vec<u8>) {
        if self.has_content {
            out.extend_from_slice(b"\r\n");
        } else {
            self.blank_lines += 1;
        }
        self.has_content = false;
        self.space = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relaxed(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut canon = RelaxedBody::default();
        canon.feed(body, &mut out);
        canon.finish(&mut out);
        out
    }

    #[test]
    fn rfc_6376_rules() {
        // The RFC's example (§3.4.6).
        assert_eq!(relaxed(b" C \r\nD \t E\r\n\r\n\r\n"), b" C\r\nD E\r\n");
        assert_eq!(
            relaxed(b"line with spaces   \r\n\t\r\n\r\n\r\n"),
            b"line with spaces\r\n"
        );
        assert_eq!(relaxed(b"a\r\n\r\n  \r\nb\r\n"), b"a\r\n\r\n\r\nb\r\n");
        assert_eq!(relaxed(b"no final line break"), b"no final line break\r\n");
        assert_eq!(relaxed(b""), b"");
        assert_eq!(relaxed(b"\r\n\r\n"), b"");
        assert_eq!(relaxed(b"x\ry\r\n"), b"x\ry\r\n");
    }

    #[test]
    fn pieces_do_not_change_the_result() {
        let body = b" C \r\nD \t E\r\n\r\n  x\r\n\t\r\n\r\n";
        let whole = relaxed(body);
        for cut in 0..body.len() {
            let mut out = Vec::new();
            let mut canon = RelaxedBody::default();
            canon.feed(&body[..cut], &mut out);
            canon.feed(&body[cut..], &mut out);
            canon.finish(&mut out);
            assert_eq!(out, whole, "cut at {cut}");
        }
    }
}
