//! The event log: SES event publishing, self-hosted, as JSON lines.
//!
//! Each line is one event in the shape SES publishes (`eventType`, a `mail` object, and one of
//! `send`, `delivery`, `deliveryDelay`, `bounce`). The `mail.tags` carry what users ask for most:
//! `ses:configuration-set`, `ses:source-ip` (the client), `ses:outgoing-ip` (the address the
//! message actually left from) and the message's `X-SES-MESSAGE-TAGS` pairs.
//!
//! Sessions and deliveries hand each event, as one line, to the log's writer thread (see
//! `writer`), which appends them in batches: a slow disk never stalls an SMTP session, and lines
//! never interleave. The file is not fsynced: events describe what happened, the spool is what
//! keeps mail safe.

pub mod bounce_type;
pub mod history;
mod writer;

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::spool::Envelope;
use bounce_type::{BounceKind, BounceSubType, BounceType};

/// One recipient in a delivery, delay or bounce event.
#[derive(Debug, Clone)]
pub struct RecipientOutcome {
    pub address: String,
    /// The remote reply or local reason.
    pub diagnostic: String,
    /// Enhanced status code (`5.1.1`).
    pub status: String,
    pub remote_mta: Option<String>,
    pub outgoing_ip: Option<IpAddr>,
    pub tls_version: Option<String>,
}

/// SES `delayType` of a DeliveryDelay event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayType {
    /// The receiver refuses (or already refuses) the pool's IPs.
    IpFailure,
    /// Anything else temporary.
    TransientCommunicationFailure,
}

impl DelayType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IpFailure => "IPFailure",
            Self::TransientCommunicationFailure => "TransientCommunicationFailure",
        }
    }
}

pub struct EventLog {
    writer: Option<writer::Writer>,
    reporting_mta: String,
    /// The last hour's counts, kept whether or not events are written.
    history: std::sync::Arc<history::History>,
}

fn timestamp(unix: u64) -> String {
    DateTime::<Utc>::from_timestamp(unix as i64, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl EventLog {
    /// Opens (creating) the log at `path`; `None` gives a log that writes nothing.
    pub fn open(path: Option<&Path>, reporting_mta: &str) -> io::Result<Self> {
        let writer = match path {
            Some(path) => Some(writer::Writer::start(path)?),
            None => None,
        };
        Ok(Self {
            writer,
            reporting_mta: reporting_mta.to_string(),
            history: Default::default(),
        })
    }

    pub fn disabled() -> Self {
        Self {
            writer: None,
            reporting_mta: String::new(),
            history: Default::default(),
        }
    }

    /// The last hour, minute by minute.
    pub fn history(&self) -> &std::sync::Arc<history::History> {
        &self.history
    }

    /// Whether events go anywhere (`[events] path` is set); without it none is even built.
    pub fn enabled(&self) -> bool {
        self.writer.is_some()
    }

    /// Opens the log's path again (SIGHUP, after logrotate renamed the file away).
    pub async fn reopen(&self) -> io::Result<()> {
        match &self.writer {
            Some(writer) => writer.reopen().await,
            None => Ok(()),
        }
    }

    /// Returns once every event handed over so far is written to the file.
    pub async fn flush(&self) {
        if let Some(writer) = &self.writer {
            writer.flush().await;
        }
    }

    fn write(&self, event: Value) {
        if let Some(writer) = &self.writer {
            let mut line = event.to_string();
            line.push('\n');
            writer.append(line);
        }
    }

    /// The SES `mail` object.
    fn mail(
        &self,
        envelope: &Envelope,
        outgoing_ip: Option<IpAddr>,
        tls_version: Option<&str>,
    ) -> Value {
        let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if let Some(set) = &envelope.configuration_set {
            tags.insert("ses:configuration-set".into(), vec![set.clone()]);
        }
        tags.insert("ses:source-ip".into(), vec![envelope.client_ip.to_string()]);
        if let Some(ip) = outgoing_ip {
            tags.insert("ses:outgoing-ip".into(), vec![ip.to_string()]);
        }
        if let Some((_, domain)) = envelope.sender.rsplit_once('@') {
            tags.insert("ses:from-domain".into(), vec![domain.to_string()]);
        }
        tags.insert("poolrelay:pool".into(), vec![envelope.pool.clone()]);
        if let Some(version) = tls_version {
            tags.insert("ses:outgoing-tls-version".into(), vec![version.to_string()]);
        }
        for (name, value) in &envelope.tags {
            tags.entry(name.clone()).or_default().push(value.clone());
        }
        json!({
            "timestamp": timestamp(envelope.received_at),
            "messageId": envelope.id,
            "source": envelope.sender,
            "sourceIp": envelope.client_ip.to_string(),
            "destination": envelope.recipients.iter().map(|r| r.address.clone()).collect::<Vec<_>>(),
            "tags": tags,
        })
    }

    /// The message was accepted.
    pub fn send(&self, envelope: &Envelope) {
        if !self.enabled() {
            return;
        }
        self.write(
            json!({ "eventType": "Send", "mail": self.mail(envelope, None, None), "send": {} }),
        );
    }

    /// Recipients accepted by the next hop (one event per reply).
    pub fn delivery(&self, envelope: &Envelope, delivered: &[RecipientOutcome]) {
        let Some(first) = delivered.first().filter(|_| self.enabled()) else {
            return;
        };
        let processing =
            (Utc::now().timestamp() as u64).saturating_sub(envelope.received_at) * 1000;
        self.write(json!({
            "eventType": "Delivery",
            "mail": self.mail(envelope, first.outgoing_ip, first.tls_version.as_deref()),
            "delivery": {
                "timestamp": now(),
                "processingTimeMillis": processing,
                "recipients": delivered.iter().map(|r| r.address.clone()).collect::<Vec<_>>(),
                "smtpResponse": first.diagnostic,
                "reportingMTA": self.reporting_mta,
                "remoteMtaIp": first.remote_mta,
            }
        }));
    }

    /// Recipients deferred after an attempt.
    pub fn delivery_delay(
        &self,
        envelope: &Envelope,
        delay_type: DelayType,
        delayed: &[RecipientOutcome],
    ) {
        let Some(first) = delayed.first().filter(|_| self.enabled()) else {
            return;
        };
        self.write(json!({
            "eventType": "DeliveryDelay",
            "mail": self.mail(envelope, first.outgoing_ip, None),
            "deliveryDelay": {
                "timestamp": now(),
                "delayType": delay_type.as_str(),
                "expirationTime": timestamp(envelope.expires_at),
                "reportingMTA": self.reporting_mta,
                "delayedRecipients": delayed.iter().map(|r| json!({
                    "emailAddress": r.address,
                    "status": r.status,
                    "diagnosticCode": r.diagnostic,
                })).collect::<Vec<_>>(),
            }
        }));
    }

    /// Recipients that failed permanently (refused, or expired): `Permanent`, subtype `NoEmail`
    /// for a 5.1.x status (no such mailbox or domain), else `General`; one event per subtype.
    pub fn bounce(&self, envelope: &Envelope, bounced: &[RecipientOutcome]) {
        let no_email = |r: &RecipientOutcome| {
            BounceKind::from_status(Some("failed"), Some(&r.status))
                .is_some_and(|k| k.is_permanent() && k.sub_type == BounceSubType::NoEmail)
        };
        let (missing, general): (Vec<_>, Vec<_>) = bounced.iter().cloned().partition(no_email);
        for (sub_type, group) in [
            (BounceSubType::NoEmail, missing),
            (BounceSubType::General, general),
        ] {
            let details = BounceDetails {
                kind: BounceKind {
                    bounce_type: BounceType::Permanent,
                    sub_type,
                },
                action: "failed",
                feedback_id: None,
                reporting_mta: None,
            };
            self.bounce_with(envelope, &details, &group);
        }
    }

    /// A bounce event of any type: the relay's own, one for a suppressed recipient, or one read
    /// from a report that arrived later.
    pub fn bounce_with(
        &self,
        envelope: &Envelope,
        details: &BounceDetails<'_>,
        bounced: &[RecipientOutcome],
    ) {
        let Some(first) = bounced.first().filter(|_| self.enabled()) else {
            return;
        };
        let mut bounce = json!({
            "timestamp": now(),
            "bounceType": details.kind.bounce_type.as_ses(),
            "bounceSubType": details.kind.sub_type.as_ses(),
            "reportingMTA": details.reporting_mta.unwrap_or(&self.reporting_mta),
            "bouncedRecipients": bounced.iter().map(|r| json!({
                "emailAddress": r.address,
                "action": details.action,
                "status": r.status,
                "diagnosticCode": r.diagnostic,
            })).collect::<Vec<_>>(),
        });
        if let Some(id) = details.feedback_id {
            bounce["feedbackId"] = json!(id);
        }
        self.write(json!({
            "eventType": "Bounce",
            "mail": self.mail(envelope, first.outgoing_ip, None),
            "bounce": bounce,
        }));
    }

    /// An abuse report about `complained` (addresses), with where it left from.
    pub fn complaint(
        &self,
        envelope: &Envelope,
        outgoing_ip: Option<IpAddr>,
        complaint: &ComplaintDetails<'_>,
        complained: &[String],
    ) {
        if !self.enabled() {
            return;
        }
        let mut body = json!({
            "timestamp": now(),
            "feedbackId": complaint.feedback_id,
            "complaintFeedbackType": complaint.feedback_type,
            "complainedRecipients": complained.iter().map(|a| json!({"emailAddress": a})).collect::<Vec<_>>(),
        });
        if let Some(agent) = complaint.user_agent {
            body["userAgent"] = json!(agent);
        }
        if let Some(arrival) = complaint.arrival_date {
            body["arrivalDate"] = json!(arrival);
        }
        self.write(json!({
            "eventType": "Complaint",
            "mail": self.mail(envelope, outgoing_ip, None),
            "complaint": body,
        }));
    }
}

/// What a Bounce event says beyond its recipients.
pub struct BounceDetails<'a> {
    pub kind: BounceKind,
    /// The DSN `Action` (`failed`, `delayed`).
    pub action: &'a str,
    pub feedback_id: Option<&'a str>,
    /// The server that reported it; `None`: this relay.
    pub reporting_mta: Option<&'a str>,
}

/// What a Complaint event says beyond its recipients.
pub struct ComplaintDetails<'a> {
    pub feedback_id: &'a str,
    pub feedback_type: &'a str,
    pub user_agent: Option<&'a str>,
    pub arrival_date: Option<&'a str>,
}
