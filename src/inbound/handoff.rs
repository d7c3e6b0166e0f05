//! `[cluster] forward_listen`: where other fleet nodes hand over mail for pools whose IPs live
//! here. A small SMTP server that accepts exactly one kind of message: a handoff sealed with the
//! fleet's secret (`fleet::handoff`). The sealed envelope is the one the sending node spooled
//! (same message id, pool, configuration set, recipients with their DSN parameters, tags); it is
//! spooled here before the 250, and only then does the sending node delete its copy.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

use super::context::InboundContext;
use crate::settings::BareNewline;
use crate::smtp::data::DataReader;

/// Room for the sealed envelope in front of the message (50 recipients with long addresses and
/// every optional field fit many times over).
const HANDOFF_ROOM: u64 = 1024 * 1024;
/// A peer that says nothing for this long is dropped.
const IDLE: Duration = Duration::from_secs(60);

/// Message ids handed over lately, so a handover repeated after the sender crashed between
/// our 250 and its delete is taken once (the 250 is repeated, nothing is spooled twice).
#[derive(Default)]
struct Recent {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl Recent {
    const KEPT: usize = 100_000;

    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    fn insert(&mut self, id: String) {
        if self.ids.insert(id.clone()) {
            self.order.push_back(id);
        }
        while self.order.len() > Self::KEPT {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }
}

/// Accepts handoffs until shutdown.
pub async fn serve_handoffs(
    listener: TcpListener,
    ctx: Arc<InboundContext>,
    secret: Arc<[u8]>,
    sessions: TaskTracker,
) {
    let recent: Arc<Mutex<Recent>> = Arc::default();
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let (ctx, secret, recent) = (ctx.clone(), secret.clone(), recent.clone());
                sessions.spawn(async move {
                    let peer_side = Receiver {
                        ctx: &ctx,
                        secret: &secret,
                        recent: &recent,
                    };
                    if let Err(error) = session(stream, peer_side).await {
                        tracing::debug!(%peer, %error, "handoff session ended");
                    }
                });
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed on the forwarding listener");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// What a handoff session needs.
#[derive(Clone, Copy)]
struct Receiver<'a> {
    ctx: &'a InboundContext,
    secret: &'a [u8],
    recent: &'a Mutex<Recent>,
}

async fn session(stream: TcpStream, receiver: Receiver<'_>) -> std::io::Result<()> {
    let ctx = receiver.ctx;
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut input = BufReader::new(read);
    let hostname = &ctx.settings.hostname;
    write
        .write_all(format!("220 {hostname} poolrelay fleet handoff\r\n").as_bytes())
        .await?;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = tokio::time::timeout(IDLE, input.read_until(b'\n', &mut line)).await;
        match read {
            Ok(Ok(0)) | Err(_) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(error),
        }
        if line.len() > 4096 {
            write.write_all(b"500 5.5.2 line too long\r\n").await?;
            return Ok(());
        }
        let verb = line
            .split(|b| *b == b' ' || *b == b'\r' || *b == b'\n')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_slice() {
            b"EHLO" => {
                let greeting = format!("250-{hostname}\r\n250-8BITMIME\r\n250 PIPELINING\r\n");
                write.write_all(greeting.as_bytes()).await?;
                continue;
            }
            b"HELO" | b"MAIL" | b"RCPT" | b"RSET" | b"NOOP" => b"250 2.0.0 OK\r\n",
            b"QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            b"DATA" => {
                write.write_all(b"354 Go ahead\r\n").await?;
                let reply = receive(&mut input, receiver).await?;
                write.write_all(reply.as_bytes()).await?;
                continue;
            }
            _ => b"502 5.5.1 only handoffs from fleet nodes are taken here\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// Reads one message to the end of data and spools it if its seal holds; returns the reply.
async fn receive(
    input: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    receiver: Receiver<'_>,
) -> std::io::Result<String> {
    let Receiver { ctx, secret, .. } = receiver;
    let mut reader = DataReader::new(
        BareNewline::Reject,
        ctx.settings.max_message_bytes + HANDOFF_ROOM,
    );
    let mut data = Vec::new();
    loop {
        let buffer = tokio::time::timeout(IDLE, input.fill_buf())
            .await
            .map_err(|_| std::io::Error::other("timed out inside DATA"))??;
        if buffer.is_empty() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let fed = reader.feed(buffer, &mut data);
        input.consume(fed.consumed);
        if fed.finished {
            break;
        }
    }
    if let Some(violation) = reader.violation() {
        return Ok(format!("554 5.6.0 handoff refused: {violation:?}\r\n"));
    }
    let (mut envelope, at) = match crate::fleet::handoff::open(secret, &data) {
        Ok(opened) => opened,
        Err(error) => {
            tracing::warn!(%error, "handoff refused");
            return Ok(format!("535 5.7.8 {error}\r\n"));
        }
    };
    if receiver.recent.lock().contains(&envelope.id) {
        tracing::info!(id = %envelope.id, "handed over again: already taken");
        return Ok(format!("250 2.0.0 already queued as {}\r\n", envelope.id));
    }
    let mut writer = ctx.spool.writer();
    writer.buffer().extend_from_slice(&data[at..]);
    drop(data);
    if let Err(error) = writer.flush_if_large().await {
        tracing::error!(%error, "cannot spool a handed-over message");
        return Ok("451 4.3.0 cannot spool the message now\r\n".to_string());
    }
    envelope.size = writer.size();
    envelope.in_memory = None;
    envelope.stored = None;
    let queued = match writer.commit(envelope).await {
        Ok(queued) => queued,
        Err(error) => {
            tracing::error!(%error, "cannot spool a handed-over message");
            return Ok("451 4.3.0 cannot spool the message now\r\n".to_string());
        }
    };
    tracing::info!(
        id = %queued.id,
        from_node = queued.forwarded_from.as_deref().unwrap_or("-"),
        pool = %queued.pool,
        recipients = queued.recipients.len(),
        "handed over: accepted"
    );
    let id = queued.id.clone();
    receiver.recent.lock().insert(id.clone());
    ctx.queue.enqueue(queued);
    Ok(format!("250 2.0.0 queued as {id}\r\n"))
}
