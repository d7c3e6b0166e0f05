//! The DATA phase of a session: the message is read through the DATA reader and the header
//! filter into the spool, classified into a configuration set and pool as soon as its header
//! block is complete, and acknowledged only once it is durable.

use std::time::{Duration, Instant};

use bytes::Buf;

use super::connection::read_more;
use super::headers::HeaderFilter;
use super::received::{Trace, received_header, sanitize_name};
use super::refusal::{MAX_HOPS, Refusal};
use super::session::{Session, Transaction};
use crate::metrics::{METRICS, ReasonLabels};
use crate::smtp::Reply;
use crate::smtp::data::DataReader;
use crate::smtp::stream::SmtpStream;
use crate::spool::{Envelope, MessageWriter, new_message_id, unix_now};

/// The slowest a message may arrive (bytes per second) once `data_timeout` is used up.
const MIN_DATA_RATE: u64 = 1024;

/// A message read to its end: its headers as filtered, and its pool or why it is refused.
struct Received {
    filter: HeaderFilter,
    pool: Result<String, Refusal>,
}

impl Session {
    /// Reads the message after `354`, spools it and replies. `Ok(false)` ends the session.
    pub(super) async fn receive_data(&mut self, stream: &mut SmtpStream) -> std::io::Result<bool> {
        let helo = self.greeting().map(|g| g.helo.clone()).unwrap_or_default();
        let esmtp = self.greeting().is_some_and(|g| g.esmtp);
        let Some(transaction) = self.end_transaction() else {
            return Ok(true);
        };
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
        writer
            .buffer()
            .extend_from_slice(received_header(&trace).as_bytes());
        let Some(received) = self.read_message(stream, &id, &mut writer).await? else {
            tracing::info!(client = %self.peer, id, "connection ended inside DATA; nothing was accepted");
            return Ok(false);
        };
        let result = match received.pool {
            Err(refusal) => Err(refusal),
            Ok(pool) => {
                let envelope = self.envelope(&id, &helo, transaction, pool, &received.filter);
                self.accept(writer, envelope).await
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
    /// is complete. After the first problem the rest is read and thrown away, so the reply comes
    /// at the end of the message as SMTP requires. `None`: the client went away.
    async fn read_message(
        &mut self,
        stream: &mut SmtpStream,
        id: &str,
        writer: &mut MessageWriter,
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
        let mut pool: Option<Result<String, Refusal>> = None;
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
                    filter.feed(&content, writer.buffer());
                    if pool.is_none() && filter.headers_complete() {
                        pool = Some(self.classify(filter.configuration_set()));
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
        filter.finish(writer.buffer());
        let pool = pool.unwrap_or_else(|| self.classify(filter.configuration_set()));
        // The first problem wins: the content, then a loop, then the configuration set, then
        // the spool.
        let pool = match (reader.violation(), pool, spool_error) {
            (Some(violation), _, _) => Err(Refusal::Content(violation, limit)),
            _ if filter.hops() > MAX_HOPS => Err(Refusal::TooManyHops(filter.hops())),
            (None, Err(refusal), _) => Err(refusal),
            (None, Ok(_), Some(refusal)) => Err(refusal),
            (None, Ok(pool), None) => Ok(pool),
        };
        Ok(Some(Received { filter, pool }))
    }

    /// The envelope of an accepted message.
    fn envelope(
        &self,
        id: &str,
        helo: &str,
        transaction: Transaction,
        pool: String,
        filter: &HeaderFilter,
    ) -> Envelope {
        let received_at = unix_now();
        let configuration_set = filter.configuration_set().map(str::to_string);
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
    ) -> Result<Reply, Refusal> {
        envelope.size = writer.size();
        let id = envelope.id.clone();
        let queued = match writer.commit(envelope).await {
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
