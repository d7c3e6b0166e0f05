//! The I/O half of an inbound session: reads the client's bytes into the session, sends its
//! replies, and does what the session asks for between commands (receive DATA, upgrade to TLS,
//! check a password).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::context::InboundContext;
use super::session::{Next, Session};
use crate::smtp::Reply;
use crate::smtp::stream::SmtpStream;

/// Runs a session on `stream` to its end.
pub async fn run(
    ctx: Arc<InboundContext>,
    mut stream: SmtpStream,
    peer: SocketAddr,
) -> std::io::Result<()> {
    let mut session = Session::new(ctx.clone(), peer, stream.tls_description());
    let greeting = format!("{} ESMTP poolrelay", ctx.settings.hostname);
    session.reply(Reply::new(220, "", greeting));
    flush(&mut stream, &mut session).await?;
    // When the command now in the input began: the whole command must arrive within
    // `command_timeout` of it, however the client drips it (one byte per read would otherwise
    // reset a per-read timeout forever).
    let mut command_began = Instant::now();
    loop {
        let before = session.input.len();
        let next = session.ingest();
        if session.input.len() != before || session.input.is_empty() {
            command_began = Instant::now();
        }
        flush(&mut stream, &mut session).await?;
        match next {
            Next::Close => return Ok(()),
            Next::ReceiveData => {
                if !session.receive_data(&mut stream).await? {
                    return Ok(());
                }
                continue;
            }
            Next::StartTls => {
                stream = match start_tls(&ctx, stream, peer).await {
                    Some(upgraded) => upgraded,
                    None => return Ok(()),
                };
                // Anything the client sent after STARTTLS in plaintext is thrown away
                // (CVE-2011-0411: it could have been injected by someone on the path).
                session.input.clear();
                session.tls_started(stream.tls_description());
                continue;
            }
            Next::Authenticate { username, password } => {
                let go_on = session.authenticate(username, password).await;
                flush(&mut stream, &mut session).await?;
                if !go_on {
                    return Ok(());
                }
                continue;
            }
            Next::ReadMore => {}
        }
        let deadline = command_began + ctx.settings.command_timeout;
        if !read_more(&mut stream, &mut session, deadline).await? {
            return Ok(());
        }
    }
}

/// Sends the replies the session has written.
async fn flush(stream: &mut SmtpStream, session: &mut Session) -> std::io::Result<()> {
    if !session.output.is_empty() {
        stream.write_all(&session.output).await?;
        session.output.clear();
    }
    Ok(())
}

/// Reads more input into the session, unless `deadline` passes first. `Ok(false)` means the
/// session is over (closed, timed out, shutting down); any farewell reply has been sent.
pub(super) async fn read_more(
    stream: &mut SmtpStream,
    session: &mut Session,
    deadline: Instant,
) -> std::io::Result<bool> {
    let shutdown = session.ctx.shutdown.clone();
    let farewell = tokio::select! {
        _ = shutdown.cancelled() => {
            Reply::new(421, "4.3.2", "Service shutting down, try again later")
        }
        read = tokio::time::timeout_at(deadline.into(), stream.read_buf(&mut session.input)) => match read {
            Err(_) => Reply::new(421, "4.4.2", "Timeout, closing the connection"),
            Ok(Ok(0)) => return Ok(false),
            Ok(Ok(_)) => return Ok(true),
            Ok(Err(error)) => return Err(error),
        }
    };
    session.reply(farewell);
    flush(stream, session).await?;
    Ok(false)
}

/// The TLS handshake after `220 Ready to start TLS` (already sent). `None`: the session is over.
async fn start_tls(
    ctx: &InboundContext,
    stream: SmtpStream,
    peer: SocketAddr,
) -> Option<SmtpStream> {
    let (tls, SmtpStream::Plain(plain)) = (ctx.tls.as_ref()?, stream) else {
        return None;
    };
    match tokio::time::timeout(ctx.settings.command_timeout, tls.acceptor().accept(plain)).await {
        Ok(Ok(stream)) => Some(SmtpStream::Tls(Box::new(tokio_rustls::TlsStream::Server(
            stream,
        )))),
        Ok(Err(error)) => {
            tracing::info!(client = %peer, %error, "TLS handshake failed");
            None
        }
        Err(_) => None,
    }
}
