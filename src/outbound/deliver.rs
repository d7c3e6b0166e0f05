//! One delivery attempt for one message.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use super::Outbound;
use super::client::{ClientError, Content, MailRequest, RemoteReply, SmtpClient};
use super::connect::{ConnectError, connect_from};
use super::next_hop::{ResolveError, Target};
use super::warmup::{self, WarmupState};
use crate::registry::{PoolMembers, TlsPolicy};
use crate::spool::{Envelope, RecipientState};

/// Content up to this size is read from the spool in one piece; larger content is streamed.
const IN_MEMORY_CONTENT: u64 = 4 * 1024 * 1024;

/// A message's content as read for one attempt.
enum Loaded {
    Memory(Vec<u8>),
    File(tokio::io::Take<tokio::io::BufReader<tokio::fs::File>>),
}

/// Blocking: the first `size` bytes of a spooled message file (its content).
fn read_content(path: &std::path::Path, size: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut content = Vec::with_capacity(size as usize);
    std::fs::File::open(path)?
        .take(size)
        .read_to_end(&mut content)?;
    if content.len() as u64 != size {
        return Err(std::io::Error::other(format!(
            "spool file has {} bytes of content, expected {size}",
            content.len()
        )));
    }
    Ok(content)
}

/// Why no session could be had with any address of a next hop.
enum NoSession {
    /// Every usable source of the pool was tried or none exists for this address family.
    NoSource,
    Failed(String),
}

impl Outbound {
    /// Tries every pending recipient once, updating their states in `envelope`.
    pub async fn deliver(&self, envelope: &mut Envelope) {
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
        for (targets, indexes) in groups {
            self.deliver_group(envelope, &targets, &indexes).await;
        }
    }

    async fn deliver_group(&self, envelope: &mut Envelope, targets: &[Target], indexes: &[usize]) {
        let registry = self.registry.load_full();
        let today = warmup::today();
        // The pool sources come from; it becomes the overflow pool when warm-up caps are used up.
        let mut pool = envelope.pool.clone();
        let mut members = registry.pool_members(&pool);
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
                        let candidates: Vec<(IpAddr, u32)> = list
                            .iter()
                            .filter(|s| {
                                s.address.is_ipv4() == target.addr.is_ipv4()
                                    && !unusable.contains(&s.address)
                                    && !capped.contains(&s.address)
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
                match self.session(envelope, source, target).await {
                    Ok((client, reused)) => {
                        envelope.last_source_ip = source;
                        self.transact(envelope, client, reused, target, indexes)
                            .await;
                        return;
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
            indexes,
            last_source,
            hop,
            false,
            &if last_error.starts_with("4.7.10 ") || last_error.starts_with("4.7.0 ") {
                format!("451 {last_error}")
            } else {
                format!("451 4.4.1 {last_error}")
            },
        );
    }

    /// A ready session from `source` to `target`: an idle one from the cache or a new one.
    async fn session(
        &self,
        envelope: &Envelope,
        source: Option<IpAddr>,
        target: &Target,
    ) -> Result<(SmtpClient, bool), NoSession> {
        if let Some(client) = self.cache.take((source, target.addr)) {
            let tls_ok = client.tls_version.is_some()
                || !(target.require_tls || self.requires_tls(envelope));
            let verify_ok = client.verified || !target.verify_tls;
            if tls_ok && verify_ok {
                return Ok((client, true));
            }
            // A plaintext connection never carries mail whose configuration set requires TLS.
            self.give_back(client).await;
        }
        self.open_session(envelope, source, target)
            .await
            .map(|client| (client, false))
    }

    async fn open_session(
        &self,
        envelope: &Envelope,
        source: Option<IpAddr>,
        target: &Target,
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
        if let Some(address) = source {
            self.report_available(address);
        }
        let ehlo_name = self.ehlo_name(&envelope.pool, source);
        let tls = if target.verify_tls {
            &self.verifying_tls
        } else {
            &self.tls
        };
        let mut client = SmtpClient::open(stream, source, &ehlo_name, &target.host, Some(tls), self.timeouts)
            .await
            .map_err(|error| {
                tracing::warn!(id = %envelope.id, pool = %envelope.pool, source_ip = ?source, next_hop = %target.addr, %error, "session setup failed");
                let tls_failed = matches!(error, ClientError::Tls(_));
                let reason = format!("{} ({})", error, target.addr);
                // 4.7.10 is "encryption needed" (RFC 5248): the failure is about TLS, not the host.
                NoSession::Failed(if tls_failed { format!("4.7.10 {reason}") } else { reason })
            })?;
        client.verified = target.verify_tls && client.tls_version.is_some();
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

    /// Runs one transaction; a stale reused connection is replaced once by a fresh one.
    async fn transact(
        &self,
        envelope: &mut Envelope,
        mut client: SmtpClient,
        mut reused: bool,
        target: &Target,
        indexes: &[usize],
    ) {
        let recipients: Vec<String> = indexes
            .iter()
            .map(|&i| envelope.recipients[i].address.clone())
            .collect();
        let source = client.source;
        if envelope.smtputf8 && !client.capabilities.smtputf8 {
            self.record_all(
                envelope,
                indexes,
                source,
                &target.host,
                true,
                "553 5.6.7 the next hop does not support SMTPUTF8",
            );
            self.give_back(client).await;
            return;
        }
        loop {
            let request = MailRequest {
                sender: &envelope.sender,
                recipients: &recipients,
                size: envelope.size,
                eight_bit_mime: envelope.eight_bit_mime,
                smtputf8: envelope.smtputf8,
            };
            let path = self.spool.content_path(&envelope.id);
            let loaded = if envelope.size <= IN_MEMORY_CONTENT {
                let path = path.clone();
                let size = envelope.size;
                tokio::task::spawn_blocking(move || read_content(&path, size))
                    .await
                    .unwrap_or_else(|error| Err(std::io::Error::other(error)))
                    .map(Loaded::Memory)
            } else {
                tokio::fs::File::open(&path).await.map(|file| {
                    // The file holds the envelope after the content: read only the content.
                    Loaded::File(tokio::io::AsyncReadExt::take(
                        tokio::io::BufReader::with_capacity(64 * 1024, file),
                        envelope.size,
                    ))
                })
            };
            let mut loaded = match loaded {
                Ok(loaded) => loaded,
                Err(error) => {
                    tracing::error!(id = %envelope.id, path = %path.display(), %error, "cannot read the spooled content");
                    let reply = format!("451 4.3.0 cannot read the spooled content: {error}");
                    self.record_all(envelope, indexes, source, &target.host, false, &reply);
                    self.give_back(client).await;
                    return;
                }
            };
            let content = match &mut loaded {
                Loaded::Memory(bytes) => Content::Memory(bytes),
                Loaded::File(reader) => Content::Stream(reader),
            };
            match client.send(&request, content).await {
                Ok(outcome) => {
                    for (&index, reply) in indexes.iter().zip(&outcome.replies) {
                        self.record_reply(envelope, index, source, target, reply);
                        envelope.recipients[index].tls_version = client.tls_version.clone();
                    }
                    self.give_back(client).await;
                    return;
                }
                Err(error @ (ClientError::Io(_) | ClientError::Closed)) if reused => {
                    tracing::debug!(id = %envelope.id, %error, "reused connection was stale; opening a new one");
                    reused = false;
                    match self.open_session(envelope, source, target).await {
                        Ok(fresh) => client = fresh,
                        Err(_) => {
                            let reply = format!("451 4.4.2 {error}");
                            self.record_all(envelope, indexes, source, &target.host, false, &reply);
                            return;
                        }
                    }
                }
                Err(error) => {
                    self.record_all(
                        envelope,
                        indexes,
                        source,
                        &target.host,
                        false,
                        &format!("451 4.4.2 {error} ({})", target.addr),
                    );
                    return;
                }
            }
        }
    }

    async fn give_back(&self, client: SmtpClient) {
        if let Some(client) = self.cache.put(client) {
            client.quit().await;
        }
    }

    fn record_reply(
        &self,
        envelope: &mut Envelope,
        index: usize,
        source: Option<IpAddr>,
        target: &Target,
        reply: &RemoteReply,
    ) {
        let hop = format!("{} ({})", target.host, target.addr);
        if reply.is_positive() {
            let recipient = &mut envelope.recipients[index];
            recipient.state = RecipientState::Delivered;
            recipient.last_reply = Some(reply.to_string());
            recipient.remote_mta = Some(target.addr.ip().to_string());
            recipient.source_ip = source;
            tracing::info!(
                id = %envelope.id,
                configuration_set = envelope.configuration_set.as_deref().unwrap_or("-"),
                pool = %envelope.pool,
                source_ip = %source.map_or("host-default".to_string(), |s| s.to_string()),
                next_hop = %hop,
                recipient = %recipient.address,
                reply = %reply,
                "delivered"
            );
        } else {
            envelope.recipients[index].remote_mta = Some(target.addr.ip().to_string());
            self.record(
                envelope,
                index,
                source,
                &hop,
                reply.is_permanent(),
                &reply.to_string(),
            );
        }
    }

    /// [`Outbound::record`] for every recipient of a transaction.
    fn record_all(
        &self,
        envelope: &mut Envelope,
        indexes: &[usize],
        source: Option<IpAddr>,
        hop: &str,
        permanent: bool,
        reply: &str,
    ) {
        for &index in indexes {
            self.record(envelope, index, source, hop, permanent, reply);
        }
    }

    /// Records a deferral or a permanent failure and logs it with everything an operator needs.
    fn record(
        &self,
        envelope: &mut Envelope,
        index: usize,
        source: Option<IpAddr>,
        hop: &str,
        permanent: bool,
        reply: &str,
    ) {
        let recipient = &mut envelope.recipients[index];
        recipient.last_reply = Some(reply.to_string());
        recipient.source_ip = source;
        let source_ip = source.map_or("-".to_string(), |s| s.to_string());
        let configuration_set = envelope.configuration_set.as_deref().unwrap_or("-");
        if permanent {
            recipient.state = RecipientState::Failed;
            tracing::warn!(id = %envelope.id, configuration_set, pool = %envelope.pool, source_ip, next_hop = hop, recipient = %recipient.address, reply, "failed permanently");
        } else {
            tracing::warn!(id = %envelope.id, configuration_set, pool = %envelope.pool, source_ip, next_hop = hop, recipient = %recipient.address, reply, attempt = envelope.attempts, "deferred");
        }
    }
}
