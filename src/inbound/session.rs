//! One inbound SMTP session.
//!
//! The session reads whatever the client sends into a buffer and works through every complete
//! command in it before writing the replies out together; that is all PIPELINING (RFC 2920)
//! needs, and one byte per packet works the same way. Command syntax is parsed by smtp-proto;
//! line framing, DATA and header handling are the pure pieces in `smtp` and `inbound::headers`.
//!
//! A message is acknowledged with `250` only after the spool has made it durable.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use smtp_proto::{Error as ParseError, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::InboundContext;
use super::auth_session::SaslStep;
use super::received::sanitize_name;
use crate::config::SmtpUser;
use crate::smtp::Reply;
use crate::smtp::line::{Framed, frame_command};
use crate::smtp::stream::SmtpStream;
use crate::spool::{Notify, Recipient};

/// After this many errors in one session the client is disconnected (as Postfix's
/// `smtpd_hard_error_limit`).
const MAX_ERRORS: u32 = 20;

/// What the command loop asks the I/O loop to do next.
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
}

pub struct Session {
    pub(super) ctx: Arc<InboundContext>,
    pub(super) stream: SmtpStream,
    pub(super) peer: SocketAddr,
    pub(super) input: BytesMut,
    pub(super) output: Vec<u8>,
    pub(super) helo: Option<String>,
    pub(super) esmtp: bool,
    pub(super) transaction: Option<Transaction>,
    pub(super) errors: u32,
    pub(super) skipping_long_line: bool,
    /// The user this session authenticated as.
    pub(super) authenticated: Option<SmtpUser>,
    /// A SASL exchange waiting for the client's next line.
    pub(super) sasl: Option<SaslStep>,
    pub(super) auth_failures: u32,
}

impl Session {
    pub fn new(ctx: Arc<InboundContext>, stream: SmtpStream, peer: SocketAddr) -> Self {
        Self {
            ctx,
            stream,
            peer,
            input: BytesMut::with_capacity(4096),
            output: Vec::with_capacity(512),
            helo: None,
            esmtp: false,
            transaction: None,
            errors: 0,
            skipping_long_line: false,
            authenticated: None,
            sasl: None,
            auth_failures: 0,
        }
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

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.output.is_empty() {
            self.stream.write_all(&self.output).await?;
            self.output.clear();
        }
        Ok(())
    }

    /// Reads more input. `Ok(false)` means the session is over (closed, timed out, shutting down);
    /// any farewell reply has been sent.
    pub(super) async fn read_more(
        &mut self,
        timeout: std::time::Duration,
    ) -> std::io::Result<bool> {
        let shutdown = self.ctx.shutdown.clone();
        tokio::select! {
            _ = shutdown.cancelled() => {
                self.reply(Reply::new(421, "4.3.2", "Service shutting down, try again later"));
                self.flush().await?;
                Ok(false)
            }
            read = tokio::time::timeout(timeout, self.stream.read_buf(&mut self.input)) => match read {
                Err(_) => {
                    self.reply(Reply::new(421, "4.4.2", "Timeout, closing the connection"));
                    self.flush().await?;
                    Ok(false)
                }
                Ok(Ok(0)) => Ok(false),
                Ok(Ok(_)) => Ok(true),
                Ok(Err(error)) => Err(error),
            }
        }
    }

    /// Runs the session to its end.
    pub async fn run(mut self) -> std::io::Result<()> {
        let greeting = format!("{} ESMTP poolrelay", self.ctx.settings.hostname);
        self.reply(Reply::new(220, "", greeting));
        self.flush().await?;
        loop {
            let next = self.process_commands();
            self.flush().await?;
            match next {
                Next::Close => return Ok(()),
                Next::ReceiveData => {
                    if !self.receive_data().await? {
                        return Ok(());
                    }
                    continue;
                }
                Next::StartTls => {
                    if !self.start_tls().await {
                        return Ok(());
                    }
                    continue;
                }
                Next::Authenticate { username, password } => {
                    if !self.authenticate(username, password).await {
                        self.flush().await?;
                        return Ok(());
                    }
                    continue;
                }
                Next::ReadMore => {}
            }
            if !self.read_more(self.ctx.settings.command_timeout).await? {
                return Ok(());
            }
        }
    }

    /// Upgrades the connection after `220 Ready to start TLS` (already flushed). Anything the
    /// client sent after STARTTLS in plaintext is thrown away (CVE-2011-0411: it could have been
    /// injected by someone on the path), and the session starts over: a new EHLO is needed.
    /// Returns false if the session is over.
    async fn start_tls(&mut self) -> bool {
        self.input.clear();
        let Some(tls) = &self.ctx.tls else {
            return false;
        };
        let acceptor = tls.acceptor();
        let SmtpStream::Plain(plain) = std::mem::replace(&mut self.stream, SmtpStream::Upgrading)
        else {
            return false;
        };
        match tokio::time::timeout(self.ctx.settings.command_timeout, acceptor.accept(plain)).await
        {
            Ok(Ok(stream)) => {
                self.stream = SmtpStream::Tls(Box::new(tokio_rustls::TlsStream::Server(stream)));
                self.helo = None;
                self.esmtp = false;
                self.transaction = None;
                true
            }
            Ok(Err(error)) => {
                tracing::info!(client = %self.peer, %error, "TLS handshake failed");
                false
            }
            Err(_) => false,
        }
    }

    /// Handles every complete command in the input buffer.
    fn process_commands(&mut self) -> Next {
        loop {
            if self.skipping_long_line {
                match memchr::memchr(b'\n', &self.input) {
                    Some(end) => {
                        self.input.advance(end + 1);
                        self.skipping_long_line = false;
                        let next = self.error(Reply::new(500, "5.5.2", "Line too long"));
                        if next != Next::ReadMore {
                            return next;
                        }
                    }
                    None => {
                        self.input.clear();
                        return Next::ReadMore;
                    }
                }
            }
            let (line, used) = match frame_command(&self.input) {
                Framed::Incomplete => return Next::ReadMore,
                Framed::TooLong { consumed, finished } => {
                    self.input.advance(consumed);
                    if finished {
                        let next = self.error(Reply::new(500, "5.5.2", "Line too long"));
                        if next != Next::ReadMore {
                            return next;
                        }
                    } else {
                        self.skipping_long_line = true;
                    }
                    continue;
                }
                Framed::Line(line, used) => (line.to_vec(), used),
            };
            self.input.advance(used);
            let next = match self.sasl.take() {
                Some(step) => self.sasl_line(step, &line),
                None => self.command(&line),
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
                self.transaction = None;
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
                if self.stream.tls_description().is_some() {
                    self.error(Reply::new(503, "5.5.1", "Already using TLS"))
                } else if self.ctx.tls.is_none() {
                    self.error(Reply::new(454, "4.7.0", "TLS not available"))
                } else {
                    self.reply(Reply::new(220, "2.0.0", "Ready to start TLS"));
                    Next::StartTls
                }
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
        self.helo = Some(host);
        self.esmtp = esmtp;
        self.transaction = None;
        let hostname = &self.ctx.settings.hostname;
        if !esmtp {
            self.reply(Reply::new(250, "", format!("{hostname} Hello {name}")));
            return Next::ReadMore;
        }
        let lines = vec![
            format!("{hostname} Hello {name} [{}]", self.peer.ip()),
            "PIPELINING".to_string(),
            format!("SIZE {}", self.ctx.settings.max_message_bytes),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "SMTPUTF8".to_string(),
            "DSN".to_string(),
            "HELP".to_string(),
        ];
        let mut lines = lines;
        if self.ctx.tls.is_some() && self.stream.tls_description().is_none() {
            lines.insert(lines.len() - 1, "STARTTLS".to_string());
        }
        if self.stream.tls_description().is_some() && !self.ctx.settings.users.is_empty() {
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
        if self.helo.is_none() {
            return self.error(Reply::new(503, "5.5.1", "Send EHLO or HELO first"));
        }
        if !self.may_relay() {
            return self.error(Reply::new(530, "5.7.0", "Authentication required"));
        }
        if self.transaction.is_some() {
            return self.error(Reply::new(503, "5.5.1", "Nested MAIL command"));
        }
        let limit = self.ctx.settings.max_message_bytes;
        if from.size as u64 > limit {
            return self.error(Reply::new(
                552,
                "5.3.4",
                format!("Message size exceeds the limit of {limit} bytes"),
            ));
        }
        let smtputf8 = from.flags & smtp_proto::MAIL_SMTPUTF8 != 0;
        if !smtputf8 && !from.address.is_ascii() {
            return self.error(Reply::new(553, "5.6.7", "Non-ASCII address needs SMTPUTF8"));
        }
        self.transaction = Some(Transaction {
            sender: from.address,
            smtputf8,
            eight_bit_mime: from.flags & smtp_proto::MAIL_BODY_8BITMIME != 0,
            envid: from.env_id,
            ret_full: from.flags & smtp_proto::MAIL_RET_FULL != 0,
            recipients: Vec::new(),
        });
        self.reply(Reply::new(250, "2.1.0", "Ok"));
        Next::ReadMore
    }

    fn rcpt(&mut self, to: smtp_proto::RcptTo<String>) -> Next {
        let Some(transaction) = &self.transaction else {
            return self.error(Reply::new(503, "5.5.1", "Need MAIL before RCPT"));
        };
        if !self.may_relay() {
            return self.error(Reply::new(554, "5.7.1", "Relay access denied"));
        }
        if !transaction.smtputf8 && !to.address.is_ascii() {
            return self.error(Reply::new(553, "5.6.7", "Non-ASCII address needs SMTPUTF8"));
        }
        if !has_routable_domain(&to.address) {
            return self.error(Reply::new(
                501,
                "5.1.3",
                "Recipient address needs a valid domain",
            ));
        }
        if transaction.recipients.len() >= self.ctx.settings.max_recipients {
            self.reply(Reply::new(452, "4.5.3", "Too many recipients"));
            return Next::ReadMore;
        }
        if let Some(transaction) = &mut self.transaction {
            let mut recipient = Recipient::new(to.address);
            recipient.notify = Notify::from_flags(to.flags);
            recipient.orcpt = to.orcpt;
            transaction.recipients.push(recipient);
        }
        self.reply(Reply::new(250, "2.1.5", "Ok"));
        Next::ReadMore
    }

    fn data(&mut self) -> Next {
        match &self.transaction {
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
