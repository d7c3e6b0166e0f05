//! `[cluster]`: this node's place in a fleet of relays sharing one model in Redis.

use std::net::SocketAddr;
use std::path::PathBuf;

/// How this relay joins the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// `redis://host:port/db` (or `rediss://` for TLS).
    pub redis: String,
    /// This node's name: unique in the fleet, `a-z 0-9 -`.
    pub node: String,
    /// Where other nodes hand over mail for pools whose IPs live here.
    pub forward_listen: SocketAddr,
    /// The key every node shares: forwarded mail is signed with it (mode 0600).
    pub secret_file: PathBuf,
}

/// `^[a-z0-9-]{1,63}$`: a node name fits in a Redis key and a log line as it is.
pub fn is_valid_node_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_lower_case_letters_digits_and_dashes() {
        assert!(is_valid_node_name("a"));
        assert!(is_valid_node_name("mta-2"));
        assert!(!is_valid_node_name(""));
        assert!(!is_valid_node_name("A"));
        assert!(!is_valid_node_name("a_b"));
        assert!(!is_valid_node_name("a:b"));
        assert!(!is_valid_node_name(&"a".repeat(64)));
    }
}
