//! One SMTP transaction on an open session, and recording what each recipient's reply means.

use std::net::IpAddr;

use super::Outbound;
use super::client::{ClientError, Content, MailRequest, RemoteReply, SmtpClient};
use super::next_hop::Target;
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

impl Outbound {
    /// Runs one transaction; a stale reused connection is replaced once by a fresh one.
    ///
    /// Returns the recipients the site refused because of the source IP's reputation: they are
    /// still pending and should go out from another IP of the pool.
    pub(super) async fn transact(
        &self,
        envelope: &mut Envelope,
        mut client: SmtpClient,
        mut reused: bool,
        target: &Target,
        site: &str,
        indexes: &[usize],
    ) -> Vec<usize> {
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
            return Vec::new();
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
                    return Vec::new();
                }
            };
            let content = match &mut loaded {
                Loaded::Memory(bytes) => Content::Memory(bytes),
                Loaded::File(reader) => Content::Stream(reader),
            };
            match client.send(&request, content).await {
                Ok(outcome) => {
                    let mut refused = Vec::new();
                    for (&index, reply) in indexes.iter().zip(&outcome.replies) {
                        if self.record_reply(envelope, index, source, target, site, reply) {
                            refused.push(index);
                        }
                        envelope.recipients[index].tls_version = client.tls_version.clone();
                    }
                    self.give_back(client).await;
                    return refused;
                }
                Err(error @ (ClientError::Io(_) | ClientError::Closed)) if reused => {
                    tracing::debug!(id = %envelope.id, %error, "reused connection was stale; opening a new one");
                    reused = false;
                    // The fresh connection takes over the stale one's place in the pair's limit.
                    let Some(shaping) = client.shaping.take() else {
                        return Vec::new();
                    };
                    drop(client);
                    match self.open_session(envelope, source, target, shaping).await {
                        Ok(fresh) => client = fresh,
                        Err(_) => {
                            let reply = format!("451 4.4.2 {error}");
                            self.record_all(envelope, indexes, source, &target.host, false, &reply);
                            return Vec::new();
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
                    return Vec::new();
                }
            }
        }
    }

    /// Puts a connection back for reuse (waking one delivery waiting for its pair) or closes it.
    pub(super) async fn give_back(&self, client: SmtpClient) {
        let pair = client.shaping.as_ref().map(|(pair, _)| pair.clone());
        match self.cache.put(client) {
            Some(client) => client.quit().await,
            None => {
                if let Some(pair) = pair {
                    pair.connection_returned();
                }
            }
        }
    }

    /// Records one recipient's reply. Returns true when the site refused the source IP (see
    /// [`super::classify`]): the recipient stays pending, and the pair is suspended.
    fn record_reply(
        &self,
        envelope: &mut Envelope,
        index: usize,
        source: Option<IpAddr>,
        target: &Target,
        site: &str,
        reply: &RemoteReply,
    ) -> bool {
        let hop = format!("{} ({})", target.host, target.addr);
        if self.health.refusal(source, site, reply) {
            envelope.recipients[index].remote_mta = Some(target.addr.ip().to_string());
            // Never a bounce: the refusal is about the IP, not the recipient.
            self.record(envelope, index, source, &hop, false, &reply.to_string());
            return true;
        }
        if reply.is_positive() {
            if let Some(address) = source {
                self.health.delivered(address, site);
            }
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
            false
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
            false
        }
    }

    /// [`Outbound::record`] for every recipient of a transaction.
    pub(super) fn record_all(
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
    pub(super) fn record(
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
