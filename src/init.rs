//! `poolrelay init`: a starter config for this host. It lists the host's addresses as dedicated
//! IPs (the first in a "transactional" pool, the others in "marketing"), sets the spool and the
//! admin socket beside the file, and never overwrites a file that exists.

use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The addresses of this host that could be source addresses on the internet: not loopback,
/// link-local, unspecified or multicast.
pub fn host_addresses() -> Vec<IpAddr> {
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return found;
    }
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs returned, not yet freed.
        let (address, next) = unsafe { ((*entry).ifa_addr, (*entry).ifa_next) };
        // SAFETY: ifa_addr, when set, points to a sockaddr of the family it names.
        if let Some(ip) = unsafe { ip_of(address) } {
            let usable = !ip.is_loopback() && !ip.is_unspecified() && !ip.is_multicast();
            let link_local = match ip {
                IpAddr::V4(v4) => v4.is_link_local(),
                IpAddr::V6(v6) => v6.is_unicast_link_local(),
            };
            if usable && !link_local && !found.contains(&ip) {
                found.push(ip);
            }
        }
        entry = next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found
}

/// # Safety
/// `address` is null or points to a valid sockaddr of the family it names.
unsafe fn ip_of(address: *const libc::sockaddr) -> Option<IpAddr> {
    if address.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees the pointer; the family says which struct it is.
    unsafe {
        match i32::from((*address).sa_family) {
            libc::AF_INET => {
                let v4 = &*(address as *const libc::sockaddr_in);
                Some(IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()))
            }
            libc::AF_INET6 => {
                let v6 = &*(address as *const libc::sockaddr_in6);
                Some(IpAddr::from(v6.sin6_addr.s6_addr))
            }
            _ => None,
        }
    }
}

/// The starter config for a host named `hostname` with `addresses`.
pub fn starter_config(hostname: &str, addresses: &[IpAddr]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"# poolrelay starter config written by `poolrelay init` for {hostname}.
# Check it with `poolrelay check-config --config poolrelay.toml`; the example config in the
# source tree (config/poolrelay.toml) documents every section.

[smtp]
listen = ["127.0.0.1:2525"]           # where applications hand over mail
hostname = "{hostname}"               # greeting, Received header, default EHLO name

[spool]
dir = "var/spool"                     # relative to this file

[admin]
socket = "var/admin.sock"             # poolrelay pools/ips/config-sets --config this file

[[pool]]
name = "transactional"

[[pool]]
name = "marketing"

[[configuration_set]]
name = "transactional"
sending_pool = "transactional"

[[configuration_set]]
name = "marketing"
sending_pool = "marketing"

"#
    );
    if addresses.is_empty() {
        out.push_str("# No public address was found on this host: add yours as [[ip]] entries.\n");
    }
    for (index, address) in addresses.iter().enumerate() {
        let pool = if index == 0 {
            "transactional"
        } else {
            "marketing"
        };
        let _ = writeln!(out, "[[ip]]\naddress = \"{address}\"\npool = \"{pool}\"\n");
    }
    out
}

/// Writes `dir/poolrelay.toml` for this host; refuses when the file exists.
pub fn write_starter(dir: &Path) -> io::Result<PathBuf> {
    let path = dir.join("poolrelay.toml");
    std::fs::create_dir_all(dir)?;
    let hostname = crate::domain::host_name().unwrap_or_else(|| "relay.example.test".to_string());
    let text = starter_config(&hostname, &host_addresses());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|error| match error.kind() {
            io::ErrorKind::AlreadyExists => io::Error::new(
                error.kind(),
                format!(
                    "{} exists; poolrelay init never overwrites a config",
                    path.display()
                ),
            ),
            _ => error,
        })?;
    io::Write::write_all(&mut file, text.as_bytes())?;
    file.sync_all()?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_starter_config_is_valid_with_and_without_addresses() {
        let addresses: Vec<IpAddr> = ["192.0.2.10", "192.0.2.11", "2001:db8::1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        for list in [&addresses[..], &[]] {
            let text = starter_config("mx.example.test", list);
            let config = crate::config::parse(Path::new("/tmp/poolrelay.toml"), &text)
                .unwrap_or_else(|errors| panic!("{errors}\n{text}"));
            assert_eq!(config.registry.ips().len(), list.len());
        }
        let text = starter_config("mx.example.test", &addresses);
        let config = crate::config::parse(Path::new("/tmp/poolrelay.toml"), &text).unwrap();
        assert_eq!(
            config.registry.ips()[0].pool.as_deref(),
            Some("transactional")
        );
        assert_eq!(config.registry.ips()[2].pool.as_deref(), Some("marketing"));
    }

    #[test]
    fn host_addresses_are_never_loopback() {
        assert!(host_addresses().iter().all(|a| !a.is_loopback()));
    }
}
