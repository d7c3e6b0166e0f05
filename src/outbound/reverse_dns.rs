//! Reverse DNS of each dedicated IP: the PTR name, whether it resolves back to the address
//! (forward-confirmed reverse DNS, FCrDNS), and whether the EHLO name matches it. Receivers
//! refuse or junk mail from addresses that fail these checks.
//!
//! Checked at start and every `[dns] ptr_recheck`; an IP without `ehlo_hostname` greets with
//! its forward-confirmed PTR name (else `smtp.hostname`).

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_resolver::TokioResolver;
use parking_lot::Mutex;
use serde::Serialize;

use crate::dns::{self, LookupError};

/// What DNS says about one address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReverseDns {
    /// The first PTR name, if any.
    pub ptr: Option<String>,
    /// The PTR name resolves (A/AAAA) back to the address.
    pub forward_confirmed: bool,
    /// The name the IP greets with is the PTR name.
    pub matches_ehlo: bool,
    /// Why there is no answer (a DNS failure, not a missing record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The latest result per address.
#[derive(Debug, Default)]
pub struct ReverseDnsBoard {
    results: Mutex<HashMap<IpAddr, ReverseDns>>,
}

impl ReverseDnsBoard {
    pub fn get(&self, address: IpAddr) -> Option<ReverseDns> {
        self.results.lock().get(&address).cloned()
    }

    /// The forward-confirmed PTR name of `address`: its EHLO name when none is configured.
    pub fn confirmed_name(&self, address: IpAddr) -> Option<String> {
        let results = self.results.lock();
        let result = results.get(&address)?;
        result
            .forward_confirmed
            .then(|| result.ptr.clone())
            .flatten()
    }

    pub fn set(&self, address: IpAddr, result: ReverseDns) {
        self.results.lock().insert(address, result);
    }

    /// Forgets addresses no longer configured.
    pub fn keep_only(&self, addresses: &[IpAddr]) {
        self.results.lock().retain(|a, _| addresses.contains(a));
    }
}

/// The name an IP greets with: its configured EHLO name, else its forward-confirmed PTR name,
/// else the relay's host name.
pub fn ehlo_name<'a>(
    configured: Option<&'a str>,
    confirmed_ptr: Option<&'a str>,
    hostname: &'a str,
) -> &'a str {
    configured.or(confirmed_ptr).unwrap_or(hostname)
}

/// Looks `address` up. `ehlo_hostname`: the configured EHLO name, if any; `hostname`: the
/// relay's own (used when neither a configured name nor a confirmed PTR exists).
pub async fn check(
    resolver: &TokioResolver,
    address: IpAddr,
    ehlo_hostname: Option<&str>,
    hostname: &str,
) -> ReverseDns {
    let (ptr, error) = match dns::ptr(resolver, address).await {
        Ok(names) => (names.into_iter().next(), None),
        Err(LookupError::NotFound) => (None, None),
        Err(LookupError::Temporary(error)) => (None, Some(error)),
    };
    let forward_confirmed = match &ptr {
        Some(name) => dns::addresses(resolver, name)
            .await
            .is_ok_and(|found| found.contains(&address.to_canonical())),
        None => false,
    };
    let confirmed = ptr.as_deref().filter(|_| forward_confirmed);
    let greeting = ehlo_name(ehlo_hostname, confirmed, hostname);
    let matches_ehlo = ptr
        .as_deref()
        .is_some_and(|ptr| ptr.eq_ignore_ascii_case(greeting));
    ReverseDns {
        ptr,
        forward_confirmed,
        matches_ehlo,
        error,
    }
}
