//! What the SMTP listeners ask about feedback: is a recipient one of the relay's own feedback
//! addresses (a return path at the bounce domain, or `[feedback] address`), and storing a
//! report durably before it is acknowledged.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::inbox::{Inbox, InboxEnvelope};
use crate::return_path::{BadToken, ReturnPath};

/// What an RCPT address is to the feedback loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackRecipient {
    /// Not a feedback address: relayed as usual (if the client may relay).
    Relay,
    /// A valid return path or the feedback-loop address: accepted from anyone.
    Accepted,
    /// At the bounce domain, but it names no message this relay sent.
    Refused(BadToken),
    /// A feedback address, but too many reports wait to be processed: try again later.
    Busy,
}

pub struct FeedbackIntake {
    return_path: Option<Arc<ReturnPath>>,
    /// `[feedback] address`, domain lower-cased.
    address: Option<String>,
    inbox: Inbox,
    /// Wakes the processor for each stored report.
    stored: mpsc::UnboundedSender<PathBuf>,
}

impl FeedbackIntake {
    pub fn new(
        return_path: Option<Arc<ReturnPath>>,
        address: Option<String>,
        inbox: Inbox,
        stored: mpsc::UnboundedSender<PathBuf>,
    ) -> Self {
        Self {
            return_path,
            address,
            inbox,
            stored,
        }
    }

    /// Whether any address receives feedback (else MAIL from outsiders is refused at once).
    pub fn receives(&self) -> bool {
        self.return_path.is_some() || self.address.is_some()
    }

    pub fn classify(&self, address: &str, now: u64) -> FeedbackRecipient {
        if let Some(return_path) = &self.return_path
            && let Some(read) = return_path.read_address(address, now)
        {
            return match read {
                Ok(_) => self.accepted(),
                Err(bad) => FeedbackRecipient::Refused(bad),
            };
        }
        let is_loop_address = self.address.as_deref().is_some_and(|own| {
            match (own.rsplit_once('@'), address.rsplit_once('@')) {
                (Some((own_local, own_domain)), Some((local, domain))) => {
                    own_local == local && own_domain.eq_ignore_ascii_case(domain)
                }
                _ => false,
            }
        });
        if is_loop_address {
            self.accepted()
        } else {
            FeedbackRecipient::Relay
        }
    }

    fn accepted(&self) -> FeedbackRecipient {
        match self.inbox.is_full() {
            true => FeedbackRecipient::Busy,
            false => FeedbackRecipient::Accepted,
        }
    }

    /// Stores a report durably (fsync) and hands it to the processor.
    pub async fn store(&self, envelope: InboxEnvelope, content: Vec<u8>) -> std::io::Result<()> {
        let inbox = self.inbox.clone();
        let path = tokio::task::spawn_blocking(move || inbox.store(&envelope, &content))
            .await
            .map_err(std::io::Error::other)??;
        // The processor also finds it in the folder after a restart.
        let _ = self.stored.send(path);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_inbox_makes_the_feedback_address_busy_until_reports_are_processed() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(dir.path()).unwrap().with_max_waiting(2);
        let (stored, _receiver) = mpsc::unbounded_channel();
        let intake =
            FeedbackIntake::new(None, Some("fbl@example.test".into()), inbox.clone(), stored);
        let report = |n: usize| InboxEnvelope {
            id: format!("0006421c8f3e1a2b-00000{n}"),
            sender: String::new(),
            recipients: vec!["fbl@example.test".into()],
            client_ip: [192, 0, 2, 1].into(),
            helo: "mx.test".into(),
            received_at: 7,
        };
        assert_eq!(
            intake.classify("fbl@EXAMPLE.test", 0),
            FeedbackRecipient::Accepted
        );
        for n in 0..2 {
            intake
                .store(report(n), b"Subject: x\r\n\r\nx\r\n".to_vec())
                .await
                .unwrap();
        }
        assert_eq!(
            intake.classify("fbl@example.test", 0),
            FeedbackRecipient::Busy
        );
        assert_eq!(
            intake.classify("app@example.test", 0),
            FeedbackRecipient::Relay
        );
        inbox.processed();
        assert_eq!(
            intake.classify("fbl@example.test", 0),
            FeedbackRecipient::Accepted
        );
        // A restart counts what it finds in the folder.
        let reopened = Inbox::open(dir.path()).unwrap().with_max_waiting(2);
        assert_eq!(reopened.waiting().unwrap().len(), 2);
        assert!(reopened.is_full());
    }
}
