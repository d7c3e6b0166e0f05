//! The outbound SMTP client: one session with a next hop, reusable for several messages.
//!
//! Replies are parsed by smtp-proto's I/O-free `ResponseReceiver`; this file adds the I/O, the
//! RFC 5321 §4.5.3.2 timeouts, a cap on reply size (a hostile server sending an endless `250-`
//! costs at most [`MAX_REPLY_BYTES`]), PIPELINING, STARTTLS and dot-stuffed content.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::smtp::stream::SmtpStream;

mod send;
pub mod zero_copy;

pub use super::response::{Capabilities, MAX_REPLY_BYTES, RemoteReply, ReplyReader};

/// By default a connection is closed after this many transactions, so one long-lived session
/// does not pin all traffic to one remote process (`[[shaping]] max_messages_per_connection`).
pub const MAX_TRANSACTIONS_PER_CONNECTION: u32 = 100;

/// RFC 5321 §4.5.3.2 waits.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub greeting: Duration,
    pub command: Duration,
    pub data_start: Duration,
    pub data_block: Duration,
    pub data_end: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(30),
            greeting: Duration::from_secs(300),
            command: Duration::from_secs(300),
            data_start: Duration::from_secs(120),
            data_block: Duration::from_secs(180),
            data_end: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("timed out waiting for the {0} reply")]
    Timeout(&'static str),
    #[error("the server closed the connection")]
    Closed,
    #[error("malformed reply: {0}")]
    Protocol(String),
    #[error("{stage} refused: {reply}")]
    Rejected {
        stage: &'static str,
        reply: RemoteReply,
    },
    #[error("TLS handshake failed: {0}")]
    Tls(String),
}

/// The envelope of one transaction.
#[derive(Debug, Clone)]
pub struct MailRequest<'a> {
    pub sender: &'a str,
    pub recipients: &'a [String],
    pub size: u64,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
}

/// The message content to send, undotted, with CRLF line ends.
pub enum Content<'a> {
    /// Already in memory (small messages are read whole from the spool).
    Memory(&'a [u8]),
    /// Read in pieces (large messages).
    Stream(&'a mut (dyn AsyncRead + Unpin + Send)),
    /// In the spool, needing no dot-stuffing: sent with `sendfile` (plain TCP only).
    AsIs(&'a zero_copy::SpooledContent),
}

/// Per-recipient outcome of one transaction, in the order of `MailRequest::recipients`.
/// An accepted recipient carries the reply to the end of DATA.
#[derive(Debug, Clone)]
pub struct TransactionOutcome {
    pub replies: Vec<RemoteReply>,
}

/// An open SMTP session with a next hop.
pub struct SmtpClient {
    stream: SmtpStream,
    input: BytesMut,
    pub capabilities: Capabilities,
    /// The source address the connection is bound to (`None`: the host's default).
    pub source: Option<IpAddr>,
    pub target: SocketAddr,
    /// `TLSv1.3` etc. once STARTTLS succeeded.
    pub tls_version: Option<String>,
    /// The server's certificate was verified (a verifying configuration was used and TLS is up).
    pub verified: bool,
    /// Transactions completed on this connection.
    pub transactions: u32,
    /// After this many transactions the connection is closed rather than reused.
    pub max_transactions: u32,
    /// The server said 421 (closing): the connection must not be reused.
    pub closing: bool,
    /// The (source IP, site) pair this connection counts against, and its place in the pair's
    /// `max_connections`, given back when the connection is dropped.
    pub shaping: Option<(Arc<super::shaping::Pair>, super::shaping::ConnectionPermit)>,
    timeouts: Timeouts,
    _counted: crate::metrics::ConnectionGuard,
}

impl SmtpClient {
    /// Reads the greeting, says EHLO (HELO if EHLO is refused) and, when `tls` is given and the
    /// server offers it, upgrades with STARTTLS and says EHLO again.
    pub async fn open(
        stream: TcpStream,
        source: Option<IpAddr>,
        ehlo_name: &str,
        server_name: &str,
        tls: Option<&Arc<ClientConfig>>,
        timeouts: Timeouts,
    ) -> Result<Self, ClientError> {
        let target = stream.peer_addr()?;
        let mut client = Self {
            stream: SmtpStream::Plain(stream),
            input: BytesMut::with_capacity(4096),
            capabilities: Capabilities::default(),
            source,
            target,
            tls_version: None,
            verified: false,
            transactions: 0,
            max_transactions: MAX_TRANSACTIONS_PER_CONNECTION,
            closing: false,
            shaping: None,
            timeouts,
            _counted: crate::metrics::ConnectionGuard::outbound(),
        };
        let greeting = client.read_reply("greeting", timeouts.greeting).await?;
        if greeting.code != 220 {
            return Err(ClientError::Rejected {
                stage: "greeting",
                reply: greeting,
            });
        }
        client.hello(ehlo_name).await?;
        if let Some(config) = tls
            && client.capabilities.starttls
        {
            client = client.start_tls(config, server_name).await?;
            client.hello(ehlo_name).await?;
        }
        Ok(client)
    }

    async fn hello(&mut self, ehlo_name: &str) -> Result<(), ClientError> {
        self.write(format!("EHLO {ehlo_name}\r\n").as_bytes())
            .await?;
        let reply = self.read_reply("EHLO", self.timeouts.command).await?;
        if reply.is_positive() {
            self.capabilities = Capabilities::parse(&reply.text);
            return Ok(());
        }
        self.write(format!("HELO {ehlo_name}\r\n").as_bytes())
            .await?;
        let reply = self.read_reply("HELO", self.timeouts.command).await?;
        if !reply.is_positive() {
            return Err(ClientError::Rejected {
                stage: "HELO",
                reply,
            });
        }
        self.capabilities = Capabilities::default();
        Ok(())
    }

    /// STARTTLS and the handshake; the client continues on the encrypted stream.
    async fn start_tls(
        mut self,
        config: &Arc<ClientConfig>,
        server_name: &str,
    ) -> Result<Self, ClientError> {
        self.write(b"STARTTLS\r\n").await?;
        let reply = self.read_reply("STARTTLS", self.timeouts.command).await?;
        if reply.code != 220 {
            return Err(ClientError::Rejected {
                stage: "STARTTLS",
                reply,
            });
        }
        // Anything the server sent after its 220 arrived in plaintext and could have been
        // injected by an attacker on the path: it must not be read as a reply inside TLS.
        self.input.clear();
        let name = ServerName::try_from(server_name.to_string())
            .or_else(|_| ServerName::try_from(self.target.ip().to_string()))
            .map_err(|error| ClientError::Tls(error.to_string()))?;
        let SmtpStream::Plain(plain) = self.stream else {
            return Err(ClientError::Tls(
                "the connection is already encrypted".into(),
            ));
        };
        let connector = TlsConnector::from(config.clone());
        let handshake = tokio::time::timeout(self.timeouts.command, connector.connect(name, plain));
        let tls = match handshake.await {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => return Err(ClientError::Tls(error.to_string())),
            Err(_) => return Err(ClientError::Timeout("TLS handshake")),
        };
        self.tls_version = tls
            .get_ref()
            .1
            .protocol_version()
            .map(|v| format!("{v:?}").replace('_', "."));
        self.stream = SmtpStream::Tls(Box::new(tokio_rustls::TlsStream::Client(tls)));
        Ok(self)
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        match tokio::time::timeout(self.timeouts.command, self.stream.write_all(bytes)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ClientError::Timeout("write")),
        }
    }

    /// Reads one complete (possibly multi-line) reply.
    async fn read_reply(
        &mut self,
        stage: &'static str,
        timeout: Duration,
    ) -> Result<RemoteReply, ClientError> {
        let deadline = Instant::now() + timeout;
        let mut reader = ReplyReader::default();
        loop {
            match reader.next(&mut self.input) {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(error) => return Err(ClientError::Protocol(format!("{stage}: {error}"))),
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.input)).await {
                Err(_) => return Err(ClientError::Timeout(stage)),
                Ok(Ok(0)) => return Err(ClientError::Closed),
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(error.into()),
            }
        }
    }

    async fn write_block(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        match tokio::time::timeout(self.timeouts.data_block, self.stream.write_all(bytes)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ClientError::Timeout("DATA block")),
        }
    }

    /// RSET, to start a clean transaction on a reused connection.
    pub async fn reset(&mut self) -> Result<(), ClientError> {
        self.write(b"RSET\r\n").await?;
        let reply = self.read_reply("RSET", self.timeouts.command).await?;
        if reply.is_positive() {
            Ok(())
        } else {
            Err(ClientError::Rejected {
                stage: "RSET",
                reply,
            })
        }
    }

    /// Says QUIT and closes, without waiting long for a well-behaved goodbye.
    ///
    /// After the 221 it waits (briefly) for the server to close its side, so the connection
    /// stops counting against the (IP, site) limit only once the server no longer counts it.
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            if self.stream.write_all(b"QUIT\r\n").await.is_ok()
                && self
                    .read_reply("QUIT", Duration::from_secs(5))
                    .await
                    .is_ok()
            {
                let mut rest = [0u8; 512];
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    while matches!(self.stream.read(&mut rest).await, Ok(n) if n > 0) {}
                })
                .await;
            }
            let _ = self.stream.shutdown().await;
        })
        .await;
    }
}
