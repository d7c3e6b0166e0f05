//! The DATA phase of a session: the message is read through the DATA reader and the header
//! filter into the spool, classified into a configuration set and pool as soon as its header
//! block is complete, and acknowledged only once it is durable.

use std::time::{Duration, Instant};

use bytes::Buf;

use super::accept::{self, Client};
use super::connection::read_more;
use super::head::{HeadStage, HeldHead};
use super::headers::HeaderFilter;
use super::received::{Trace, received_header};
use super::refusal::{MAX_HOPS, Refusal};
use super::session::Session;
use crate::metrics::{METRICS, ReasonLabels};
use crate::smtp::Reply;
use crate::smtp::data::DataReader;
use crate::smtp::stream::SmtpStream;
use crate::spool::{MessageWriter, new_message_id};

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
            Ok(classified) => {
                let client = self.client(&helo);
                let filter = &received.filter;
                let envelope =
                    accept::envelope(&self.ctx, &client, &id, transaction, classified, filter);
                accept::accept(
                    &self.ctx,
                    writer,
                    envelope,
                    received.held,
                    &received.signing,
                )
                .await
            }
        };
        let reply = match result {
            Ok(()) => {
                METRICS.accepted.inc();
                Reply::new(250, "2.0.0", format!("Ok {id}"))
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
        let mut head = HeadStage::new(head);
        let mut pool = None;
        let mut spool_error: Option<Refusal> = None;
        let registry = self.ctx.registry.load_full();
        let identities = registry.identities();
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
                    head.feed(&mut filter, &content, writer);
                    head.settle(identities, &filter, writer);
                    if pool.is_none() && filter.headers_complete() {
                        pool = Some(self.classify(&filter, &head));
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
        head.finish_filter(&mut filter, writer);
        head.settle(identities, &filter, writer);
        let pool = pool.unwrap_or_else(|| self.classify(&filter, &head));
        // The first problem wins: the content, then a loop, then the configuration set, then
        // the spool.
        let pool = match (reader.violation(), pool, spool_error) {
            (Some(violation), _, _) => Err(Refusal::Content(violation, limit)),
            _ if filter.hops() > MAX_HOPS => Err(Refusal::TooManyHops(filter.hops())),
            (None, Err(refusal), _) => Err(refusal),
            (None, Ok(_), Some(refusal)) => Err(refusal),
            (None, Ok(pool), None) => Ok(pool),
        };
        let (held, signing) = head.finish();
        Ok(Some(Received {
            filter,
            pool,
            held,
            signing,
        }))
    }

    /// Who this session's client is, for the shared acceptance path.
    fn client<'a>(&'a self, helo: &'a str) -> Client<'a> {
        let user = self.authenticated.as_ref();
        Client {
            ip: self.peer.ip(),
            helo,
            user: user.map(|u| u.username.as_str()),
            allowed_sets: user.and_then(|u| u.allowed_configuration_sets.as_deref()),
        }
    }

    /// The configuration set and pool, once the header block is complete.
    fn classify(
        &self,
        filter: &HeaderFilter,
        head: &HeadStage,
    ) -> Result<(Option<String>, String), Refusal> {
        let client = self.client("");
        accept::classify(&self.ctx, &client, None, filter, head.decision())
    }
}
