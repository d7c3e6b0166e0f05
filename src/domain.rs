//! Domain names as the relay compares them: A-labels (IDNA, UTS-46 mapping), lower case. A
//! Unicode spelling (`ｂａｎｋ.test` in fullwidth letters, `bücher.test`) and its ASCII form
//! name the same domain, so routes, logs and every later lookup use the ASCII form.

/// The A-label form of `domain`; a name that cannot be converted is returned in lower case
/// (it then matches nothing and fails at the DNS lookup).
pub fn to_ascii(domain: &str) -> String {
    if domain.is_ascii() {
        return domain.to_ascii_lowercase();
    }
    idna::domain_to_ascii(domain).unwrap_or_else(|_| domain.to_lowercase())
}

/// This host's name as the kernel knows it (`gethostname`), the default for `[smtp] hostname`.
pub fn host_name() -> Option<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer.
    if unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } != 0 {
        return None;
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    let name = String::from_utf8_lossy(&buffer[..end]).into_owned();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_spellings_become_their_a_labels() {
        assert_eq!(to_ascii("Example.TEST"), "example.test");
        assert_eq!(to_ascii("ｂａｎｋ.test"), "bank.test");
        assert_eq!(to_ascii("bücher.test"), "xn--bcher-kva.test");
        assert_eq!(to_ascii("BÜCHER.test"), "xn--bcher-kva.test");
    }
}
