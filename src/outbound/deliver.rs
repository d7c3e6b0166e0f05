//! One delivery attempt for one message.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::Outbound;
use super::client::{ClientError, SmtpClient};
use super::connect::{ConnectError, connect_from};
use super::next_hop::{ResolveError, Target};
use super::shaping::{ConnectionPermit, DeliverySlot, Pair, site_of};
use super::warmup::{self, WarmupState};
use crate::registry::{PoolMembers, TlsPolicy};
use crate::spool::Envelope;

/// Why no session could be had with any address of a next hop.
pub(super) enum NoSession {
    /// Every usable source of the pool was tried or none exists for this address family.
    NoSource,
    /// The next hop refused the source IP (greeting or EHLO) for reputation reasons.
    Refused(String),
    /// The relay is shutting down while the delivery waited for a shaping limit.
    Stopped,
    Failed(String),
}

impl Outbound {
    /// Tries every pending recipient once, updating their states in `envelope`. `slot` is given
    /// back to the scheduler if the attempt has to wait for a shaping limit. Returns the
    /// recipients not attempted at all because the relay began shutting down meanwhile.
    pub async fn deliver(&self, envelope: &mut Envelope, slot: &mut DeliverySlot) -> Vec<usize> {
        envelope.attempts += 1;
        let mut by_domain: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (index, recipient) in envelope.pending() {
            by_domain.entry(recipient.domain()).or_default().push(index);
        }
        let mut groups: Vec<(Vec<Target>, Vec<usize>)> = Vec::new();
        for (domain, indexes) in by_domain {
            match self.resolver.resolve(&domain).await {
                Ok(targets) => match groups.iter_mut().find(|(known, _)| *known == targets) {
                    Some((_, group)) => group.extend(indexes),
                    None => groups.push((targets, indexes)),
                },
                Err(error) => {
                    let permanent = matches!(error, ResolveError::Permanent(_));
                    for index in indexes {
                        self.record(
                            envelope,
                            index,
                            None,
                            &domain,
                            permanent,
                            &error.reply_text(),
                        );
                    }
                }
            }
        }
        let mut untouched = Vec::new();
        for (targets, indexes) in groups {
            untouched.extend(self.deliver_group(envelope, &targets, &indexes, slot).await);
        }
        untouched
    }

    /// Delivers the recipients `indexes`, whose domains share the next hops `targets` (one site),
    /// from a source IP of the message's pool.
    async fn deliver_group(
        &self,
        envelope: &mut Envelope,
        targets: &[Target],
        indexes: &[usize],
        slot: &mut DeliverySlot,
    ) -> Vec<usize> {
        let registry = self.registry.load_full();
        let today = warmup::today();
        let site = site_of(targets);
        // The pool sources come from; it becomes the overflow pool when warm-up caps are used up.
        let mut pool = envelope.pool.clone();
        let mut members = registry.pool_members(&pool);
        let mut pending: Vec<usize> = indexes.to_vec();
        // Sources tried in this attempt that cannot be used again now.
        let mut unusable: HashSet<IpAddr> = HashSet::new();
        let mut capped: HashSet<IpAddr> = HashSet::new();
        let mut last_source = None;
        let mut last_error = match &members {
            PoolMembers::Addresses(list) if list.iter().all(|s| s.weight == 0) => {
                format!("pool {pool} has no dedicated IP in rotation")
            }
            _ => "no next-hop address could be reached".to_string(),
        };
        for target in targets {
            loop {
                let source = match &members {
                    PoolMembers::HostDefault => None,
                    PoolMembers::Addresses(list) => {
                        let now = Instant::now();
                        let (mut suspended, mut unbindable) = (0, 0);
                        let candidates: Vec<(IpAddr, u32)> = list
                            .iter()
                            .filter(|s| {
                                s.weight > 0
                                    && s.address.is_ipv4() == target.addr.is_ipv4()
                                    && !unusable.contains(&s.address)
                                    && !capped.contains(&s.address)
                            })
                            .filter(|s| {
                                if self.health.is_unbindable(s.address) {
                                    unbindable += 1;
                                    false
                                } else if self.health.is_suspended_for_site(s.address, &site, now) {
                                    suspended += 1;
                                    false
                                } else {
                                    true
                                }
                            })
                            .map(|s| (s.address, s.weight))
                            .collect();
                        let Some(address) =
                            self.selector
                                .select(&pool, &candidates, envelope.last_source_ip)
                        else {
                            // Every IP is capped for today: overflow (once), or wait.
                            let all_capped = list.iter().all(|s| {
                                s.weight == 0
                                    || capped.contains(&s.address)
                                    || unusable.contains(&s.address)
                            }) && !capped.is_empty();
                            if all_capped {
                                if let Some(overflow) = registry
                                    .overflow_pool(&pool)
                                    .filter(|_| pool == envelope.pool)
                                {
                                    tracing::info!(id = %envelope.id, pool = %envelope.pool, overflow, "warm-up caps reached; using the overflow pool");
                                    pool = overflow.to_string();
                                    members = registry.pool_members(&pool);
                                    continue;
                                }
                                last_error = format!(
                                    "4.7.0 every IP of pool {pool} is at its warm-up limit for today"
                                );
                            } else if suspended > 0 {
                                last_error = format!(
                                    "4.7.0 every usable IP of pool {pool} is suspended for {site}"
                                );
                            } else if unbindable > 0 {
                                last_error = format!(
                                    "no usable dedicated IP in pool {pool}: its addresses cannot be bound on this host"
                                );
                            }
                            break;
                        };
                        let started = list
                            .iter()
                            .find(|s| s.address == address)
                            .and_then(|s| s.warmup_started);
                        if let WarmupState::Warming { cap, .. } =
                            WarmupState::of(registry.warmup(), started, today)
                            && !self.warmup_ledger.try_take(address, today, cap)
                        {
                            capped.insert(address);
                            continue;
                        }
                        Some(address)
                    }
                };
                last_source = source.or(last_source);
                match self
                    .session(envelope, source, target, targets, &site, slot)
                    .await
                {
                    Ok((client, reused)) => {
                        envelope.last_source_ip = source;
                        let refused = self
                            .transact(envelope, client, reused, target, &site, &pending)
                            .await;
                        if refused.is_empty() {
                            return Vec::new();
                        }
                        // The site refused this IP: the same recipients go out from another IP
                        // of the pool now, or wait if there is none.
                        let reply = envelope.recipients[refused[0]]
                            .last_reply
                            .clone()
                            .unwrap_or_default();
                        pending = refused;
                        last_error =
                            format!("4.7.0 {site} refuses the usable IPs of pool {pool}: {reply}");
                        match source {
                            Some(address) => unusable.insert(address),
                            None => break,
                        };
                    }
                    Err(NoSession::NoSource) => {
                        if let Some(address) = source {
                            unusable.insert(address);
                        }
                        last_error = format!("no usable dedicated IP in pool {pool}");
                        if source.is_none() {
                            break;
                        }
                    }
                    Err(NoSession::Refused(reason)) => {
                        last_error =
                            format!("4.7.0 {site} refuses the usable IPs of pool {pool}: {reason}");
                        match source {
                            Some(address) => unusable.insert(address),
                            None => break,
                        };
                    }
                    // Nothing was attempted: the recipients stay as they were.
                    Err(NoSession::Stopped) => return pending,
                    Err(NoSession::Failed(error)) => {
                        last_error = error;
                        break;
                    }
                }
            }
        }
        let hop = targets.first().map(|t| t.host.as_str()).unwrap_or("-");
        self.record_all(
            envelope,
            &pending,
            last_source,
            hop,
            false,
            &if last_error.starts_with("4.7.10 ") || last_error.starts_with("4.7.0 ") {
                format!("451 {last_error}")
            } else {
                format!("451 4.4.1 {last_error}")
            },
        );
        Vec::new()
    }

    /// A ready session from `source` to `target` (one of `site_targets`): an idle one from the
    /// cache or a new one, within the (source, site) pair's limits. Waiting for a limit gives the
    /// scheduler slot back.
    async fn session(
        &self,
        envelope: &Envelope,
        source: Option<IpAddr>,
        target: &Target,
        site_targets: &[Target],
        site: &str,
        slot: &mut DeliverySlot,
    ) -> Result<(SmtpClient, bool), NoSession> {
        let pair = self.shaper.pair(source, site);
        pair.message_allowed(slot)
            .await
            .map_err(|_| NoSession::Stopped)?;
        loop {
            if let Some(client) = self.cache.take((source, target.addr)) {
                let tls_ok = client.tls_version.is_some()
                    || !(target.require_tls || self.requires_tls(envelope));
                let verify_ok = client.verified || !target.verify_tls;
                if tls_ok && verify_ok {
                    return Ok((client, true));
                }
                // A plaintext connection never carries mail whose configuration set requires
                // TLS; closing it makes room for one that does.
                client.quit().await;
                continue;
            }
            let permit = match pair.try_connection() {
                Some(permit) => permit,
                None if self
                    .close_idle_elsewhere(source, target, site_targets)
                    .await =>
                {
                    continue;
                }
                None => {
                    slot.release();
                    let waited = slot.wait(pair.connection_or_returned()).await;
                    match waited.map_err(|_| NoSession::Stopped)? {
                        Some(permit) => permit,
                        // A connection went back to the cache: take it from there.
                        None => continue,
                    }
                }
            };
            pair.connect_allowed(slot)
                .await
                .map_err(|_| NoSession::Stopped)?;
            return self
                .open_session(envelope, source, target, (pair, permit))
                .await
                .map(|client| (client, false));
        }
    }

    /// At the pair's connection limit: closes one idle connection from `source` to another
    /// address of the same site, so its place goes to `target` now instead of after its idle
    /// timeout. Returns true if one was closed.
    async fn close_idle_elsewhere(
        &self,
        source: Option<IpAddr>,
        target: &Target,
        site_targets: &[Target],
    ) -> bool {
        for other in site_targets.iter().filter(|t| t.addr != target.addr) {
            if let Some(client) = self.cache.take((source, other.addr)) {
                client.quit().await;
                return true;
            }
        }
        false
    }

    pub(super) async fn open_session(
        &self,
        envelope: &Envelope,
        source: Option<IpAddr>,
        target: &Target,
        shaping: (Arc<Pair>, ConnectionPermit),
    ) -> Result<SmtpClient, NoSession> {
        let stream = match connect_from(source, target.addr, self.timeouts.connect).await {
            Ok(stream) => stream,
            Err(error @ (ConnectError::AddressNotAvailable(_) | ConnectError::Bind { .. })) => {
                if let Some(address) = source {
                    crate::metrics::METRICS
                        .bind_failures
                        .get_or_create(&crate::metrics::IpLabels {
                            source_ip: address.to_string(),
                        })
                        .inc();
                    self.report_unavailable(address, &envelope.pool, &error);
                }
                return Err(NoSession::NoSource);
            }
            Err(error) => {
                tracing::warn!(id = %envelope.id, pool = %envelope.pool, source_ip = ?source, next_hop = %target.addr, %error, "connect failed");
                return Err(NoSession::Failed(error.to_string()));
            }
        };
        let ehlo_name = self.ehlo_name(&envelope.pool, source);
        let tls = if target.verify_tls {
            &self.verifying_tls
        } else {
            &self.tls
        };
        let mut client = match SmtpClient::open(
            stream,
            source,
            &ehlo_name,
            &target.host,
            Some(tls),
            self.timeouts,
        )
        .await
        {
            Ok(client) => client,
            Err(error) => {
                // Refused at the greeting or EHLO because of the source IP's reputation.
                if let ClientError::Rejected { stage, reply } = &error
                    && self.health.refusal(source, &shaping.0.site, reply)
                {
                    tracing::warn!(id = %envelope.id, pool = %envelope.pool, source_ip = ?source, next_hop = %target.addr, stage, %reply, "refused because of the source IP");
                    return Err(NoSession::Refused(reply.to_string()));
                }
                tracing::warn!(id = %envelope.id, pool = %envelope.pool, source_ip = ?source, next_hop = %target.addr, %error, "session setup failed");
                let tls_failed = matches!(error, ClientError::Tls(_));
                let reason = format!("{} ({})", error, target.addr);
                // 4.7.10 is "encryption needed" (RFC 5248): the failure is about TLS, not the host.
                return Err(NoSession::Failed(if tls_failed {
                    format!("4.7.10 {reason}")
                } else {
                    reason
                }));
            }
        };
        client.verified = target.verify_tls && client.tls_version.is_some();
        client.max_transactions = shaping.0.limits.max_messages_per_connection;
        client.shaping = Some(shaping);
        if client.tls_version.is_none() && (target.require_tls || self.requires_tls(envelope)) {
            tracing::warn!(id = %envelope.id, pool = %envelope.pool, next_hop = %target.addr, "TLS required but not offered; not sending in plaintext");
            client.quit().await;
            return Err(NoSession::Failed(format!(
                "4.7.10 TLS is required for this message but {} does not offer STARTTLS",
                target.addr
            )));
        }
        Ok(client)
    }

    /// The message's configuration set has `tls_policy = "REQUIRE"`.
    fn requires_tls(&self, envelope: &Envelope) -> bool {
        let registry = self.registry.load();
        envelope
            .configuration_set
            .as_deref()
            .and_then(|name| registry.configuration_set(name))
            .and_then(|set| set.tls_policy)
            == Some(TlsPolicy::Require)
    }

    fn ehlo_name(&self, pool: &str, source: Option<IpAddr>) -> String {
        let registry = self.registry.load();
        let configured = match (registry.pool_members(pool), source) {
            (PoolMembers::Addresses(list), Some(address)) => list
                .into_iter()
                .find(|s| s.address == address)
                .and_then(|s| s.ehlo_hostname),
            _ => None,
        };
        configured.unwrap_or_else(|| self.hostname.clone())
    }
}
