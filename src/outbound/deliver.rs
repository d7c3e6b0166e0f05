//! One delivery attempt for one message: its recipients grouped by site, a source IP picked
//! for each site ([`SourcePicker`]), a session opened or reused within the site's limits, and
//! every recipient's outcome recorded in an [`AttemptReport`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::Outbound;
use super::client::{ClientError, SmtpClient};
use super::connect::{ConnectError, connect_from};
use super::next_hop::{ResolveError, Target};
use super::report::{AttemptReport, Deferral, Failure, Outcome, RecipientOutcome};
use super::select::{NoPick, Picked, PickerContext, SourcePicker};
use super::shaping::{
    ConnectionPermit, Pair, ReleasableSlot, WaitingTurn, site_of, unless_stopped,
};
use super::transaction::Hop;
use super::warmup;
use crate::registry::TlsPolicy;
use crate::spool::Envelope;

/// The recipients of one site in one attempt, and why they would be deferred now.
struct Group<'a> {
    envelope: &'a Envelope,
    /// The envelope sender on the wire: the message's, or a return path naming the recipient.
    sender: &'a str,
    /// The site's next-hop addresses, in order.
    targets: &'a [Target],
    site: &'a str,
    /// Recipients not yet delivered, failed or refused for good.
    pending: Vec<usize>,
    last_source: Option<IpAddr>,
    /// The server that refused the last source, if one did.
    refused_by: Option<IpAddr>,
    why: Deferral,
}

/// After trying one next-hop address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Every recipient has its outcome (or the attempt was told to stop).
    Finished,
    /// Try the site's next address.
    NextTarget,
}

/// Why no session could be had from a source to a next-hop address.
pub(super) enum NoSession {
    /// The source address cannot be bound on this host.
    NoSource,
    /// The next hop refused the source IP (greeting or EHLO) for reputation reasons.
    Refused(String),
    /// The delivery was told to stop while it waited for a shaping limit.
    Stopped,
    /// Anything else: the recipients are deferred for this reason.
    Failed(Deferral),
}

/// Why the recipients of a site are deferred when no source is left, given why the picker has
/// none; `None` keeps the reason found so far (the last failure).
fn deferral_for(none: NoPick, pool: &str, site: &str, target: &Target) -> Option<Deferral> {
    let pool = pool.to_string();
    match none {
        NoPick::OtherFamily => Some(Deferral::NoSourceOfFamily {
            pool,
            family: if target.addr.is_ipv4() {
                "IPv4"
            } else {
                "IPv6"
            },
            next_hop: target.host.clone(),
        }),
        NoPick::WarmupCapped => Some(Deferral::WarmupCap { pool }),
        NoPick::Suspended => Some(Deferral::SiteSuspended {
            pool,
            site: site.to_string(),
        }),
        NoPick::Unbindable => Some(Deferral::Unbindable { pool }),
        NoPick::Exhausted => None,
    }
}

impl Outbound {
    /// Tries every pending recipient of `envelope` once. `slot` is given back to the scheduler
    /// while the attempt waits for a shaping limit. Recipients the attempt never got to (it was
    /// told to stop while waiting) have no outcome in the report.
    pub async fn deliver(
        &self,
        envelope: &Envelope,
        slot: &mut dyn ReleasableSlot,
    ) -> AttemptReport {
        let mut report = AttemptReport::new(envelope.recipients.len());
        let mut by_domain: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (index, recipient) in envelope.pending() {
            by_domain.entry(recipient.domain()).or_default().push(index);
        }
        let mut groups: Vec<(Vec<Target>, Vec<usize>)> = Vec::new();
        for (domain, indexes) in by_domain {
            let resolved = self.resolver.resolve(&domain).await.map(|mut targets| {
                targets.retain(|target| !self.is_own_listener(target.addr));
                targets
            });
            match resolved {
                Ok(targets) if targets.is_empty() => {
                    tracing::warn!(id = %envelope.id, domain, "every next hop is this relay: mail loop");
                    let result = Outcome::Failed(Failure::LoopsBack {
                        domain: domain.clone(),
                    });
                    for index in indexes {
                        let outcome = RecipientOutcome::local(result.clone(), None, &domain);
                        report.record(index, outcome);
                    }
                }
                Ok(targets) => match groups.iter_mut().find(|(known, _)| *known == targets) {
                    Some((_, group)) => group.extend(indexes),
                    None => groups.push((targets, indexes)),
                },
                Err(error) => {
                    let result = match error {
                        ResolveError::Permanent(reason) => {
                            Outcome::Failed(Failure::NoSuchDomain(reason))
                        }
                        ResolveError::Temporary(detail) => {
                            Outcome::Deferred(Deferral::Dns { detail })
                        }
                    };
                    for index in indexes {
                        let outcome = RecipientOutcome::local(result.clone(), None, &domain);
                        report.record(index, outcome);
                    }
                }
            }
        }
        for (targets, indexes) in groups {
            match self
                .return_path
                .get()
                .filter(|_| !envelope.sender.is_empty())
            {
                // One transaction per recipient, each with its own return path (VERP).
                Some(return_path) => {
                    for index in indexes {
                        let sender = return_path
                            .sender_for(&envelope.id, index)
                            .unwrap_or_else(|| envelope.sender.clone());
                        let group = (&targets[..], &[index][..], sender.as_str());
                        self.deliver_group(envelope, group, slot, &mut report).await;
                    }
                }
                None => {
                    let group = (&targets[..], &indexes[..], envelope.sender.as_str());
                    self.deliver_group(envelope, group, slot, &mut report).await;
                }
            }
        }
        report
    }

    /// Delivers the recipients `indexes`, whose domains share the next hops `targets` (one site),
    /// from a source IP of the message's pool, trying the pool's next IP when the site refuses
    /// one. What cannot be delivered now is deferred with the last reason found.
    async fn deliver_group(
        &self,
        envelope: &Envelope,
        (targets, indexes, sender): (&[Target], &[usize], &str),
        slot: &mut dyn ReleasableSlot,
        report: &mut AttemptReport,
    ) {
        let registry = self.registry.load_full();
        let site = site_of(targets);
        let context = PickerContext {
            registry: &registry,
            health: &self.health,
            ledger: &self.warmup_ledger,
            selector: &self.selector,
            site: &site,
            today: warmup::today(),
        };
        let mut picker = SourcePicker::new(&registry, &envelope.pool, envelope.last_source_ip);
        let why = if picker.none_in_rotation() {
            Deferral::NotInRotation {
                pool: envelope.pool.clone(),
            }
        } else {
            Deferral::Unreachable {
                detail: "no next-hop address could be reached".into(),
            }
        };
        let mut group = Group {
            envelope,
            sender,
            targets,
            site: &site,
            pending: indexes.to_vec(),
            last_source: None,
            refused_by: None,
            why,
        };
        for target in targets {
            let flow = self
                .try_target(&mut group, target, &mut picker, &context, slot, report)
                .await;
            if flow == Flow::Finished {
                return;
            }
        }
        let hop = targets.first().map(|t| t.host.as_str()).unwrap_or("-");
        for &index in &group.pending {
            let deferred = Outcome::Deferred(group.why.clone());
            let mut outcome = RecipientOutcome::local(deferred, group.last_source, hop);
            outcome.remote_mta = group.refused_by;
            report.record(index, outcome);
        }
    }

    /// Tries the group's pending recipients at one next-hop address, from one source after
    /// another while the site refuses them. `Finished` when nothing is left to do for the group.
    async fn try_target(
        &self,
        group: &mut Group<'_>,
        target: &Target,
        picker: &mut SourcePicker,
        context: &PickerContext<'_>,
        slot: &mut dyn ReleasableSlot,
        report: &mut AttemptReport,
    ) -> Flow {
        let site = group.site;
        let refused = |pool: &str, reply: String| Deferral::SiteRefused {
            pool: pool.to_string(),
            site: site.to_string(),
            reply,
        };
        loop {
            let picked = match picker.next(target.addr.is_ipv4(), context) {
                Ok(picked) => picked,
                Err(none) => {
                    if let Some(why) = deferral_for(none, picker.pool(), site, target) {
                        group.why = why;
                    }
                    return Flow::NextTarget;
                }
            };
            let source = picked.address;
            group.last_source = source.or(group.last_source);
            let session = self
                .session(group.envelope, &picked, target, group.targets, site, slot)
                .await;
            match session {
                Ok((client, reused)) => {
                    report.last_source_ip = source;
                    let hop = Hop {
                        picked: &picked,
                        target,
                        site,
                        sender: group.sender,
                    };
                    let pending = &group.pending;
                    let Some(refusal) = self
                        .transact(group.envelope, (client, reused), hop, pending, report)
                        .await
                    else {
                        return Flow::Finished;
                    };
                    // The site refused this IP: the same recipients go out from another IP of
                    // the pool now, or wait if there is none.
                    group.pending = refusal.recipients;
                    group.refused_by = Some(refusal.remote_mta);
                    group.why = refused(picker.pool(), refusal.reply);
                }
                Err(NoSession::NoSource) => {
                    group.why = Deferral::NoUsableSource {
                        pool: picker.pool().to_string(),
                    }
                }
                Err(NoSession::Refused(reason)) => group.why = refused(picker.pool(), reason),
                // Nothing was attempted: the recipients stay as they were.
                Err(NoSession::Stopped) => return Flow::Finished,
                Err(NoSession::Failed(deferral)) => {
                    group.why = deferral;
                    return Flow::NextTarget;
                }
            }
            // Whatever went wrong was about this source: try the pool's next one.
            match source {
                Some(address) => picker.exclude(address),
                None => return Flow::NextTarget,
            }
        }
    }

    /// A ready session from `source` to `target` (one of `site_targets`): an idle one from the
    /// cache or a new one, within the (source, site) pair's limits. Waiting for a limit gives the
    /// scheduler slot back.
    async fn session(
        &self,
        envelope: &Envelope,
        picked: &Picked,
        target: &Target,
        site_targets: &[Target],
        site: &str,
        slot: &mut dyn ReleasableSlot,
    ) -> Result<(SmtpClient, bool), NoSession> {
        let source = picked.address;
        let pair = self.shaper.pair(source, site);
        pair.message_allowed(slot)
            .await
            .map_err(|_| NoSession::Stopped)?;
        self.site_limits
            .message_allowed(site, pair.limits().site_max_message_rate, slot)
            .await
            .map_err(|_| NoSession::Stopped)?;
        // Set once this delivery waits for a connection: from then on it is in the queue.
        let mut turn: Option<WaitingTurn> = None;
        loop {
            // Deliveries already waiting go first: a newcomer neither takes an idle connection
            // nor opens one while they wait.
            let behind_others = turn.is_none() && pair.has_waiters();
            let idle = if behind_others {
                None
            } else {
                self.cache.take((source, target.addr))
            };
            if let Some(client) = idle {
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
            let permit = match (!behind_others).then(|| pair.try_connection()).flatten() {
                Some(permit) => permit,
                None if !behind_others
                    && self
                        .close_idle_elsewhere(source, target, site_targets)
                        .await =>
                {
                    continue;
                }
                None => {
                    slot.release();
                    turn.get_or_insert_with(|| pair.waiting_turn());
                    let waited = unless_stopped(slot, pair.connection_or_returned()).await;
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
            let site_place = self
                .site_limits
                .connection(site, pair.limits().site_max_connections, slot)
                .await
                .map_err(|_| NoSession::Stopped)?;
            let permit = permit.with_site(site_place);
            return self
                .open_session(envelope, picked, target, (pair, permit))
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

    /// Connects from `picked` to `target` and sets the session up (greeting, EHLO, STARTTLS),
    /// holding one of the pair's connection permits for as long as the connection lives.
    pub(super) async fn open_session(
        &self,
        envelope: &Envelope,
        picked: &Picked,
        target: &Target,
        shaping: (Arc<Pair>, ConnectionPermit),
    ) -> Result<SmtpClient, NoSession> {
        let source = picked.address;
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
                return Err(NoSession::Failed(Deferral::Unreachable {
                    detail: error.to_string(),
                }));
            }
        };
        // The IP's own name, whichever pool it was picked from (the overflow pool included);
        // without one, its forward-confirmed PTR name, else the relay's host name.
        let confirmed = match (&picked.ehlo_hostname, source) {
            (None, Some(address)) => self.health.reverse_dns.confirmed_name(address),
            _ => None,
        };
        let ehlo_name = super::reverse_dns::ehlo_name(
            picked.ehlo_hostname.as_deref(),
            confirmed.as_deref(),
            &self.hostname,
        );
        let tls = if target.verify_tls {
            &self.verifying_tls
        } else {
            &self.tls
        };
        let mut client = match SmtpClient::open(
            stream,
            source,
            ehlo_name,
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
                    && self.refuses_source(source, &shaping.0.site, reply)
                {
                    tracing::warn!(id = %envelope.id, pool = %envelope.pool, source_ip = ?source, next_hop = %target.addr, stage, %reply, "refused because of the source IP");
                    return Err(NoSession::Refused(reply.to_string()));
                }
                tracing::warn!(id = %envelope.id, pool = %envelope.pool, source_ip = ?source, next_hop = %target.addr, %error, "session setup failed");
                let detail = format!("{} ({})", error, target.addr);
                return Err(NoSession::Failed(match error {
                    ClientError::Tls(_) => Deferral::TlsRequired { detail },
                    _ => Deferral::Unreachable { detail },
                }));
            }
        };
        client.verified = target.verify_tls && client.tls_version.is_some();
        client.max_transactions = shaping.0.limits().max_messages_per_connection;
        client.shaping = Some(shaping);
        if client.tls_version.is_none() && (target.require_tls || self.requires_tls(envelope)) {
            tracing::warn!(id = %envelope.id, pool = %envelope.pool, next_hop = %target.addr, "TLS required but not offered; not sending in plaintext");
            client.quit().await;
            return Err(NoSession::Failed(Deferral::TlsRequired {
                detail: format!(
                    "TLS is required for this message but {} does not offer STARTTLS",
                    target.addr
                ),
            }));
        }
        Ok(client)
    }

    /// Whether `reply` refuses the source IP rather than the message or the recipient (see
    /// [`super::classify`]); if it does, the (source, site) pair is suspended.
    pub(super) fn refuses_source(
        &self,
        source: Option<IpAddr>,
        site: &str,
        reply: &super::client::RemoteReply,
    ) -> bool {
        let Some(rule) = self.health.ip_refusal(reply) else {
            return false;
        };
        if let Some(address) = source {
            let reply = reply.to_string();
            self.health
                .refused(address, site, &rule.name, &reply, std::time::Instant::now());
        }
        true
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
}
