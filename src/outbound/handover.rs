//! Handing a message to another fleet node whose IPs can send it (see `fleet::handoff` for what
//! goes on the wire). The other node answers 250 only once the message is in its spool; until
//! then this node keeps its copy, so a failure on either side never loses the message (at worst
//! it is handed over twice).

use std::net::SocketAddr;
use std::time::Duration;

use super::Outbound;
use super::client::{Content, MailRequest, SmtpClient, Timeouts};
use crate::spool::Envelope;

/// Why a handover did not happen.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("cannot read the spooled content: {0}")]
    Spool(String),
    #[error("cannot reach node {node} at {address}: {detail}")]
    Unreachable {
        node: String,
        address: String,
        detail: String,
    },
    #[error("node {node} refused the handover: {detail}")]
    Refused { node: String, detail: String },
}

/// The node a message is handed to.
pub struct Peer<'a> {
    pub node: &'a str,
    pub forward_listen: &'a str,
}

/// Waits for a peer: shorter than for the internet, since peers are near and a slow one should
/// not hold a delivery slot for minutes.
const PEER_TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(5),
    greeting: Duration::from_secs(30),
    command: Duration::from_secs(30),
    data_start: Duration::from_secs(30),
    data_block: Duration::from_secs(60),
    data_end: Duration::from_secs(120),
};

impl Outbound {
    /// Hands `envelope`'s message to `peer` with the envelope sealed under `secret`. `Ok` once
    /// the peer has spooled it.
    pub async fn hand_over(
        &self,
        envelope: &Envelope,
        peer: Peer<'_>,
        from_node: &str,
        secret: &[u8],
    ) -> Result<(), HandoverError> {
        let content = self.content_bytes(envelope).await?;
        let mut sealed = envelope.clone();
        sealed.forwarded_from = Some(from_node.to_string());
        let mut data = crate::fleet::handoff::seal(secret, &sealed, &content);
        data.extend_from_slice(&content);
        let unreachable = |detail: String| HandoverError::Unreachable {
            node: peer.node.to_string(),
            address: peer.forward_listen.to_string(),
            detail,
        };
        let address: SocketAddr = peer
            .forward_listen
            .parse()
            .map_err(|_| unreachable("not ip:port".into()))?;
        let stream = tokio::time::timeout(
            PEER_TIMEOUTS.connect,
            tokio::net::TcpStream::connect(address),
        )
        .await
        .map_err(|_| unreachable("connect timed out".into()))?
        .map_err(|error| unreachable(error.to_string()))?;
        let mut client =
            SmtpClient::open(stream, None, &self.hostname, peer.node, None, PEER_TIMEOUTS)
                .await
                .map_err(|error| unreachable(error.to_string()))?;
        let recipients = [format!("handoff@{}", peer.node)];
        let request = MailRequest {
            sender: &envelope.sender,
            recipients: &recipients,
            size: data.len() as u64,
            eight_bit_mime: envelope.eight_bit_mime,
            smtputf8: false,
        };
        let outcome = client
            .send(&request, Content::Memory(&data))
            .await
            .map_err(|error| unreachable(error.to_string()))?;
        client.quit().await;
        match outcome.replies.first() {
            Some(reply) if reply.is_positive() => Ok(()),
            Some(reply) => Err(HandoverError::Refused {
                node: peer.node.to_string(),
                detail: reply.to_string(),
            }),
            None => Err(unreachable("no reply to the end of data".into())),
        }
    }

    /// The whole content of a queued message, from memory or the spool.
    async fn content_bytes(&self, envelope: &Envelope) -> Result<Vec<u8>, HandoverError> {
        if let Some(held) = &envelope.in_memory {
            return Ok(held.content().to_vec());
        }
        let (path, offset) = self
            .spool
            .content(envelope)
            .map_err(|error| HandoverError::Spool(error.to_string()))?;
        let size = envelope.size;
        tokio::task::spawn_blocking(move || super::transaction::read_content(&path, offset, size))
            .await
            .map_err(|error| HandoverError::Spool(error.to_string()))?
            .map_err(|error| HandoverError::Spool(error.to_string()))
    }
}
