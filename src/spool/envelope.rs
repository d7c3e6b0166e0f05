//! The envelope: everything about a message that is not its content, stored beside it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::held::HeldContent;

/// Where one recipient stands. A message leaves the spool when no recipient is `Pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientState {
    Pending,
    Delivered,
    Failed,
}

/// RFC 3461 `NOTIFY` for one recipient.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Notify {
    /// Not given: failures (and delays) are reported, success is not.
    #[default]
    Default,
    Never,
    /// An explicit list.
    On {
        success: bool,
        failure: bool,
        delay: bool,
    },
}

impl Notify {
    /// From smtp-proto's RCPT flags.
    pub fn from_flags(flags: u64) -> Self {
        use smtp_proto::{
            RCPT_NOTIFY_DELAY, RCPT_NOTIFY_FAILURE, RCPT_NOTIFY_NEVER, RCPT_NOTIFY_SUCCESS,
        };
        if flags & RCPT_NOTIFY_NEVER != 0 {
            Self::Never
        } else if flags & (RCPT_NOTIFY_SUCCESS | RCPT_NOTIFY_FAILURE | RCPT_NOTIFY_DELAY) != 0 {
            Self::On {
                success: flags & RCPT_NOTIFY_SUCCESS != 0,
                failure: flags & RCPT_NOTIFY_FAILURE != 0,
                delay: flags & RCPT_NOTIFY_DELAY != 0,
            }
        } else {
            Self::Default
        }
    }

    pub fn on_failure(self) -> bool {
        match self {
            Self::Default => true,
            Self::Never => false,
            Self::On { failure, .. } => failure,
        }
    }

    pub fn on_success(self) -> bool {
        matches!(self, Self::On { success: true, .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    pub state: RecipientState,
    /// The last reply (or local error) for this recipient, for logs and bounces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reply: Option<String>,
    /// The address of the server that gave `last_reply`, when it came from a remote server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_mta: Option<String>,
    /// The source IP of the attempt that gave `last_reply`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<IpAddr>,
    /// The TLS version of the connection that gave `last_reply` (none: plaintext).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    #[serde(default)]
    pub notify: Notify,
    /// RFC 3461 `ORCPT`, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
    /// True once the final state has been reported (bounce sent, or none needed).
    #[serde(default)]
    pub reported: bool,
}

impl Recipient {
    pub fn new(address: String) -> Self {
        Self {
            address,
            state: RecipientState::Pending,
            last_reply: None,
            remote_mta: None,
            source_ip: None,
            tls_version: None,
            notify: Notify::Default,
            orcpt: None,
            reported: false,
        }
    }

    /// The domain part, lower-cased; address literals keep their brackets.
    /// The recipient's domain in A-label form (see [`crate::domain`]).
    pub fn domain(&self) -> String {
        self.address
            .rsplit_once('@')
            .map(|(_, domain)| crate::domain::to_ascii(domain))
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: String,
    /// Unix time in seconds when the message was accepted.
    pub received_at: u64,
    /// The reverse path; empty for `MAIL FROM:<>`.
    pub sender: String,
    pub recipients: Vec<Recipient>,
    /// The `X-SES-CONFIGURATION-SET` value, if the message had one.
    pub configuration_set: Option<String>,
    /// The pool the message leaves from, fixed when it was accepted.
    pub pool: String,
    pub client_ip: IpAddr,
    pub client_helo: String,
    /// Size of the spooled content in bytes.
    pub size: u64,
    #[serde(default)]
    pub smtputf8: bool,
    #[serde(default)]
    pub eight_bit_mime: bool,
    /// Delivery attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// The source IP of the last attempt, so a retry can prefer another one.
    #[serde(default)]
    pub last_source_ip: Option<IpAddr>,
    /// Unix time after which pending recipients fail as expired (0: not set, see the queue).
    #[serde(default)]
    pub expires_at: u64,
    /// This message is a delivery status notification: it is never bounced itself.
    #[serde(default)]
    pub is_dsn: bool,
    /// Put on hold by an operator: not attempted until released.
    #[serde(default)]
    pub held: bool,
    /// RFC 3461 `ENVID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
    /// RFC 3461 `RET=FULL`: a bounce carries the whole message, not just its headers.
    #[serde(default)]
    pub ret_full: bool,
    /// `X-SES-MESSAGE-TAGS` pairs, for events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    /// The message's `Message-ID` header value, for matching reports that carry only it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_message_id: Option<String>,
    /// The spooled content goes on the wire as it is (no dot-stuffing needed; see
    /// `smtp::dot_stuff::AsIsCheck`). Checked for messages with a segment of their own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sends_as_is: bool,
    /// In a fleet: the node that handed this message over (it is never handed on again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_from: Option<String>,
    /// Where the spool holds the content; set by the spool, not part of the stored envelope.
    #[serde(skip)]
    pub stored: Option<Stored>,
    /// The content kept in memory for the first attempt (see [`HeldContent`]); none after it.
    #[serde(skip)]
    pub in_memory: Option<std::sync::Arc<HeldContent>>,
}

/// Where a message is in the spool: its segment and the offset of its first content byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub segment: u64,
    pub offset: u64,
}

impl Default for Envelope {
    fn default() -> Self {
        Self {
            id: String::new(),
            received_at: 0,
            sender: String::new(),
            recipients: Vec::new(),
            configuration_set: None,
            pool: String::new(),
            client_ip: IpAddr::from([0, 0, 0, 0]),
            client_helo: String::new(),
            size: 0,
            smtputf8: false,
            eight_bit_mime: false,
            attempts: 0,
            last_source_ip: None,
            expires_at: 0,
            is_dsn: false,
            held: false,
            envid: None,
            ret_full: false,
            tags: Vec::new(),
            header_message_id: None,
            sends_as_is: false,
            forwarded_from: None,
            stored: None,
            in_memory: None,
        }
    }
}

impl Envelope {
    pub fn pending(&self) -> impl Iterator<Item = (usize, &Recipient)> {
        self.recipients
            .iter()
            .enumerate()
            .filter(|(_, r)| r.state == RecipientState::Pending)
    }

    pub fn is_finished(&self) -> bool {
        self.pending().next().is_none()
    }
}
