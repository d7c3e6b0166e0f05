//! The relay's background DNS checks: each identity's DKIM record (at start, after every
//! change, every hour) and each dedicated IP's reverse DNS (at start and every
//! `[dns] ptr_recheck`). Both only report; mail flows whatever they find.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_resolver::TokioResolver;
use tokio_util::sync::CancellationToken;

use crate::identity::status::{RECHECK, StatusBoard};
use crate::metrics::{IpLabels, METRICS};
use crate::outbound::health::Health;
use crate::outbound::reverse_dns;
use crate::registry::Registry;

/// Checks every identity's published DKIM record now, after each change, and every hour.
pub async fn dkim_records(
    board: Arc<StatusBoard>,
    resolver: TokioResolver,
    registry: Arc<ArcSwap<Registry>>,
    shutdown: CancellationToken,
) {
    loop {
        let current = registry.load_full();
        board.check_all(&resolver, current.identities()).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = board.wake.notified() => {}
            _ = tokio::time::sleep(RECHECK) => {}
        }
    }
}

/// Checks every dedicated IP's PTR and FCrDNS now and every `every`; warns where they
/// disagree with the IP's EHLO name. Loopback addresses (test and demo setups) are not checked:
/// no receiver sees them, and resolvers answer `localhost` for them themselves.
pub async fn reverse_dns(
    health: Arc<Health>,
    resolver: TokioResolver,
    registry: Arc<ArcSwap<Registry>>,
    hostname: String,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let current = registry.load_full();
        let addresses: Vec<_> = current.ips().iter().map(|ip| ip.address).collect();
        for ip in current.ips().iter().filter(|ip| !ip.address.is_loopback()) {
            let result = reverse_dns::check(
                &resolver,
                ip.address,
                ip.ehlo_hostname.as_deref(),
                &hostname,
            )
            .await;
            if !result.forward_confirmed || !result.matches_ehlo {
                tracing::warn!(
                    source_ip = %ip.address,
                    ptr = result.ptr.as_deref().unwrap_or("-"),
                    forward_confirmed = result.forward_confirmed,
                    matches_ehlo = result.matches_ehlo,
                    ehlo_hostname = ip.ehlo_hostname.as_deref().unwrap_or("-"),
                    error = result.error.as_deref().unwrap_or("-"),
                    "reverse DNS of a dedicated IP does not confirm its name: receivers may refuse its mail"
                );
            }
            METRICS
                .ip_reverse_dns_confirmed
                .get_or_create(&IpLabels {
                    source_ip: ip.address.to_string(),
                })
                .set(i64::from(result.forward_confirmed && result.matches_ehlo));
            health.reverse_dns.set(ip.address, result);
        }
        health.reverse_dns.keep_only(&addresses);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
