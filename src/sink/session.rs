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
    let mut helo = String::new();
    let mut sender: Option<String> = None;
    let mut recipients: Vec<String> = Vec::new();
    loop {
        output.clear();
        let mut start_data = false;
        let mut quit = false;
        let mut start_tls = false;
        while let Framed::Line(line, used) = frame_command(&input) {
            let mut framed = line.to_vec();
            framed.extend_from_slice(b"\r\n");
            input.advance(used);
            let reply = match Request::parse(&mut framed.iter()).map(|r| r.into_owned()) {
                Ok(Request::Ehlo { host }) => {
                    helo = host;
                    Reply::multiline(
                        250,
                        vec![
                            "sink.poolrelay.test".into(),
                            "PIPELINING".into(),
                            "8BITMIME".into(),
                            "SMTPUTF8".into(),
                            "SIZE 1073741824".into(),
                            "ENHANCEDSTATUSCODES".into(),
                            if shared.tls.is_some() && stream.tls_description().is_none() {
                                "STARTTLS".into()
                            } else {
                                "HELP".into()
                            },
                        ],
                    )
                }
                Ok(Request::StartTls)
                    if shared.tls.is_some() && stream.tls_description().is_none() =>
                {
                    start_tls = true;
                    Reply::new(220, "2.0.0", "Ready to start TLS")
                }
                Ok(Request::Helo { host }) => {
                    helo = host;
                    Reply::new(250, "", "sink.poolrelay.test")
                }
                Ok(Request::Mail { from }) => {
                    sender = Some(from.address);
                    recipients.clear();
                    Reply::new(250, "2.1.0", "Ok")
                }
                Ok(Request::Rcpt { to }) => {
                    let local = to
                        .address
                        .split('@')
                        .next()
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    let refused = shared
                        .refusals
                        .lock()
                        .get(&peer.ip())
                        .map(|r| r.reply.clone());
                    let reply = if let Some(line) = refused {
                        let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(554);
                        Reply::new(code, "", line.get(4..).unwrap_or_default().to_string())
                    } else if local.starts_with("tempfail") {
                        Reply::new(451, "4.2.0", "Mailbox temporarily unavailable")
                    } else if local.starts_with("reject") {
                        Reply::new(550, "5.1.1", "No such user")
                    } else {
                        recipients.push(to.address.clone());
                        Reply::new(250, "2.1.5", "Ok")
                    };
                    let attempt = RcptAttempt {
                        peer,
                        recipient: to.address,
                        code: reply.code,
                        at: std::time::Instant::now(),
                    };
                    shared.rcpt_attempts.lock().push(attempt);
                    shared.arrived.notify_waiters();
                    reply
                }
                Ok(Request::Data) if sender.is_some() && !recipients.is_empty() => {
                    start_data = true;
                    Reply::new(354, "", "Go ahead")
                }
                Ok(Request::Data) => Reply::new(554, "5.5.1", "No valid recipients"),
                Ok(Request::Rset) => {
                    sender = None;
                    recipients.clear();
                    Reply::new(250, "2.0.0", "Ok")
                }
                Ok(Request::Quit) => {
                    quit = true;
                    Reply::new(221, "2.0.0", "Bye")
                }
                Ok(_) => Reply::new(250, "2.0.0", "Ok"),
                Err(_) => Reply::new(500, "5.5.1", "Command unrecognized"),
            };
            reply.write_to(&mut output);
            if start_data || quit || start_tls {
                break;
            }
        }
        stream.write_all(&output).await?;
        if quit {
            drop(open);
            return Ok(());
        }
        if start_tls {
            input.clear();
            let (Some(acceptor), SmtpStream::Plain(plain)) = (shared.tls.clone(), stream) else {
                return Ok(());
            };
            let tls = acceptor.accept(plain).await?;
            stream = SmtpStream::Tls(Box::new(tokio_rustls::TlsStream::Server(tls)));
            continue;
        }
        if start_data {
            let mut reader = DataReader::new(BareNewline::Normalize, u64::MAX);
            let mut strict = DataReader::new(BareNewline::Reject, u64::MAX);
            let mut content = Vec::new();
            let mut ignored = Vec::new();
            loop {
                if !input.is_empty() {
                    // Both readers find the same end; the strict one only judges the line ends.
                    // When only counting, the content is not kept at all.
                    let fed = if shared.keep_messages {
                        let fed = reader.feed(&input, &mut content);
                        strict.feed(&input[..fed.consumed], &mut ignored);
                        fed
                    } else {
                        strict.feed(&input, &mut ignored)
                    };
                    ignored.clear();
                    input.advance(fed.consumed);
                    if fed.finished {
                        break;
                    }
                }
                if stream.read_buf(&mut input).await? == 0 {
                    return Ok(());
                }
            }
            let message = SinkMessage {
                peer,
                helo: helo.clone(),
                sender: sender.take().unwrap_or_default(),
                recipients: std::mem::take(&mut recipients),
                content,
                violation: strict.violation(),
                tls: stream.tls_description().is_some(),
            };
            {
                let mut counts = shared.counts.lock();
                counts.messages += 1;
                *counts.per_ip.entry(peer.ip()).or_default() += 1;
                counts.not_clean += u64::from(message.violation.is_some());
            }
            if shared.keep_messages {
                shared.messages.lock().push(message);
            }
            shared.arrived.notify_waiters();
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
            output.clear();
            Reply::new(250, "2.0.0", "Ok: recorded").write_to(&mut output);
            stream.write_all(&output).await?;
            continue;
        }
        if stream.read_buf(&mut input).await? == 0 {
            return Ok(());
        }
    }
}
