//! Turning stored reports into what SES makes of them: a Bounce or Complaint event carrying the
//! original `mail` object, an entry on the suppression list (hard bounces and complaints, as the
//! message's reasons say), and the report forwarded to the original sender through the
//! original pool. One report at a time, parsing and disk work on blocking threads: a hostile
//! report costs one thread some time and never stalls a session.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::forward::forward;
use super::inbox::{Inbox, InboxEnvelope};
use super::matching::{self, Matched, Unmatched};
use super::report::{self, BounceReport, ComplaintReport, DsnRecipient, Report};
use crate::events::bounce_type::BounceKind;
use crate::events::{BounceDetails, ComplaintDetails, EventLog, RecipientOutcome};
use crate::ledger::Ledger;
use crate::ledger::suppression::Suppressed;
use crate::metrics::{METRICS, ReasonLabels};
use crate::queue::QueueHandle;
use crate::registry::Registry;
use crate::return_path::ReturnPath;
use crate::settings::suppression::SuppressionReason;
use crate::spool::{Envelope, Recipient, RecipientState, Spool, unix_now};

pub struct Processor {
    pub inbox: Inbox,
    pub return_path: Option<Arc<ReturnPath>>,
    pub ledger: Ledger,
    /// Flushed before a report is given up as naming an unknown message.
    pub sent: Option<crate::ledger::sent::SentRecorder>,
    pub registry: Arc<ArcSwap<Registry>>,
    pub events: Arc<EventLog>,
    pub spool: Spool,
    pub queue: QueueHandle,
    /// `[feedback] forward`.
    pub forward: bool,
    pub hostname: String,
    pub max_age: std::time::Duration,
    /// `[feedback] keep_unmatched` and `max_unmatched`.
    pub keep_unmatched: std::time::Duration,
    pub max_unmatched: usize,
    /// Reports set aside since the last pruning: one every `max_unmatched / 10` keeps the
    /// folder within 110% of its limit without listing it for each report.
    pub set_aside_since_prune: std::sync::atomic::AtomicUsize,
}

/// How often unmatched reports past `keep_unmatched` are looked for, besides after each one.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// What a matched report led to, for the log.
struct Applied {
    kind: &'static str,
    suppressed: usize,
}

impl Processor {
    /// Processes what waits in the inbox, then each report as it is stored, until shutdown.
    pub async fn run(
        self,
        mut stored: mpsc::UnboundedReceiver<PathBuf>,
        shutdown: CancellationToken,
    ) {
        let inbox = self.inbox.clone();
        let waiting = tokio::task::spawn_blocking(move || inbox.waiting())
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match waiting {
            Ok(paths) => {
                for path in paths {
                    self.process(&path).await;
                }
            }
            Err(error) => tracing::error!(%error, "cannot list the feedback inbox"),
        }
        // The first tick is at once: what piled up while the relay was down goes first.
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        loop {
            let path = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = prune.tick() => {
                    self.prune_unmatched().await;
                    continue;
                }
                path = stored.recv() => match path {
                    Some(path) => path,
                    None => return,
                },
            };
            self.process(&path).await;
        }
    }

    /// Deletes unmatched reports beyond `keep_unmatched` and `max_unmatched`.
    async fn prune_unmatched(&self) {
        self.set_aside_since_prune.store(0, Ordering::Relaxed);
        let inbox = self.inbox.clone();
        let (keep, max) = (self.keep_unmatched, self.max_unmatched);
        let now = std::time::SystemTime::now();
        match tokio::task::spawn_blocking(move || inbox.prune_unmatched(keep, max, now)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(deleted)) => tracing::info!(deleted, "old unmatched feedback reports deleted"),
            Ok(Err(error)) => tracing::warn!(%error, "cannot prune spool/feedback-unmatched"),
            Err(error) => tracing::warn!(%error, "cannot prune spool/feedback-unmatched"),
        }
    }

    /// Processes one report; the inbox counts it as waiting until then.
    async fn process(&self, path: &Path) {
        self.process_one(path).await;
        self.inbox.processed();
    }

    async fn process_one(&self, path: &Path) {
        let owned = path.to_path_buf();
        let read = tokio::task::spawn_blocking(move || Inbox::read(&owned)).await;
        let (envelope, content) = match read {
            Ok(Ok(read)) => read,
            // Already processed (listed at start and announced too).
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::NotFound => return,
            _ => return self.set_aside(path, "-", Unmatched::Unreadable).await,
        };
        let content = Arc::new(content);
        let parsing = content.clone();
        let parsed = tokio::task::spawn_blocking(move || report::parse(&parsing)).await;
        let Ok(report) = parsed else {
            return self
                .set_aside(path, &envelope.id, Unmatched::Unreadable)
                .await;
        };
        let tokens = match &self.return_path {
            Some(rp) => matching::tokens(rp, &envelope.recipients, &report, &content, unix_now()),
            None => matching::Tokens::default(),
        };
        let mut found = self.find(&report, &tokens).await;
        if let (Ok(Err(Unmatched::UnknownMessage)), Some(sent)) = (&found, &self.sent) {
            // The record of a delivery moments ago may still be on its way to the ledger.
            sent.flush().await;
            found = self.find(&report, &tokens).await;
        }
        let matched = match found {
            Ok(Ok(matched)) => matched,
            Ok(Err(unmatched)) => return self.set_aside(path, &envelope.id, unmatched).await,
            Err(error) => {
                tracing::error!(id = %envelope.id, %error, "cannot read the ledger; the report stays in the inbox");
                return;
            }
        };
        let applied = match &report {
            Report::Bounce(bounce) => self.bounce(&envelope, bounce, &matched).await,
            Report::Complaint(complaint) => self.complaint(&envelope, complaint, &matched).await,
            Report::Unreadable => None,
        };
        let Some(applied) = applied else {
            return self
                .set_aside(path, &envelope.id, Unmatched::NotABounce)
                .await;
        };
        METRICS
            .feedback
            .get_or_create(&ReasonLabels {
                reason: applied.kind.into(),
            })
            .inc();
        tracing::info!(
            id = %envelope.id,
            message = %matched.record.message_id,
            kind = applied.kind,
            recipients = matched.recipients.len(),
            suppressed = applied.suppressed,
            "feedback report processed"
        );
        if self.forward {
            self.forward_report(&matched, &content).await;
        }
        let inbox = self.inbox.clone();
        let path = path.to_path_buf();
        if let Ok(Err(error)) = tokio::task::spawn_blocking(move || inbox.done(&path)).await {
            tracing::warn!(%error, "cannot delete a processed feedback report");
        }
    }

    /// The message and recipients `report` is about; `Err` when the ledger cannot be read.
    async fn find(
        &self,
        report: &Report,
        tokens: &matching::Tokens,
    ) -> Result<Result<Matched, Unmatched>, String> {
        let (ledger, report, tokens) = (self.ledger.clone(), report.clone(), tokens.clone());
        match tokio::task::spawn_blocking(move || matching::find(&ledger, &report, &tokens)).await {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Ok(Err(Unmatched::Unreadable)),
        }
    }

    async fn set_aside(&self, path: &Path, id: &str, why: Unmatched) {
        METRICS
            .feedback_unmatched
            .get_or_create(&ReasonLabels {
                reason: why.as_label().into(),
            })
            .inc();
        let inbox = self.inbox.clone();
        let owned = path.to_path_buf();
        match tokio::task::spawn_blocking(move || inbox.set_aside(&owned)).await {
            Ok(Ok(kept)) => {
                tracing::warn!(id, reason = why.as_label(), kept = %kept.display(), "feedback report not matched; kept");
                let every = (self.max_unmatched / 10).max(1);
                let since = self.set_aside_since_prune.fetch_add(1, Ordering::Relaxed) + 1;
                if since >= every {
                    self.prune_unmatched().await;
                }
            }
            _ => {
                tracing::error!(id, path = %path.display(), "cannot move an unmatched feedback report aside")
            }
        }
    }

    async fn bounce(
        &self,
        inbox: &InboxEnvelope,
        bounce: &BounceReport,
        matched: &Matched,
    ) -> Option<Applied> {
        let envelope = envelope_of(matched);
        let mut suppress = Vec::new();
        let mut any = false;
        for &index in &matched.recipients {
            let recipient = &matched.record.recipients[index];
            let block = block_for(bounce, &recipient.address);
            let Some(kind) =
                BounceKind::from_status(block.action.as_deref(), block.status.as_deref())
            else {
                continue;
            };
            any = true;
            let outcome = RecipientOutcome {
                address: recipient.address.clone(),
                diagnostic: block.diagnostic.clone().unwrap_or_default(),
                status: block.status.clone().unwrap_or_default(),
                remote_mta: None,
                outgoing_ip: recipient.outgoing_ip,
                tls_version: None,
            };
            let action = block.action.as_deref().unwrap_or("failed");
            let details = BounceDetails {
                kind,
                action,
                feedback_id: Some(&inbox.id),
                reporting_mta: Some(bounce.reporting_mta.as_deref().unwrap_or(&inbox.helo)),
            };
            self.events
                .bounce_with(&envelope, &details, std::slice::from_ref(&outcome));
            if kind.is_permanent() {
                suppress.push(recipient.address.clone());
            }
        }
        if !any {
            return None;
        }
        let suppressed = self
            .suppress(matched, &inbox.id, suppress, SuppressionReason::Bounce)
            .await;
        Some(Applied {
            kind: "bounce",
            suppressed,
        })
    }

    async fn complaint(
        &self,
        inbox: &InboxEnvelope,
        complaint: &ComplaintReport,
        matched: &Matched,
    ) -> Option<Applied> {
        let envelope = envelope_of(matched);
        let addresses: Vec<String> = matched
            .recipients
            .iter()
            .map(|&i| matched.record.recipients[i].address.clone())
            .collect();
        let outgoing_ip = matched
            .recipients
            .first()
            .and_then(|&i| matched.record.recipients[i].outgoing_ip);
        let details = ComplaintDetails {
            feedback_id: &inbox.id,
            feedback_type: &complaint.feedback_type,
            user_agent: complaint.user_agent.as_deref(),
            arrival_date: complaint.arrival_date.as_deref(),
        };
        self.events
            .complaint(&envelope, outgoing_ip, &details, &addresses);
        let suppressed = self
            .suppress(matched, &inbox.id, addresses, SuppressionReason::Complaint)
            .await;
        Some(Applied {
            kind: "complaint",
            suppressed,
        })
    }

    /// Puts `addresses` on the suppression list if the message's reasons include `reason`.
    async fn suppress(
        &self,
        matched: &Matched,
        feedback_id: &str,
        addresses: Vec<String>,
        reason: SuppressionReason,
    ) -> usize {
        let reasons = self
            .registry
            .load()
            .suppressed_reasons_for(matched.record.configuration_set.as_deref());
        if addresses.is_empty() || !reasons.contains(reason) {
            return 0;
        }
        let entries: Vec<Suppressed> = addresses
            .into_iter()
            .map(|address| Suppressed {
                address,
                reason,
                last_update: unix_now(),
                message_id: Some(matched.record.message_id.clone()),
                feedback_id: Some(feedback_id.to_string()),
            })
            .collect();
        let count = entries.len();
        let ledger = self.ledger.clone();
        match tokio::task::spawn_blocking(move || ledger.suppress_all(&entries)).await {
            Ok(Ok(_)) => count,
            _ => {
                tracing::error!(feedback_id, "cannot add to the suppression list");
                0
            }
        }
    }

    async fn forward_report(&self, matched: &Matched, content: &[u8]) {
        let sender = &matched.record.sender;
        let own = sender.rsplit_once('@').is_some_and(|(_, d)| {
            self.return_path
                .as_ref()
                .is_some_and(|rp| rp.is_bounce_domain(d))
        });
        if sender.is_empty() || own {
            return;
        }
        let settings = (self.hostname.as_str(), self.max_age);
        match forward(&self.spool, settings, &matched.record, content).await {
            Ok(envelope) => self.queue.enqueue(envelope),
            Err(error) => {
                tracing::error!(%error, to = %sender, "cannot spool the forwarded report")
            }
        }
    }
}

/// The DSN block about `address`: the one naming it, else the only one, else the first.
fn block_for<'a>(bounce: &'a BounceReport, address: &str) -> std::borrow::Cow<'a, DsnRecipient> {
    let named = bounce.recipients.iter().find(|r| {
        r.final_recipient
            .as_deref()
            .is_some_and(|f| f.eq_ignore_ascii_case(address))
    });
    match named.or(bounce.recipients.first()) {
        Some(block) => std::borrow::Cow::Borrowed(block),
        None => std::borrow::Cow::Owned(DsnRecipient::default()),
    }
}

/// The original message as events describe it (its `mail` object).
pub(super) fn envelope_of(matched: &Matched) -> Envelope {
    let record = &matched.record;
    Envelope {
        id: record.message_id.clone(),
        received_at: record.received_at,
        sender: record.sender.clone(),
        recipients: record
            .recipients
            .iter()
            .map(|r| {
                let mut recipient = Recipient::new(r.address.clone());
                recipient.state = RecipientState::Delivered;
                recipient.source_ip = r.outgoing_ip;
                recipient
            })
            .collect(),
        configuration_set: record.configuration_set.clone(),
        pool: record.pool.clone(),
        client_ip: record.client_ip,
        tags: record.tags.clone(),
        ..Envelope::default()
    }
}
