//! One sink session: greeting, envelope, DATA read strictly, recording, and the reply.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use smtp_proto::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::shared::{OpenGuard, RcptAttempt, Shared, SinkMessage};
use crate::settings::BareNewline;
use crate::smtp::Reply;
use crate::smtp::data::DataReader;
use crate::smtp::line::{Framed, frame_command};
use crate::smtp::stream::SmtpStream;

/// What a command asks the session loop to do after its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Continue,
    Data,
    StartTls,
    Quit,
}

/// The envelope as the client builds it.
struct Dialogue {
    shared: Arc<Shared>,
    peer: SocketAddr,
    helo: String,
    sender: Option<String>,
    recipients: Vec<String>,
    /// The connection is encrypted.
    tls: bool,
}

/// `open` counts the connection as open; it is dropped before the connection is closed, so a
/// client that waits for the close never sees it counted after that.
pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    open: OpenGuard,
) -> std::io::Result<()> {
    let mut stream = SmtpStream::Plain(stream);
    let mut input = BytesMut::with_capacity(8192);
    let mut output = Vec::new();
    let refusal = shared.refusals.lock().get(&peer.ip()).cloned();
    if let Some(refusal) = refusal.as_ref().filter(|r| r.at_greeting) {
        stream
            .write_all(format!("{}\r\n", refusal.reply).as_bytes())
            .await?;
        return Ok(());
    }
    Reply::new(220, "", "sink.poolrelay.test ESMTP recording sink").write_to(&mut output);
    stream.write_all(&output).await?;
    let mut dialogue = Dialogue {
        shared: shared.clone(),
        peer,
        helo: String::new(),
        sender: None,
        recipients: Vec::new(),
        tls: false,
    };
    loop {
        output.clear();
        let mut step = Step::Continue;
        while let Framed::Line(line, used) = frame_command(&input) {
            let mut framed = line.to_vec();
            framed.extend_from_slice(b"\r\n");
            input.advance(used);
            let reply;
            (reply, step) = dialogue.command(&framed);
            reply.write_to(&mut output);
            if step != Step::Continue {
                break;
            }
        }
        stream.write_all(&output).await?;
        match step {
            Step::Quit => {
                drop(open);
                return Ok(());
            }
            Step::StartTls => {
                input.clear();
                let (Some(acceptor), SmtpStream::Plain(plain)) = (shared.tls.clone(), stream)
                else {
                    return Ok(());
                };
                let tls = acceptor.accept(plain).await?;
                stream = SmtpStream::Tls(Box::new(tokio_rustls::TlsStream::Server(tls)));
                dialogue.tls = true;
            }
            Step::Data => {
                let Some(message) = dialogue.receive(&mut stream, &mut input).await? else {
                    return Ok(());
                };
                dialogue.record(message);
                dialogue.before_final_reply().await;
                output.clear();
                Reply::new(250, "2.0.0", "Ok: recorded").write_to(&mut output);
                stream.write_all(&output).await?;
            }
            Step::Continue => {
                if stream.read_buf(&mut input).await? == 0 {
                    return Ok(());
                }
            }
        }
    }
}

impl Dialogue {
    /// The reply to one command line (with its CRLF), and what comes next.
    fn command(&mut self, line: &[u8]) -> (Reply, Step) {
        let offers_tls = self.shared.tls.is_some() && !self.tls;
        let reply = match Request::parse(&mut line.iter()).map(|r| r.into_owned()) {
            Ok(Request::Ehlo { host }) => {
                self.helo = host;
                let last = if offers_tls { "STARTTLS" } else { "HELP" };
                let lines = [
                    "sink.poolrelay.test",
                    "PIPELINING",
                    "8BITMIME",
                    "SMTPUTF8",
                    "SIZE 1073741824",
                    "ENHANCEDSTATUSCODES",
                    last,
                ];
                Reply::multiline(250, lines.iter().map(|l| l.to_string()).collect())
            }
            Ok(Request::StartTls) if offers_tls => {
                return (
                    Reply::new(220, "2.0.0", "Ready to start TLS"),
                    Step::StartTls,
                );
            }
            Ok(Request::Helo { host }) => {
                self.helo = host;
                Reply::new(250, "", "sink.poolrelay.test")
            }
            Ok(Request::Mail { from }) => {
                self.sender = Some(from.address);
                self.recipients.clear();
                Reply::new(250, "2.1.0", "Ok")
            }
            Ok(Request::Rcpt { to }) => self.rcpt(to.address),
            Ok(Request::Data) if self.sender.is_some() && !self.recipients.is_empty() => {
                return (Reply::new(354, "", "Go ahead"), Step::Data);
            }
            Ok(Request::Data) => Reply::new(554, "5.5.1", "No valid recipients"),
            Ok(Request::Rset) => {
                self.sender = None;
                self.recipients.clear();
                Reply::new(250, "2.0.0", "Ok")
            }
            Ok(Request::Quit) => return (Reply::new(221, "2.0.0", "Bye"), Step::Quit),
            Ok(_) => Reply::new(250, "2.0.0", "Ok"),
            Err(_) => Reply::new(500, "5.5.1", "Command unrecognized"),
        };
        (reply, Step::Continue)
    }

    /// RCPT: refused as the test asked (a refusal of the source IP, or by the recipient's local
    /// part: `tempfail...` 451, `reject...` 550), else accepted; every attempt is recorded.
    fn rcpt(&mut self, address: String) -> Reply {
        let local = address
            .split('@')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let refused = self
            .shared
            .refusals
            .lock()
            .get(&self.peer.ip())
            .map(|r| r.reply.clone());
        let reply = if let Some(line) = refused {
            let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(554);
            Reply::new(code, "", line.get(4..).unwrap_or_default().to_string())
        } else if local.starts_with("tempfail") {
            Reply::new(451, "4.2.0", "Mailbox temporarily unavailable")
        } else if local.starts_with("reject") {
            // As Postfix words it, echoing the address back.
            let text = format!("<{address}>: Recipient address rejected: User unknown");
            Reply::new(550, "5.1.1", text)
        } else {
            self.recipients.push(address.clone());
            Reply::new(250, "2.1.5", "Ok")
        };
        let attempt = RcptAttempt {
            peer: self.peer,
            recipient: address,
            code: reply.code,
            at: std::time::Instant::now(),
        };
        self.shared.rcpt_attempts.lock().push(attempt);
        self.shared.arrived.notify_waiters();
        reply
    }

    /// Reads DATA to its end. `None`: the client went away.
    async fn receive(
        &mut self,
        stream: &mut SmtpStream,
        input: &mut BytesMut,
    ) -> std::io::Result<Option<SinkMessage>> {
        let mut reader = DataReader::new(BareNewline::Normalize, u64::MAX);
        let mut strict = DataReader::new(BareNewline::Reject, u64::MAX);
        let mut content = Vec::new();
        let mut ignored = Vec::new();
        loop {
            if !input.is_empty() {
                // Both readers find the same end; the strict one only judges the line ends.
                // When only counting, only the start of the content is kept (to see whether
                // its header block has a DKIM-Signature).
                let fed = if self.shared.keep_messages {
                    let fed = reader.feed(input, &mut content);
                    strict.feed(&input[..fed.consumed], &mut ignored);
                    fed
                } else {
                    let fed = strict.feed(input, &mut ignored);
                    let room = COUNTED_HEAD
                        .saturating_sub(content.len())
                        .min(ignored.len());
                    content.extend_from_slice(&ignored[..room]);
                    fed
                };
                ignored.clear();
                input.advance(fed.consumed);
                if fed.finished {
                    break;
                }
            }
            if stream.read_buf(input).await? == 0 {
                return Ok(None);
            }
        }
        Ok(Some(SinkMessage {
            peer: self.peer,
            helo: self.helo.clone(),
            sender: self.sender.take().unwrap_or_default(),
            recipients: std::mem::take(&mut self.recipients),
            content,
            violation: strict.violation(),
            tls: self.tls,
        }))
    }

    /// Counts the message, keeps it (unless only counting) and wakes whoever waits for it.
    fn record(&self, message: SinkMessage) {
        let shared = &self.shared;
        {
            let mut counts = shared.counts.lock();
            counts.messages += 1;
            *counts.per_ip.entry(self.peer.ip()).or_default() += 1;
            counts.not_clean += u64::from(message.violation.is_some());
            counts.dkim_signed += u64::from(has_dkim_signature(&message.content));
        }
        if shared.keep_messages {
            shared.messages.lock().push(message);
        }
        shared.arrived.notify_waiters();
    }

    /// The delays a test asked for before the reply to the end of DATA.
    async fn before_final_reply(&self) {
        let shared = &self.shared;
        let delay = *shared.final_reply_delay.lock();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        loop {
            let released = shared.released.notified();
            if !shared
                .hold_replies
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                break;
            }
            released.await;
        }
    }
}

/// How much of each message a counting sink looks at.
const COUNTED_HEAD: usize = 8 * 1024;

/// Whether the header block of `content` has a `DKIM-Signature` field.
fn has_dkim_signature(content: &[u8]) -> bool {
    crate::smtp::header_fields::fields(content).any(|field| field.is("dkim-signature"))
}
