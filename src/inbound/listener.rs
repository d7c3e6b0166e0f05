//! The accept loop: one task per connection, capped by a semaphore.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::connection;
use super::context::InboundContext;
use crate::smtp::stream::SmtpStream;

/// Accepts connections until shutdown. Past `max_connections` a client gets
/// `421 4.7.0` and is disconnected at once, so new clients learn to come back instead of hanging.
/// Session tasks are tracked so shutdown can wait for them to say goodbye.
pub async fn serve_listener(
    listener: TcpListener,
    ctx: Arc<InboundContext>,
    connections: Arc<Semaphore>,
    sessions: TaskTracker,
    implicit_tls: bool,
) {
    let local = listener.local_addr().ok();
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Usually EMFILE: wait a moment instead of spinning.
                tracing::warn!(?local, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // On a dual-stack `[::]` listener an IPv4 client arrives as ::ffff:a.b.c.d: the plain
        // IPv4 address is the one relay_networks, logs and Received headers mean.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let _ = stream.set_nodelay(true);
        let Some(admitted) = ctx.per_ip.admit(peer.ip()) else {
            tracing::warn!(client = %peer, "connection refused: too many connections from this address");
            sessions.spawn(refuse(
                stream,
                "421 4.7.0 Too many connections from your address, try again later\r\n",
            ));
            continue;
        };
        match connections.clone().try_acquire_owned() {
            Ok(permit) => {
                let ctx = ctx.clone();
                sessions.spawn(async move {
                    let _counted = crate::metrics::ConnectionGuard::inbound();
                    let stream = if implicit_tls {
                        // Implicit TLS (port 465 style): the handshake comes before the greeting.
                        let Some(tls) = &ctx.tls else { return };
                        let handshake = tls.acceptor().accept(stream);
                        match tokio::time::timeout(ctx.settings.command_timeout, handshake).await {
                            Ok(Ok(tls)) => SmtpStream::Tls(Box::new(tokio_rustls::TlsStream::Server(tls))),
                            _ => {
                                tracing::debug!(client = %peer, "TLS handshake failed on the implicit-TLS listener");
                                return;
                            }
                        }
                    } else {
                        SmtpStream::Plain(stream)
                    };
                    if let Err(error) = connection::run(ctx, stream, peer).await {
                        tracing::debug!(client = %peer, %error, "session ended with an I/O error");
                    }
                    drop(permit);
                    drop(admitted);
                });
            }
            Err(_) => {
                tracing::warn!(client = %peer, "connection refused: too many connections");
                sessions.spawn(refuse(
                    stream,
                    "421 4.7.0 Too many connections, try again later\r\n",
                ));
            }
        }
    }
}

/// Says why a connection is not served and closes it.
async fn refuse(mut stream: tokio::net::TcpStream, reply: &'static str) {
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(reply.as_bytes())).await;
}
