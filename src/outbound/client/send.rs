//! One transaction on an open session: the envelope (pipelined when the server allows), the
//! dot-stuffed content, and each recipient's reply.

use super::{ClientError, Content, MailRequest, RemoteReply, SmtpClient, TransactionOutcome};
use tokio::io::AsyncReadExt;

use crate::smtp::address;
use crate::smtp::dot_stuff::DotStuffer;
use crate::smtp::stream::SmtpStream;

/// The server's replies to MAIL, each RCPT and DATA (`None`: DATA was not sent).
struct EnvelopeReplies {
    mail: RemoteReply,
    rcpt: Vec<RemoteReply>,
    data: Option<RemoteReply>,
}

impl EnvelopeReplies {
    fn data_ready(&self) -> bool {
        self.data.as_ref().is_some_and(|r| r.code == 354)
    }

    /// At least one recipient accepted and the server waits for the content.
    fn ready_for_content(&self) -> bool {
        self.mail.is_positive()
            && self.rcpt.iter().any(RemoteReply::is_positive)
            && self.data_ready()
    }
}

impl SmtpClient {
    /// Sends one message: MAIL, RCPT for each recipient, DATA and the dot-stuffed content.
    /// With PIPELINING the envelope commands go in one write. A recipient refused at RCPT keeps
    /// its RCPT reply; accepted recipients share the reply to the end of DATA.
    ///
    /// Errors mean the connection is unusable; the caller treats every recipient as deferred.
    pub async fn send(
        &mut self,
        request: &MailRequest<'_>,
        content: Content<'_>,
    ) -> Result<TransactionOutcome, ClientError> {
        let mail = self.mail_command(request);
        let rcpts: Vec<String> = request
            .recipients
            .iter()
            .map(|r| format!("RCPT TO:<{}>\r\n", address::for_the_wire(r)))
            .collect();
        let envelope = if self.capabilities.pipelining {
            self.pipelined_envelope(&mail, &rcpts).await?
        } else {
            self.stepwise_envelope(&mail, &rcpts).await?
        };
        if !envelope.ready_for_content() {
            return self.abandon(envelope, request.recipients.len()).await;
        }
        self.send_content(content).await?;
        let final_reply = self
            .read_reply("end of DATA", self.timeouts.data_end)
            .await?;
        self.transactions += 1;
        let replies = envelope
            .rcpt
            .into_iter()
            .map(|r| {
                if r.is_positive() {
                    final_reply.clone()
                } else {
                    r
                }
            })
            .collect();
        Ok(TransactionOutcome { replies })
    }

    /// `MAIL FROM` with the parameters the server supports.
    fn mail_command(&self, request: &MailRequest<'_>) -> String {
        let mut mail = format!("MAIL FROM:<{}>", address::for_the_wire(request.sender));
        if self.capabilities.size.is_some() {
            mail.push_str(&format!(" SIZE={}", request.size));
        }
        if request.eight_bit_mime && self.capabilities.eight_bit_mime {
            mail.push_str(" BODY=8BITMIME");
        }
        if request.smtputf8 && self.capabilities.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        mail.push_str("\r\n");
        mail
    }

    /// MAIL, every RCPT and DATA in one write, then their replies in order.
    async fn pipelined_envelope(
        &mut self,
        mail: &str,
        rcpts: &[String],
    ) -> Result<EnvelopeReplies, ClientError> {
        let mut batch = mail.as_bytes().to_vec();
        for rcpt in rcpts {
            batch.extend_from_slice(rcpt.as_bytes());
        }
        batch.extend_from_slice(b"DATA\r\n");
        self.write(&batch).await?;
        let timeout = self.timeouts.command;
        let mail = self.read_reply("MAIL", timeout).await?;
        let mut rcpt = Vec::with_capacity(rcpts.len());
        for _ in rcpts {
            rcpt.push(self.read_reply("RCPT", timeout).await?);
        }
        let data = Some(self.read_reply("DATA", self.timeouts.data_start).await?);
        Ok(EnvelopeReplies { mail, rcpt, data })
    }

    /// One command at a time, stopping where the server refused (no RCPT after a refused MAIL,
    /// no DATA without an accepted recipient).
    async fn stepwise_envelope(
        &mut self,
        mail: &str,
        rcpts: &[String],
    ) -> Result<EnvelopeReplies, ClientError> {
        let timeout = self.timeouts.command;
        self.write(mail.as_bytes()).await?;
        let mail = self.read_reply("MAIL", timeout).await?;
        let mut rcpt = Vec::with_capacity(rcpts.len());
        if mail.is_positive() {
            for command in rcpts {
                self.write(command.as_bytes()).await?;
                rcpt.push(self.read_reply("RCPT", timeout).await?);
            }
        }
        let data = if rcpt.iter().any(RemoteReply::is_positive) {
            self.write(b"DATA\r\n").await?;
            Some(self.read_reply("DATA", self.timeouts.data_start).await?)
        } else {
            None
        };
        Ok(EnvelopeReplies { mail, rcpt, data })
    }

    /// Nothing can be sent: ends DATA empty if the server asked for content anyway, resets the
    /// session (or marks it closing after a 421), and gives each recipient the reply that
    /// refused it.
    async fn abandon(
        &mut self,
        envelope: EnvelopeReplies,
        recipients: usize,
    ) -> Result<TransactionOutcome, ClientError> {
        if envelope.data_ready() {
            // The server wants content although nothing was accepted: end it empty.
            self.write(b".\r\n").await?;
            self.read_reply("end of DATA", self.timeouts.data_end)
                .await?;
        }
        // 421 means the server is closing the connection: nothing more can be said on it.
        let EnvelopeReplies { mail, rcpt, data } = envelope;
        let closing = mail.code == 421
            || rcpt.iter().any(|r| r.code == 421)
            || data.as_ref().is_some_and(|r| r.code == 421);
        if closing {
            self.closing = true;
        } else {
            self.reset().await?;
        }
        let replies = (0..recipients)
            .map(|i| {
                if !mail.is_positive() {
                    return mail.clone();
                }
                match (rcpt.get(i), &data) {
                    (Some(r), _) if !r.is_positive() => r.clone(),
                    (_, Some(data)) => data.clone(),
                    (Some(r), None) => r.clone(),
                    (None, None) => mail.clone(),
                }
            })
            .collect();
        Ok(TransactionOutcome { replies })
    }

    /// Sends the dot-stuffed content, then the end-of-data marker. Anything the server says
    /// before the marker is a protocol error (a reply to content it has not seen the end of
    /// cannot be the verdict on it): the connection is given up and the recipients retried.
    async fn send_content(&mut self, content: Content<'_>) -> Result<(), ClientError> {
        let mut stuffer = DotStuffer::new();
        let mut wire;
        match content {
            Content::Memory(bytes) => {
                // A small message goes out with its end marker in one write. A reply that came
                // with or right after the 354 is already in the input buffer: checked before.
                if !self.input.is_empty() {
                    return Err(early_reply(self));
                }
                wire = Vec::with_capacity(bytes.len() + bytes.len() / 32 + 8);
                stuffer.stuff(bytes, &mut wire);
                stuffer.finish(&mut wire);
                return self.write_block(&wire).await;
            }
            Content::AsIs(spooled) => {
                let SmtpStream::Plain(socket) = &self.stream else {
                    return Err(ClientError::Protocol(
                        "spooled content can be sent as it is only over plain TCP".into(),
                    ));
                };
                super::zero_copy::send_file(socket, spooled, self.timeouts.data_block).await?;
                wire = Vec::new();
            }
            Content::Stream(reader) => {
                let mut chunk = vec![0u8; 64 * 1024];
                wire = Vec::with_capacity(66 * 1024);
                loop {
                    let read = reader.read(&mut chunk).await?;
                    if read == 0 {
                        break;
                    }
                    stuffer.stuff(&chunk[..read], &mut wire);
                    self.write_block(&wire).await?;
                    wire.clear();
                }
            }
        }
        if !wire.is_empty() {
            self.write_block(&wire).await?;
        }
        if self.said_something().await {
            return Err(early_reply(self));
        }
        wire.clear();
        stuffer.finish(&mut wire);
        self.write_block(&wire).await
    }

    /// Whether the server has sent anything that has not been read yet (without waiting).
    async fn said_something(&mut self) -> bool {
        if !self.input.is_empty() {
            return true;
        }
        // One read attempt: the inner future is polled before the zero timeout is.
        let read = tokio::time::timeout(
            std::time::Duration::ZERO,
            self.stream.read_buf(&mut self.input),
        )
        .await;
        // Data, the end of the stream or an error: anything but "nothing yet".
        read.is_ok()
    }
}

/// The server replied before the end of DATA: the connection is given up.
fn early_reply(client: &mut SmtpClient) -> ClientError {
    client.closing = true;
    ClientError::Protocol("the server replied before the end of DATA".into())
}
