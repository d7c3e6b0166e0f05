//! The DATA phase of a session: the message is read through the DATA reader and the header
//! filter into the spool, classified into a configuration set and pool as soon as its header
//! block is complete, and acknowledged only once it is durable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Buf;

use super::connection::read_more;
use super::headers::HeaderFilter;
use super::received::{Trace, received_header, sanitize_name};
use super::refusal::{MAX_HOPS, Refusal};
use super::session::{Session, Transaction};
use super::signing::{self, Decision, MAX_HELD_HEAD, Signing};
use crate::identity::sign::Signer;
use crate::metrics::{METRICS, ReasonLabels};
use crate::smtp::Reply;
use crate::smtp::data::DataReader;
use crate::smtp::stream::SmtpStream;
use crate::spool::{Envelope, MessageWriter, new_message_id, unix_now};

/// The slowest a message may arrive (bytes per second) once `data_timeout` is used up.
pub(super) const MIN_DATA_RATE: u64 = 1024;

/// A message read to its end: its headers as filtered, its configuration set and pool or why
/// it is refused, and its header block if it was held back to be signed.
struct Received {
    filter: HeaderFilter,
    pool: Result<(Option<String>, String), Refusal>,
    held: Option<HeldHead>,
    /// How the message is signed, for the log.
    signing: String,
}

/// A header block kept out of the spool until the message ends, to be signed.
struct HeldHead {
    bytes: Vec<u8>,
    signer: Signer,
    fields: Vec<&'static str>,
}

/// Where the header block is while the message arrives.
enum Head {
    /// Still arriving.
    Collecting(Vec<u8>),
    /// Complete, held back to be signed.
    Held(HeldHead),
    /// In the spool writer's buffer, ahead of the body.
    Released,
}

impl Head {
    /// Puts the header block into the writer, in front of what arrived after it.
    fn release(&mut self, writer: &mut MessageWriter) {
        if let Head::Collecting(bytes) = std::mem::replace(self, Head::Released) {
            let body = std::mem::replace(writer.buffer(), bytes);
            writer.buffer().extend_from_slice(&body);
        }
    }
}

impl Session {
    /// Reads the message after `354`, spools it and replies. `Ok(false)` ends the session.
    pub(super) async fn receive_data(&mut self, stream: &mut SmtpStream) -> std::io::Result<bool> {
        let helo = self.greeting().map(|g| g.helo.clone()).unwrap_or_default();
        let esmtp = self.greeting().is_some_and(|g| g.esmtp);
        let Some(transaction) = self.end_transaction() else {
            return Ok(true);
        };
        if transaction.feedback {
            return self.receive_feedback(stream, transaction).await;
        }
        let id = new_message_id();
        let mut writer = self.ctx.spool.writer();
        let trace = Trace {
            helo: &helo,
            client_ip: self.peer.ip(),
            hostname: &self.ctx.settings.hostname,
            esmtp,
            id: &id,
            recipients: &transaction
                .recipients
                .iter()
                .map(|r| r.address.clone())
                .collect::<Vec<_>>(),
            tls: self.tls.clone(),
            authenticated: self.authenticated.as_ref().map(|u| u.username.as_str()),
        };
        let head = received_header(&trace).into_bytes();
        let Some(received) = self.read_message(stream, &id, &mut writer, head).await? else {
            tracing::info!(client = %self.peer, id, "connection ended inside DATA; nothing was accepted");
            return Ok(false);
        };
        let result = match received.pool {
            Err(refusal) => Err(refusal),
            Ok((set, pool)) => {
                let envelope = self.envelope(&id, &helo, transaction, set, pool, &received.filter);
                self.accept(writer, envelope, received.held, &received.signing)
                    .await
            }
        };
        let reply = match result {
            Ok(reply) => {
                METRICS.accepted.inc();
                reply
            }
            Err(refusal) => {
                let reply = refusal.reply();
                tracing::info!(id, client = %self.peer.ip(), reply = %reply, "message refused");
                let reason = refusal.metric_label().to_string();
                METRICS
                    .rejected
                    .get_or_create(&ReasonLabels { reason })
                    .inc();
                reply
            }
        };
        self.reply(reply);
        Ok(true)
    }

    /// Reads the message to its end marker into `writer`, classifying it once its header block
    /// is complete (`head` starts with the `Received:` field). After the first problem the rest
    /// is read and thrown away, so the reply comes at the end of the message as SMTP requires.
    /// `None`: the client went away.
    async fn read_message(
        &mut self,
        stream: &mut SmtpStream,
        id: &str,
        writer: &mut MessageWriter,
        head: Vec<u8>,
    ) -> std::io::Result<Option<Received>> {
        let settings = &self.ctx.settings;
        let (limit, data_timeout) = (settings.max_message_bytes, settings.data_timeout);
        // The whole message must arrive within `data_timeout` plus a second per MIN_DATA_RATE
        // bytes: a client dripping a byte per read cannot hold the session (and its spool file)
        // for ever, and a slow honest link still gets its time.
        let began = Instant::now();
        let mut received: u64 = 0;
        let mut reader = DataReader::new(settings.bare_newline, limit);
        let mut filter = HeaderFilter::new();
        let mut content = Vec::with_capacity(16 * 1024);
        let mut head = Head::Collecting(head);
        let mut plan: Option<Decision> = None;
        let mut pool = None;
        let mut spool_error: Option<Refusal> = None;
        loop {
            if !self.input.is_empty() {
                content.clear();
                let fed = reader.feed(&self.input, &mut content);
                received += fed.consumed as u64;
                self.input.advance(fed.consumed);
                let keep = reader.violation().is_none()
                    && !matches!(pool, Some(Err(_)))
                    && spool_error.is_none();
                if keep {
                    let mut after_head = Vec::new();
                    let head_out = match &mut head {
                        Head::Collecting(bytes) => bytes,
                        _ => &mut after_head,
                    };
                    filter.feed_split(&content, head_out, writer.buffer());
                    self.settle_head(&filter, &mut head, &mut plan, writer);
                    if pool.is_none() && filter.headers_complete() {
                        pool = Some(self.classify_planned(&filter, plan.as_ref()));
                    }
                    if let Err(error) = writer.flush_if_large().await {
                        spool_error = Some(Refusal::spool(id, &error));
                    }
                }
                if fed.finished {
                    break;
                }
            }
            let allowance = Duration::from_secs(received / MIN_DATA_RATE);
            if !read_more(stream, self, began + data_timeout + allowance).await? {
                return Ok(None);
            }
        }
        match &mut head {
            Head::Collecting(bytes) => filter.finish(bytes),
            _ => filter.finish(writer.buffer()),
        }
        self.settle_head(&filter, &mut head, &mut plan, writer);
        let pool = pool.unwrap_or_else(|| self.classify_planned(&filter, plan.as_ref()));
        // The first problem wins: the content, then a loop, then the configuration set, then
        // the spool.
        let pool = match (reader.violation(), pool, spool_error) {
            (Some(violation), _, _) => Err(Refusal::Content(violation, limit)),
            _ if filter.hops() > MAX_HOPS => Err(Refusal::TooManyHops(filter.hops())),
            (None, Err(refusal), _) => Err(refusal),
            (None, Ok(_), Some(refusal)) => Err(refusal),
            (None, Ok(pool), None) => Ok(pool),
        };
        let signing = plan.map_or_else(String::new, |plan| plan.note);
        let held = match head {
            Head::Held(held) => Some(held),
            _ => None,
        };
        Ok(Some(Received {
            filter,
            pool,
            held,
            signing,
        }))
    }

    /// Once the header block is complete (or too long to hold), decides what the identities
    /// say about the message, and either holds the block back to be signed or releases it.
    fn settle_head(
        &self,
        filter: &HeaderFilter,
        head: &mut Head,
        plan: &mut Option<Decision>,
        writer: &mut MessageWriter,
    ) {
        let Head::Collecting(bytes) = head else {
            return;
        };
        if !filter.headers_complete() {
            if bytes.len() > MAX_HELD_HEAD {
                *plan = Some(Decision {
                    default_set: None,
                    note: "unsigned: the header block is over 256 KiB".into(),
                });
                head.release(writer);
            }
            return;
        }
        let decided = signing::plan(self.ctx.registry.load().identities(), bytes);
        *plan = Some(Decision {
            default_set: decided.default_set,
            note: decided.signing.describe(),
        });
        match decided.signing {
            Signing::Sign { signer, fields } => {
                let bytes = std::mem::take(bytes);
                *head = Head::Held(HeldHead {
                    bytes,
                    signer,
                    fields,
                });
            }
            Signing::Unsigned(_) => head.release(writer),
        }
    }

    /// The configuration set and pool: the message's header, else its identity's default set.
    fn classify_planned(
        &self,
        filter: &HeaderFilter,
        plan: Option<&Decision>,
    ) -> Result<(Option<String>, String), Refusal> {
        let set = filter
            .configuration_set()
            .map(str::to_string)
            .or_else(|| plan.and_then(|p| p.default_set.clone()));
        let pool = self.classify(set.as_deref())?;
        Ok((set, pool))
    }

    /// The envelope of an accepted message.
    fn envelope(
        &self,
        id: &str,
        helo: &str,
        transaction: Transaction,
        configuration_set: Option<String>,
        pool: String,
        filter: &HeaderFilter,
    ) -> Envelope {
        let received_at = unix_now();
        let lifetime = self
            .ctx
            .registry
            .load()
            .max_delivery_seconds(configuration_set.as_deref())
            .unwrap_or(self.ctx.max_age.as_secs());
        Envelope {
            id: id.to_string(),
            received_at,
            sender: transaction.sender,
            recipients: transaction.recipients,
            configuration_set,
            pool,
            client_ip: self.peer.ip(),
            client_helo: sanitize_name(helo),
            size: 0,
            smtputf8: transaction.smtputf8,
            eight_bit_mime: transaction.eight_bit_mime,
            attempts: 0,
            last_source_ip: None,
            expires_at: received_at + lifetime,
            is_dsn: false,
            held: false,
            envid: transaction.envid,
            ret_full: transaction.ret_full,
            tags: filter.tags().to_vec(),
            header_message_id: filter.message_id().map(str::to_string),
            sends_as_is: false,
            stored: None,
            in_memory: None,
        }
    }

    /// Makes the message durable, then queues it: the `250` comes only after the commit.
    async fn accept(
        &self,
        writer: MessageWriter,
        mut envelope: Envelope,
        held: Option<HeldHead>,
        signing: &str,
    ) -> Result<Reply, Refusal> {
        envelope.size = writer.size();
        let id = envelope.id.clone();
        let committed = match held {
            None => writer.commit(envelope).await,
            Some(held) => {
                let stamp = signing::stamp(held.signer, held.fields, Arc::from(id.as_str()));
                writer.commit_stamped(envelope, held.bytes, stamp).await
            }
        };
        let queued = match committed {
            Ok(queued) => queued,
            Err(error) => return Err(Refusal::spool(&id, &error)),
        };
        tracing::info!(
            id,
            client = %self.peer.ip(),
            sender = %queued.sender,
            recipients = queued.recipients.len(),
            configuration_set = queued.configuration_set.as_deref().unwrap_or("-"),
            pool = %queued.pool,
            dkim = signing,
            "accepted"
        );
        self.ctx.events.send(&queued);
        self.ctx.queue.enqueue(queued);
        Ok(Reply::new(250, "2.0.0", format!("Ok {id}")))
    }

    /// The pool for a message, or the refusal for a configuration set that does not exist or
    /// that the authenticated user may not use (no header: the default pool).
    fn classify(&self, configuration_set: Option<&str>) -> Result<String, Refusal> {
        let printable = || -> String {
            configuration_set
                .unwrap_or_default()
                .chars()
                .take(64)
                .map(|c| if c.is_control() || c == '"' { '_' } else { c })
                .collect()
        };
        if let (Some(user), Some(name)) = (&self.authenticated, configuration_set)
            && let Some(allowed) = &user.allowed_configuration_sets
            && !allowed.iter().any(|a| a == name)
        {
            return Err(Refusal::ConfigurationSetNotAllowed {
                set: printable(),
                user: user.username.clone(),
            });
        }
        self.ctx
            .registry
            .load()
            .pool_for(configuration_set)
            .map_err(|_| Refusal::UnknownConfigurationSet(printable()))
    }
}
