//! The field blocks of `message/delivery-status` and `message/feedback-report` parts (RFC 3464
//! section 2.1, RFC 5965 section 3.1): header-style `Name: value` lines, folded continuation
//! lines, blocks separated by blank lines. Pure; any bytes in, never a panic.

/// One block of fields: names lower-cased, values unfolded and trimmed, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldBlock {
    pub fields: Vec<(String, String)>,
}

/// The most blocks read from one part (a DSN has one per recipient; more is not a real report).
const MAX_BLOCKS: usize = 1000;
/// The most characters kept of one value.
const MAX_VALUE: usize = 2000;

impl FieldBlock {
    /// The first value of field `name` (lower-case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of field `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.fields
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A value of the form `type; value` (`rfc822; a@example.com`, `dns; mx.example.com`)
    /// without its type.
    pub fn typed(&self, name: &str) -> Option<&str> {
        self.get(name).map(without_type)
    }
}

/// `rfc822; a@b` → `a@b`; a value without a type is returned as it is.
pub fn without_type(value: &str) -> &str {
    match value.split_once(';') {
        Some((kind, rest)) if !kind.contains(['<', '@', ' ']) => rest.trim(),
        _ => value.trim(),
    }
}

/// Splits `text` into blocks of fields. Lines that are not fields are skipped.
pub fn blocks(text: &str) -> Vec<FieldBlock> {
    let mut blocks = Vec::new();
    let mut current = FieldBlock::default();
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if !current.fields.is_empty() {
                blocks.push(std::mem::take(&mut current));
                if blocks.len() == MAX_BLOCKS {
                    return blocks;
                }
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.fields.last_mut()
                && value.len() < MAX_VALUE
            {
                value.push(' ');
                value.push_str(line.trim());
                truncate(value);
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()) {
                let mut value = value.trim().to_string();
                truncate(&mut value);
                current.fields.push((name.to_ascii_lowercase(), value));
            }
        }
    }
    if !current.fields.is_empty() {
        blocks.push(current);
    }
    blocks
}

fn truncate(value: &mut String) {
    if value.len() > MAX_VALUE {
        let mut end = MAX_VALUE;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
    }
}

/// The address inside `<...>`, or the value itself when it has no angle brackets.
pub fn angle_address(value: &str) -> &str {
    match (value.find('<'), value.rfind('>')) {
        (Some(start), Some(end)) if start < end => value[start + 1..end].trim(),
        _ => value.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_unfold_and_strip_types() {
        let text = "Reporting-MTA: dns; mx.example.test\r\nArrival-Date: Mon, 1 Dec 2026\r\n\r\n\
                    Final-Recipient: rfc822; a@example.test\r\nAction: failed\r\nStatus: 5.1.1\r\n\
                    Diagnostic-Code: smtp; 550 5.1.1 <a@example.test>:\r\n  user unknown\r\n\r\n\r\n\
                    not a field\r\nFinal-Recipient: RFC822; b@example.test\r\n";
        let blocks = blocks(text);
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[0].typed("reporting-mta"), Some("mx.example.test"));
        assert_eq!(blocks[1].typed("final-recipient"), Some("a@example.test"));
        assert_eq!(
            blocks[1].get("diagnostic-code"),
            Some("smtp; 550 5.1.1 <a@example.test>: user unknown")
        );
        assert_eq!(blocks[2].typed("final-recipient"), Some("b@example.test"));
        assert_eq!(angle_address(" <x@y.test> "), "x@y.test");
        assert_eq!(without_type("<a;b@c>"), "<a;b@c>");
    }

    #[test]
    fn hostile_input_is_bounded() {
        let long = format!("A: {}\n{}", "x".repeat(10_000), " y\n".repeat(10_000));
        let blocks = blocks(&long);
        assert!(blocks[0].get("a").unwrap().len() <= MAX_VALUE);
        let many = "A: b\n\n".repeat(5000);
        assert_eq!(super::blocks(&many).len(), MAX_BLOCKS);
        assert!(super::blocks("\u{0}\u{1}:::\n\t\t").is_empty());
    }
}
