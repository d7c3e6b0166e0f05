//! The envelope: everything about a message that is not its content, stored beside it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Where one recipient stands. A message leaves the spool when no recipient is `Pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientState {
    Pending,
    Delivered,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    pub state: RecipientState,
    /// The last reply (or local error) for this recipient, for logs and later for bounces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reply: Option<String>,
}

impl Recipient {
    pub fn new(address: String) -> Self {
        Self {
            address,
            state: RecipientState::Pending,
            last_reply: None,
        }
    }

    /// The domain part, lower-cased; address literals keep their brackets.
    pub fn domain(&self) -> String {
        self.address
            .rsplit_once('@')
            .map(|(_, domain)| domain.to_ascii_lowercase())
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
