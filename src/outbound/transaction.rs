//! One SMTP transaction on an open session, and what each recipient's reply means.

use std::net::IpAddr;

use super::Outbound;
use super::client::zero_copy::SpooledContent;
use super::client::{ClientError, Content, MailRequest, RemoteReply, SmtpClient};
use super::next_hop::Target;
use super::report::{AttemptReport, Deferral, Failure, Outcome, RecipientOutcome};
use super::select::Picked;
use crate::spool::Envelope;

/// Recipients the site refused because of the source IP's reputation: they are still pending
/// and should go out from another IP of the pool.
pub(super) struct Refusal {
    pub(super) recipients: Vec<usize>,
    pub(super) reply: String,
    pub(super) remote_mta: IpAddr,
}

/// Where a transaction runs: the source it was picked from, the next hop and its site.
pub(super) struct Hop<'a> {
    pub(super) picked: &'a Picked,
    pub(super) target: &'a Target,
    pub(super) site: &'a str,
    /// The reverse path for MAIL FROM.
    pub(super) sender: &'a str,
}

/// Content up to this size is read from the spool in one piece; larger content is streamed.
const IN_MEMORY_CONTENT: u64 = 4 * 1024 * 1024;

/// A message's content as read for one attempt.
enum Loaded {
    Memory(Vec<u8>),
    /// Still in memory since it was received (first attempts).
    Held(std::sync::Arc<crate::spool::HeldContent>),
    /// In its segment, sendable as it is over plain TCP.
    AsIs(SpooledContent),
    File(tokio::io::Take<tokio::io::BufReader<tokio::fs::File>>),
}

/// Blocking: the first `size` bytes of a spooled message file (its content).
pub(super) fn read_content(
    path: &std::path::Path,
    offset: u64,
    size: u64,
) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut content = vec![0; size as usize];
    std::fs::File::open(path)?.read_exact_at(&mut content, offset)?;
    Ok(content)
}

/// The segment file at `path`, positioned at `offset`.
async fn open_at(path: &std::path::Path, offset: u64) -> std::io::Result<tokio::fs::File> {
    use tokio::io::AsyncSeekExt;
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    Ok(file)
}

impl Outbound {
    /// Runs one transaction for `indexes` and records each recipient's outcome in `report`; a
    /// stale reused connection is replaced once by a fresh one. Returns the recipients the site
    /// refused because of the source IP (not recorded: the caller tries another IP).
    pub(super) async fn transact(
        &self,
        envelope: &Envelope,
        (mut client, mut reused): (SmtpClient, bool),
        hop: Hop<'_>,
        indexes: &[usize],
        report: &mut AttemptReport,
    ) -> Option<Refusal> {
        let source = hop.picked.address;
        let host = &hop.target.host;
        let all = |report: &mut AttemptReport, result: Outcome| {
            for &index in indexes {
                report.record(index, RecipientOutcome::local(result.clone(), source, host));
            }
        };
        if envelope.smtputf8 && !client.capabilities.smtputf8 {
            all(report, Outcome::Failed(Failure::Smtputf8Unsupported));
            self.give_back(client).await;
            return None;
        }
        let recipients: Vec<String> = indexes
            .iter()
            .map(|&i| envelope.recipients[i].address.clone())
            .collect();
        let request = MailRequest {
            sender: hop.sender,
            recipients: &recipients,
            size: envelope.size,
            eight_bit_mime: envelope.eight_bit_mime,
            smtputf8: envelope.smtputf8,
        };
        loop {
            let plain = client.tls_version.is_none();
            let mut loaded = match self.load_content(envelope, plain).await {
                Ok(loaded) => loaded,
                Err(detail) => {
                    all(report, Outcome::Deferred(Deferral::Spool { detail }));
                    self.give_back(client).await;
                    return None;
                }
            };
            let content = match &mut loaded {
                Loaded::Memory(bytes) => Content::Memory(bytes),
                Loaded::Held(held) => Content::Memory(held.content()),
                Loaded::AsIs(spooled) => Content::AsIs(spooled),
                Loaded::File(reader) => Content::Stream(reader),
            };
            let error = match client.send(&request, content).await {
                Ok(sent) => {
                    let refusal =
                        self.record_replies(indexes, &sent.replies, &client, &hop, report);
                    self.give_back(client).await;
                    return refusal;
                }
                Err(error) => error,
            };
            let stale = reused && matches!(error, ClientError::Io(_) | ClientError::Closed);
            let shaping = client.shaping.take();
            drop(client);
            let fresh = match shaping {
                Some(shaping) if stale => {
                    tracing::debug!(id = %envelope.id, %error, "reused connection was stale; opening a new one");
                    // The fresh connection takes over the stale one's place in the pair's limit.
                    self.open_session(envelope, hop.picked, hop.target, shaping)
                        .await
                        .ok()
                }
                _ => None,
            };
            match fresh {
                Some(fresh) => (client, reused) = (fresh, false),
                None => {
                    let detail = if stale {
                        error.to_string()
                    } else {
                        format!("{error} ({})", hop.target.addr)
                    };
                    all(
                        report,
                        Outcome::Deferred(Deferral::ConnectionLost { detail }),
                    );
                    return None;
                }
            }
        }
    }

    /// The message's content for one attempt: in memory up to [`IN_MEMORY_CONTENT`], streamed
    /// from the spool file beyond.
    async fn load_content(&self, envelope: &Envelope, plain: bool) -> Result<Loaded, String> {
        if let Some(held) = &envelope.in_memory {
            return Ok(Loaded::Held(held.clone()));
        }
        let fail = |error: std::io::Error| {
            tracing::error!(id = %envelope.id, %error, "cannot read the spooled content");
            format!("cannot read the spooled content: {error}")
        };
        let (path, offset) = self.spool.content(envelope).map_err(fail)?;
        let size = envelope.size;
        let loaded = if plain && envelope.sends_as_is {
            std::fs::File::open(&path)
                .map(|file| Loaded::AsIs(SpooledContent { file, offset, size }))
        } else if size <= IN_MEMORY_CONTENT {
            tokio::task::spawn_blocking(move || read_content(&path, offset, size))
                .await
                .unwrap_or_else(|error| Err(std::io::Error::other(error)))
                .map(Loaded::Memory)
        } else {
            open_at(&path, offset).await.map(|file| {
                // The segment holds more after the content: read only the content.
                Loaded::File(tokio::io::AsyncReadExt::take(
                    tokio::io::BufReader::with_capacity(64 * 1024, file),
                    size,
                ))
            })
        };
        loaded.map_err(fail)
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

    /// Records what each recipient's reply means. A reply that refuses the source IP (see
    /// [`super::classify`]) suspends the pair and is never a bounce: those recipients are
    /// returned, still pending.
    fn record_replies(
        &self,
        indexes: &[usize],
        replies: &[RemoteReply],
        client: &SmtpClient,
        hop: &Hop<'_>,
        report: &mut AttemptReport,
    ) -> Option<Refusal> {
        let source = hop.picked.address;
        let remote_mta = hop.target.addr.ip();
        let mut refusal: Option<Refusal> = None;
        for (&index, reply) in indexes.iter().zip(replies) {
            if self.refuses_source(source, hop.site, reply) {
                let refused = refusal.get_or_insert_with(|| Refusal {
                    recipients: Vec::new(),
                    reply: reply.to_string(),
                    remote_mta,
                });
                refused.recipients.push(index);
                continue;
            }
            let result = if reply.is_positive() {
                if let Some(address) = source {
                    self.health.delivered(address, hop.site);
                }
                Outcome::Delivered(reply.clone())
            } else if reply.is_permanent() {
                Outcome::Failed(Failure::Remote(reply.clone()))
            } else {
                Outcome::Deferred(Deferral::Remote(reply.clone()))
            };
            report.record(
                index,
                RecipientOutcome {
                    result,
                    source_ip: source,
                    next_hop: format!("{} ({})", hop.target.host, hop.target.addr),
                    remote_mta: Some(remote_mta),
                    tls_version: client.tls_version.clone(),
                },
            );
        }
        refusal
    }
}
