//! DATA for the relay's own feedback addresses: the report is read whole (within the usual size
//! and time limits, with the same line rules), stored durably in the feedback inbox, and only
//! then acknowledged. It is not relayed, classified or signed.

use std::time::{Duration, Instant};

use bytes::Buf;

use super::connection::read_more;
use super::data_phase::MIN_DATA_RATE;
use super::received::sanitize_name;
use super::refusal::Refusal;
use super::session::{Session, Transaction};
use crate::feedback::inbox::InboxEnvelope;
use crate::metrics::{METRICS, ReasonLabels};
use crate::smtp::Reply;
use crate::smtp::data::DataReader;
use crate::smtp::stream::SmtpStream;
use crate::spool::{new_message_id, unix_now};

impl Session {
    /// Reads a report after `354` and stores it. `Ok(false)` ends the session.
    pub(super) async fn receive_feedback(
        &mut self,
        stream: &mut SmtpStream,
        transaction: Transaction,
    ) -> std::io::Result<bool> {
        let settings = &self.ctx.settings;
        let (limit, data_timeout) = (settings.max_message_bytes, settings.data_timeout);
        let began = Instant::now();
        let mut reader = DataReader::new(settings.bare_newline, limit);
        let mut content = Vec::with_capacity(16 * 1024);
        let mut received: u64 = 0;
        loop {
            if !self.input.is_empty() {
                let fed = reader.feed(&self.input, &mut content);
                if reader.violation().is_some() {
                    // Read to the end and throw away: the reply comes after the end marker.
                    content.clear();
                }
                received += fed.consumed as u64;
                self.input.advance(fed.consumed);
                if fed.finished {
                    break;
                }
            }
            let allowance = Duration::from_secs(received / MIN_DATA_RATE);
            if !read_more(stream, self, began + data_timeout + allowance).await? {
                return Ok(false);
            }
        }
        let id = new_message_id();
        let reply = match reader.violation() {
            Some(violation) => Err(Refusal::Content(violation, limit)),
            None => self.store_feedback(&id, transaction, content).await,
        };
        let reply = reply.unwrap_or_else(|refusal| {
            let reason = refusal.metric_label().to_string();
            METRICS
                .rejected
                .get_or_create(&ReasonLabels { reason })
                .inc();
            refusal.reply()
        });
        self.reply(reply);
        Ok(true)
    }

    async fn store_feedback(
        &self,
        id: &str,
        transaction: Transaction,
        content: Vec<u8>,
    ) -> Result<Reply, Refusal> {
        let Some(intake) = &self.ctx.feedback else {
            return Err(Refusal::SpoolUnavailable { full: false });
        };
        let helo = self.greeting().map(|g| g.helo.as_str()).unwrap_or_default();
        let envelope = InboxEnvelope {
            id: id.to_string(),
            sender: transaction.sender,
            recipients: transaction
                .recipients
                .into_iter()
                .map(|r| r.address)
                .collect(),
            client_ip: self.peer.ip(),
            helo: sanitize_name(helo),
            received_at: unix_now(),
        };
        let size = content.len();
        match intake.store(envelope, content).await {
            Ok(()) => {
                tracing::info!(id, client = %self.peer.ip(), size, "feedback report received");
                Ok(Reply::new(250, "2.0.0", format!("Ok {id}")))
            }
            Err(error) => Err(Refusal::spool(id, &error)),
        }
    }
}
