//! The DATA phase of a session: the message is read through the DATA reader and the header
//! filter into the spool, classified into a configuration set and pool as soon as its header
//! block is complete, and acknowledged only once it is durable.

use bytes::Buf;

use super::connection::read_more;
use super::headers::HeaderFilter;
use super::received::{Trace, received_header, sanitize_name};
use super::session::Session;
use crate::metrics::{METRICS, ReasonLabels};
use crate::smtp::Reply;
use crate::smtp::data::{DataReader, Violation};
use crate::smtp::stream::SmtpStream;
use crate::spool::{Envelope, new_message_id, unix_now};

impl Session {
    /// Reads the message after `354`, spools it and replies. `Ok(false)` ends the session.
    pub(super) async fn receive_data(&mut self, stream: &mut SmtpStream) -> std::io::Result<bool> {
        let helo = self.greeting().map(|g| g.helo.clone()).unwrap_or_default();
        let esmtp = self.greeting().is_some_and(|g| g.esmtp);
        let Some(transaction) = self.end_transaction() else {
            return Ok(true);
        };
        let ctx = self.ctx.clone();
        let settings = &ctx.settings;
        let id = new_message_id();
        let mut writer = ctx.spool.writer(&id);
        writer.buffer().extend_from_slice(
            received_header(&Trace {
                helo: &helo,
                client_ip: self.peer.ip(),
                hostname: &settings.hostname,
                esmtp,
                id: &id,
                recipients: &transaction
                    .recipients
                    .iter()
                    .map(|r| r.address.clone())
                    .collect::<Vec<_>>(),
                tls: self.tls.clone(),
                authenticated: self.authenticated.as_ref().map(|u| u.username.as_str()),
            })
            .as_bytes(),
        );
        let mut reader = DataReader::new(settings.bare_newline, settings.max_message_bytes);
        let mut filter = HeaderFilter::new();
        let mut content = Vec::with_capacity(16 * 1024);
        let mut pool: Option<Result<String, Reply>> = None;
        let mut spool_error: Option<std::io::Error> = None;
        let data_timeout = settings.data_timeout;
        loop {
            if !self.input.is_empty() {
                content.clear();
                let fed = reader.feed(&self.input, &mut content);
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
                        spool_error = Some(error);
                    }
                }
                if fed.finished {
                    break;
                }
            }
            if !read_more(stream, self, data_timeout).await? {
                tracing::info!(client = %self.peer, id, "connection ended inside DATA; nothing was accepted");
                return Ok(false);
            }
        }
        filter.finish(writer.buffer());
        let pool = pool.unwrap_or_else(|| self.classify(filter.configuration_set()));
        let reply = match (reader.violation(), pool, spool_error) {
            (Some(violation), _, _) => violation_reply(violation, settings.max_message_bytes),
            (None, Err(refusal), _) => refusal,
            (None, Ok(_), Some(error)) => spool_failure(&id, &error),
            (None, Ok(pool), None) => {
                let received_at = unix_now();
                let configuration_set = filter.configuration_set().map(str::to_string);
                let lifetime = ctx
                    .registry
                    .load()
                    .max_delivery_seconds(configuration_set.as_deref())
                    .unwrap_or(ctx.max_age.as_secs());
                let envelope = Envelope {
                    id: id.clone(),
                    received_at,
                    sender: transaction.sender,
                    recipients: transaction.recipients,
                    configuration_set,
                    pool,
                    client_ip: self.peer.ip(),
                    client_helo: sanitize_name(&helo),
                    size: writer.size(),
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
                };
                let queued = envelope.clone();
                match writer.commit(envelope).await {
                    Ok(()) => {
                        tracing::info!(
                            id,
                            client = %self.peer.ip(),
                            sender = %queued.sender,
                            recipients = queued.recipients.len(),
                            configuration_set = queued.configuration_set.as_deref().unwrap_or("-"),
                            pool = %queued.pool,
                            "accepted"
                        );
                        ctx.events.send(&queued);
                        ctx.queue.enqueue(queued);
                        Reply::new(250, "2.0.0", format!("Ok {id}"))
                    }
                    Err(error) => spool_failure(&id, &error),
                }
            }
        };
        if reply.is_positive() {
            METRICS.accepted.inc();
        } else {
            tracing::info!(id, client = %self.peer.ip(), reply = %reply, "message refused");
            let reason = match reply.status {
                "5.3.0" => "unknown_configuration_set",
                "5.7.1" => "configuration_set_not_allowed",
                "5.3.4" => "too_big",
                "5.6.0" => "malformed_content",
                "4.3.0" | "4.3.1" => "spool_unavailable",
                other => other,
            };
            METRICS
                .rejected
                .get_or_create(&ReasonLabels {
                    reason: reason.to_string(),
                })
                .inc();
        }
        self.reply(reply);
        Ok(true)
    }

    /// The pool for a message, or the refusal for an unknown configuration set.
    fn classify(&self, configuration_set: Option<&str>) -> Result<String, Reply> {
        let printable = || -> String {
            configuration_set
                .unwrap_or_default()
                .chars()
                .take(64)
                .map(|c| if c.is_control() || c == '"' { '_' } else { c })
                .collect()
        };
        // A user tied to configuration sets may only name those (no header: the default pool).
        if let (Some(user), Some(name)) = (&self.authenticated, configuration_set)
            && let Some(allowed) = &user.allowed_configuration_sets
            && !allowed.iter().any(|a| a == name)
        {
            return Err(Reply::new(
                554,
                "5.7.1",
                format!(
                    "Configuration set \"{}\" is not allowed for user {}",
                    printable(),
                    user.username
                ),
            ));
        }
        self.ctx
            .registry
            .load()
            .pool_for(configuration_set)
            .map_err(|_| {
                Reply::new(
                    554,
                    "5.3.0",
                    format!("Configuration set \"{}\" does not exist", printable()),
                )
            })
    }
}

fn violation_reply(violation: Violation, limit: u64) -> Reply {
    match violation {
        Violation::BareNewline => Reply::new(
            554,
            "5.6.0",
            "Message refused: bare CR or LF found; lines must end with CRLF",
        ),
        Violation::LineTooLong => Reply::new(
            554,
            "5.6.0",
            "Message refused: a line is longer than 998 octets",
        ),
        Violation::TooBig => Reply::new(
            552,
            "5.3.4",
            format!("Message size exceeds the limit of {limit} bytes"),
        ),
    }
}

fn spool_failure(id: &str, error: &std::io::Error) -> Reply {
    tracing::error!(id, %error, "cannot write the message to the spool");
    if error.raw_os_error() == Some(libc::ENOSPC) || error.raw_os_error() == Some(libc::EDQUOT) {
        Reply::new(452, "4.3.1", "Insufficient system storage, try again later")
    } else {
        Reply::new(
            451,
            "4.3.0",
            "Local error writing the message, try again later",
        )
    }
}
