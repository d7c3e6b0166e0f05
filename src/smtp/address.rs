//! Mailbox addresses as they go on the wire.
//!
//! An address is kept as its parser gives it: the local part unquoted (`"x y"@d` is `x y@d`),
//! split from the domain at the last `@`. Whenever one is written (MAIL FROM, RCPT TO, a DSN),
//! a local part that is not a dot-atom is quoted again (RFC 5321 §4.1.2 quoted-string), so text
//! a client put inside quotes can never become ESMTP parameters or another address. Addresses
//! with control characters are refused on the way in ([`has_control`]).

/// The address as `local@domain` with the local part quoted if it has to be.
pub fn for_the_wire(address: &str) -> String {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return quote_if_needed(address);
    };
    format!("{}@{domain}", quote_if_needed(local))
}

/// True if `text` has a control character (C0, DEL): never part of an address we pass on.
pub fn has_control(text: &str) -> bool {
    text.chars().any(|c| c.is_control())
}

/// RFC 5321 `atext`: what a dot-atom may hold besides dots.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

fn is_dot_atom(local: &str) -> bool {
    !local.is_empty()
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

fn quote_if_needed(local: &str) -> String {
    if local.is_empty() || is_dot_atom(local) {
        return local.to_string();
    }
    let mut quoted = String::with_capacity(local.len() + 2);
    quoted.push('"');
    for c in local.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_parts_are_quoted_only_when_they_must_be() {
        assert_eq!(
            for_the_wire("user.name+tag@example.test"),
            "user.name+tag@example.test"
        );
        assert_eq!(for_the_wire(""), "");
        assert_eq!(for_the_wire("x> SIZE=1@s.test"), "\"x> SIZE=1\"@s.test");
        assert_eq!(
            for_the_wire("q> NOTIFY=NEVER@dest.test"),
            "\"q> NOTIFY=NEVER\"@dest.test"
        );
        assert_eq!(
            for_the_wire("x@evil.test@dest.test"),
            "\"x@evil.test\"@dest.test"
        );
        assert_eq!(for_the_wire("a\"b\\c@d.test"), "\"a\\\"b\\\\c\"@d.test");
        assert_eq!(for_the_wire(".lead@d.test"), "\".lead\"@d.test");
        assert_eq!(for_the_wire("jürgen@d.test"), "jürgen@d.test");
        assert!(has_control("a\u{1b}[31m@d.test"));
        assert!(!has_control("plain@d.test"));
    }
}
