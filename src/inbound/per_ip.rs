//! Connections per client address: one address may hold at most `smtp.max_connections_per_ip`
//! sessions (Postfix's `smtpd_client_connection_count_limit`), so a few idle clients cannot use
//! up `max_connections` for everyone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

pub struct PerIpConnections {
    limit: u32,
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// Counts one connection of an address while it lives.
pub struct Admitted {
    counter: Arc<PerIpConnections>,
    address: IpAddr,
}

impl PerIpConnections {
    pub fn new(limit: u32) -> Arc<Self> {
        Arc::new(Self {
            limit,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more connection from `address`, or `None` at its limit.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Option<Admitted> {
        let mut open = self.open.lock();
        let count = open.entry(address).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Admitted {
            counter: self.clone(),
            address,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.counter.open.lock();
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_limit_and_a_place_comes_back_when_one_closes() {
        let limits = PerIpConnections::new(2);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.5".parse().unwrap(), "127.0.0.6".parse().unwrap());
        let first = limits.admit(a).expect("first");
        let _second = limits.admit(a).expect("second");
        assert!(limits.admit(a).is_none(), "third from the same address");
        assert!(limits.admit(b).is_some(), "another address");
        drop(first);
        assert!(limits.admit(a).is_some(), "a place came back");
        assert!(
            limits.open.lock().get(&b).is_none(),
            "closed addresses are forgotten"
        );
    }
}
