//! One inbound SMTP session: the protocol, free of I/O.
//!
//! The connection (see `connection`) reads whatever the client sends into [`Session::input`];
//! [`Session::ingest`] works through every complete command in it and writes the replies into
//! [`Session::output`], which the connection then sends together. That is all PIPELINING
//! (RFC 2920) needs, and one byte per packet works the same way. Where the session stands is one
//! [`Phase`]; command syntax is parsed by smtp-proto, line framing by `smtp::line`.
//!
//! A message is acknowledged with `250` only after the spool has made it durable.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use smtp_proto::{Error as ParseError, Request};

use super::auth::SaslStep;
use super::context::InboundContext;
use super::received::sanitize_name;
use crate::config::SmtpUser;
use crate::feedback::intake::FeedbackRecipient;
use crate::smtp::Reply;
use crate::smtp::address;
use crate::smtp::line::{CommandLines, NextLine};
use crate::spool::{Notify, Recipient};

/// After this many errors in one session the client is disconnected (as Postfix's
/// `smtpd_hard_error_limit`).
const MAX_ERRORS: u32 = 20;

/// What the session asks its connection to do next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    ReadMore,
    ReceiveData,
    StartTls,
    /// Check these credentials (slow: argon2), then reply.
    Authenticate {
        username: String,
        password: String,
    },
    Close,
}

/// The client's EHLO or HELO.
#[derive(Debug, Clone)]
pub(super) struct Greeting {
    /// The name as the client sent it (sanitized wherever it is shown).
    pub(super) helo: String,
    /// EHLO rather than HELO.
    pub(super) esmtp: bool,
}

/// The mail transaction between MAIL and the end of DATA.
#[derive(Debug)]
pub(super) struct Transaction {
    pub(super) sender: String,
    pub(super) smtputf8: bool,
    pub(super) eight_bit_mime: bool,
    /// RFC 3461 `ENVID` and `RET=FULL`.
    pub(super) envid: Option<String>,
    pub(super) ret_full: bool,
    pub(super) recipients: Vec<Recipient>,
    /// The recipients are the relay's own feedback addresses (bounces, reports), not mail to
    /// relay; a transaction is one or the other.
    pub(super) feedback: bool,
}

/// Where the session stands: what the client's next line means.
#[derive(Debug)]
pub(super) enum Phase {
    /// Just connected, or just upgraded to TLS: EHLO or HELO comes next.
    Connected,
    /// Greeted, outside a mail transaction.
    Ready(Greeting),
    /// Between MAIL and the end of DATA.
    Mail(Greeting, Transaction),
    /// An AUTH exchange waiting for the client's next line (never inside a transaction).
    Sasl(Greeting, SaslStep),
}

pub struct Session {
    pub(super) ctx: Arc<InboundContext>,
    pub(super) peer: SocketAddr,
    /// What the client sent and the session has not used yet.
    pub(super) input: BytesMut,
    /// Replies not yet sent.
    pub(super) output: Vec<u8>,
    pub(super) phase: Phase,
    lines: CommandLines,
    /// The TLS version and cipher, once the connection is encrypted.
    pub(super) tls: Option<(String, String)>,
    pub(super) errors: u32,
    /// The user this session authenticated as.
    pub(super) authenticated: Option<SmtpUser>,
    pub(super) auth_failures: u32,
}

impl Session {
    pub fn new(ctx: Arc<InboundContext>, peer: SocketAddr, tls: Option<(String, String)>) -> Self {
        Self {
            ctx,
            peer,
            input: BytesMut::with_capacity(4096),
            output: Vec::with_capacity(512),
            phase: Phase::Connected,
            lines: CommandLines::default(),
            tls,
            errors: 0,
            authenticated: None,
            auth_failures: 0,
        }
    }

    /// The client's EHLO or HELO, once it has greeted.
    pub(super) fn greeting(&self) -> Option<&Greeting> {
        match &self.phase {
            Phase::Connected => None,
            Phase::Ready(greeting) | Phase::Mail(greeting, _) | Phase::Sasl(greeting, _) => {
                Some(greeting)
            }
        }
    }

    /// The transaction in progress, if any.
    pub(super) fn transaction(&self) -> Option<&Transaction> {
        match &self.phase {
            Phase::Mail(_, transaction) => Some(transaction),
            _ => None,
        }
    }

    /// Ends the transaction in progress (RSET, or DATA taking it over) and returns it.
    pub(super) fn end_transaction(&mut self) -> Option<Transaction> {
        match std::mem::replace(&mut self.phase, Phase::Connected) {
            Phase::Mail(greeting, transaction) => {
                self.phase = Phase::Ready(greeting);
                Some(transaction)
            }
            other => {
                self.phase = other;
                None
            }
        }
    }

    /// The TLS handshake after STARTTLS succeeded: everything starts over, a new EHLO is needed.
    pub(super) fn tls_started(&mut self, description: Option<(String, String)>) {
        self.tls = description;
        self.phase = Phase::Connected;
    }

    pub(super) fn reply(&mut self, reply: Reply) {
        reply.write_to(&mut self.output);
    }

    pub(super) fn error(&mut self, reply: Reply) -> Next {
        self.reply(reply);
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            self.reply(Reply::new(
                421,
                "4.7.0",
                "Too many errors, closing the connection",
            ));
            return Next::Close;
        }
        Next::ReadMore
    }

    /// Handles every complete command in the input buffer, writing the replies to `output`.
    pub(super) fn ingest(&mut self) -> Next {
        loop {
            let next = match self.lines.next(&mut self.input) {
                NextLine::Incomplete => return Next::ReadMore,
                NextLine::TooLong => self.error(Reply::new(500, "5.5.2", "Line too long")),
                NextLine::Line(line) => {
                    match std::mem::replace(&mut self.phase, Phase::Connected) {
                        Phase::Sasl(greeting, step) => {
                            self.phase = Phase::Ready(greeting);
                            self.sasl_line(step, &line)
                        }
                        phase => {
                            self.phase = phase;
                            self.command(&line)
                        }
                    }
                }
            };
            if next != Next::ReadMore {
                return next;
            }
        }
    }

    fn command(&mut self, line: &[u8]) -> Next {
        if line.contains(&0) {
            return self.error(Reply::new(500, "5.5.2", "NUL character in command"));
        }
        let mut framed = Vec::with_capacity(line.len() + 2);
        framed.extend_from_slice(line);
        framed.extend_from_slice(b"\r\n");
        let request = match Request::parse(&mut framed.iter()) {
            Ok(request) => request.into_owned(),
            Err(error) => return self.parse_error(error),
        };
        match request {
            Request::Ehlo { host } => self.hello(host, true),
            Request::Helo { host } => self.hello(host, false),
            Request::Mail { from } => self.mail(from),
            Request::Rcpt { to } => self.rcpt(to),
            Request::Data => self.data(),
            Request::Rset => {
                self.end_transaction();
                self.reply(Reply::new(250, "2.0.0", "Ok"));
                Next::ReadMore
            }
            Request::Noop { .. } => {
                self.reply(Reply::new(250, "2.0.0", "Ok"));
                Next::ReadMore
            }
            Request::Quit => {
                self.reply(Reply::new(221, "2.0.0", "Bye"));
                Next::Close
            }
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth_command(mechanism, initial_response),
            Request::Vrfy { .. } => {
                self.reply(Reply::new(
                    252,
                    "2.5.2",
                    "Cannot VRFY user, but will accept mail and attempt delivery",
                ));
                Next::ReadMore
            }
            Request::Help { .. } => {
                self.reply(Reply::new(
                    214,
                    "2.0.0",
                    "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP",
                ));
                Next::ReadMore
            }
            Request::StartTls => {
                if self.tls.is_some() {
                    self.error(Reply::new(503, "5.5.1", "Already using TLS"))
                } else if self.ctx.tls.is_none() {
                    self.error(Reply::new(454, "4.7.0", "TLS not available"))
                } else {
                    self.reply(Reply::new(220, "2.0.0", "Ready to start TLS"));
                    Next::StartTls
                }
            }
            // BDAT is not offered. Its chunk follows the command without waiting for a reply,
            // so the only safe answer is to hang up: the chunk's bytes must never run as
            // commands.
            Request::Bdat { .. } => {
                self.reply(Reply::new(
                    502,
                    "5.5.1",
                    "BDAT not implemented; closing the connection",
                ));
                Next::Close
            }
            Request::Lhlo { .. } => {
                self.error(Reply::new(500, "5.5.1", "This is not an LMTP server"))
            }
            other => {
                let name = other.name();
                self.error(Reply::new(502, "5.5.1", format!("{name} not implemented")))
            }
        }
    }

    fn parse_error(&mut self, error: ParseError) -> Next {
        let reply = match error {
            ParseError::UnknownCommand => Reply::new(500, "5.5.1", "Command unrecognized"),
            ParseError::InvalidSenderAddress => {
                Reply::new(501, "5.1.7", "Bad sender address syntax")
            }
            ParseError::InvalidRecipientAddress => {
                Reply::new(501, "5.1.3", "Bad recipient address syntax")
            }
            ParseError::SyntaxError { syntax } => {
                Reply::new(501, "5.5.4", format!("Syntax: {syntax}"))
            }
            ParseError::InvalidParameter { param } => {
                Reply::new(501, "5.5.4", format!("Invalid value for parameter {param}"))
            }
            ParseError::UnsupportedParameter { param } => Reply::new(
                555,
                "5.5.4",
                format!("Unsupported parameter {}", sanitize_name(&param)),
            ),
            _ => Reply::new(500, "5.5.2", "Syntax error"),
        };
        self.error(reply)
    }

    fn hello(&mut self, host: String, esmtp: bool) -> Next {
        let name = sanitize_name(&host);
        self.phase = Phase::Ready(Greeting { helo: host, esmtp });
        let hostname = &self.ctx.settings.hostname;
        if !esmtp {
            self.reply(Reply::new(250, "", format!("{hostname} Hello {name}")));
            return Next::ReadMore;
        }
        let mut lines = vec![
            format!("{hostname} Hello {name} [{}]", self.peer.ip()),
            "PIPELINING".to_string(),
            format!("SIZE {}", self.ctx.settings.max_message_bytes),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "SMTPUTF8".to_string(),
            "DSN".to_string(),
            "HELP".to_string(),
        ];
        if self.ctx.tls.is_some() && self.tls.is_none() {
            lines.insert(lines.len() - 1, "STARTTLS".to_string());
        }
        if self.tls.is_some() && !self.ctx.settings.users.is_empty() {
            lines.insert(lines.len() - 1, "AUTH PLAIN LOGIN".to_string());
        }
        self.reply(Reply::multiline(250, lines));
        Next::ReadMore
    }

    /// Authenticated, or connecting from a relay network.
    pub(super) fn may_relay(&self) -> bool {
        let client = self.peer.ip();
        self.authenticated.is_some()
            || self
                .ctx
                .settings
                .relay_networks
                .iter()
                .any(|net| net.contains(&client))
    }

    fn mail(&mut self, from: smtp_proto::MailFrom<String>) -> Next {
        let greeting = match &self.phase {
            Phase::Connected => {
                return self.error(Reply::new(503, "5.5.1", "Send EHLO or HELO first"));
            }
            _ if !self.may_relay() && !self.receives_feedback() => {
                return self.error(Reply::new(530, "5.7.0", "Authentication required"));
            }
            Phase::Mail(..) => return self.error(Reply::new(503, "5.5.1", "Nested MAIL command")),
            Phase::Ready(greeting) | Phase::Sasl(greeting, _) => greeting.clone(),
        };
        let limit = self.ctx.settings.max_message_bytes;
        if from.size as u64 > limit {
            return self.error(Reply::new(
                552,
                "5.3.4",
                format!("Message size exceeds the limit of {limit} bytes"),
            ));
        }
        if address::has_control(&from.address) {
            return self.error(Reply::new(
                553,
                "5.1.7",
                "Control characters are not allowed in addresses",
            ));
        }
        let smtputf8 = from.flags & smtp_proto::MAIL_SMTPUTF8 != 0;
        if !smtputf8 && !from.address.is_ascii() {
            return self.error(Reply::new(553, "5.6.7", "Non-ASCII address needs SMTPUTF8"));
        }
        let transaction = Transaction {
            sender: from.address,
            smtputf8,
            eight_bit_mime: from.flags & smtp_proto::MAIL_BODY_8BITMIME != 0,
            envid: from.env_id,
            ret_full: from.flags & smtp_proto::MAIL_RET_FULL != 0,
            recipients: Vec::new(),
            feedback: false,
        };
        self.phase = Phase::Mail(greeting, transaction);
        self.reply(Reply::new(250, "2.1.0", "Ok"));
        Next::ReadMore
    }

    /// Whether some address here receives bounces or reports from anyone.
    fn receives_feedback(&self) -> bool {
        self.ctx.feedback.as_ref().is_some_and(|f| f.receives())
    }

    fn rcpt(&mut self, to: smtp_proto::RcptTo<String>) -> Next {
        let Some(transaction) = self.transaction() else {
            return self.error(Reply::new(503, "5.5.1", "Need MAIL before RCPT"));
        };
        if !transaction.smtputf8 && !to.address.is_ascii() {
            return self.error(Reply::new(553, "5.6.7", "Non-ASCII address needs SMTPUTF8"));
        }
        if address::has_control(&to.address) {
            return self.error(Reply::new(
                553,
                "5.1.3",
                "Control characters are not allowed in addresses",
            ));
        }
        let kind = match &self.ctx.feedback {
            Some(intake) => intake.classify(&to.address, crate::spool::unix_now()),
            None => FeedbackRecipient::Relay,
        };
        let feedback = match kind {
            FeedbackRecipient::Refused(bad) => {
                return self.error(Reply::new(
                    550,
                    "5.1.1",
                    format!("Recipient address rejected: {bad}"),
                ));
            }
            FeedbackRecipient::Busy => {
                let busy = "Too many reports waiting to be processed; try again later";
                self.reply(Reply::new(452, "4.3.1", busy));
                return Next::ReadMore;
            }
            FeedbackRecipient::Accepted => true,
            FeedbackRecipient::Relay if !self.may_relay() => {
                return self.error(Reply::new(554, "5.7.1", "Relay access denied"));
            }
            FeedbackRecipient::Relay => false,
        };
        if !feedback && !has_routable_domain(&to.address) {
            return self.error(Reply::new(
                501,
                "5.1.3",
                "Recipient address needs a valid domain",
            ));
        }
        if !transaction.recipients.is_empty() && transaction.feedback != feedback {
            self.reply(Reply::new(
                452,
                "4.5.3",
                "Mail for the relay's feedback addresses goes in a transaction of its own",
            ));
            return Next::ReadMore;
        }
        if transaction.recipients.len() >= self.ctx.settings.max_recipients {
            self.reply(Reply::new(452, "4.5.3", "Too many recipients"));
            return Next::ReadMore;
        }
        if let Phase::Mail(_, transaction) = &mut self.phase {
            let mut recipient = Recipient::new(to.address);
            recipient.notify = Notify::from_flags(to.flags);
            recipient.orcpt = to.orcpt;
            transaction.recipients.push(recipient);
            transaction.feedback = feedback;
        }
        self.reply(Reply::new(250, "2.1.5", "Ok"));
        Next::ReadMore
    }

    fn data(&mut self) -> Next {
        match self.transaction() {
            None => return self.error(Reply::new(503, "5.5.1", "Need MAIL command")),
            Some(t) if t.recipients.is_empty() => {
                return self.error(Reply::new(554, "5.5.1", "No valid recipients"));
            }
            Some(_) => {}
        }
        if !self.input.is_empty() {
            // RFC 2920: DATA ends a pipelined group. Content sent before 354 means the client is
            // not speaking SMTP (or is trying to smuggle): refuse and hang up.
            self.reply(Reply::new(
                554,
                "5.5.0",
                "Message content sent before the 354 reply",
            ));
            return Next::Close;
        }
        self.reply(Reply::new(354, "", "End data with <CR><LF>.<CR><LF>"));
        Next::ReceiveData
    }
}

/// A recipient needs `local@domain` with a DNS-like domain or an address literal.
fn has_routable_domain(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    if local.is_empty() || domain.is_empty() {
        return false;
    }
    if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        let literal = literal.strip_prefix("IPv6:").unwrap_or(literal);
        return literal.parse::<std::net::IpAddr>().is_ok();
    }
    domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    })
}
