//! Starting the feedback loop with the relay: the ledger (always: the suppression list works
//! without a bounce domain), the return path and sent records (with `[bounce]` or
//! `[feedback] address`), and the inbox processor.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::inbox::Inbox;
use super::intake::FeedbackIntake;
use super::processor::Processor;
use crate::config::Config;
use crate::config::feedback::ledger_path;
use crate::events::EventLog;
use crate::ledger::Ledger;
use crate::ledger::sent::SentRecorder;
use crate::queue::QueueHandle;
use crate::registry::Registry;
use crate::return_path::ReturnPath;
use crate::spool::Spool;

pub struct FeedbackParts {
    pub ledger: Ledger,
    pub return_path: Option<Arc<ReturnPath>>,
    /// Present when some address receives feedback.
    pub intake: Option<Arc<FeedbackIntake>>,
    pub sent: Option<SentRecorder>,
    inbox: Option<(Inbox, mpsc::UnboundedReceiver<PathBuf>)>,
}

impl FeedbackParts {
    /// Opens the ledger and, with feedback configured, the return path and inbox. Refuses
    /// start-up with a clear error when one of them cannot be opened.
    pub async fn open(config: &Config, spool_root: &Path) -> anyhow::Result<Self> {
        let path = ledger_path(spool_root);
        let opening = path.clone();
        let ledger = tokio::task::spawn_blocking(move || Ledger::open(&opening))
            .await?
            .with_context(|| format!("cannot open the ledger {}", path.display()))?;
        let return_path = match &config.bounce {
            Some(bounce) => Some(Arc::new(
                ReturnPath::load(
                    &bounce.domain,
                    &bounce.secret_file,
                    bounce.token_lifetime.as_secs(),
                )
                .with_context(|| {
                    format!(
                        "cannot load the bounce secret {}",
                        bounce.secret_file.display()
                    )
                })?,
            )),
            None => None,
        };
        if return_path.is_none() && config.feedback.address.is_none() {
            return Ok(Self {
                ledger,
                return_path,
                intake: None,
                sent: None,
                inbox: None,
            });
        }
        let lifetime = config
            .bounce
            .as_ref()
            .map_or(std::time::Duration::from_secs(30 * 86_400), |b| {
                b.token_lifetime
            });
        let sent = SentRecorder::start(ledger.clone(), lifetime)
            .context("cannot start the sent recorder")?;
        let inbox = Inbox::open(spool_root).context("cannot create the feedback inbox")?;
        let (stored, receiver) = mpsc::unbounded_channel();
        let intake = FeedbackIntake::new(
            return_path.clone(),
            config.feedback.address.clone(),
            inbox.clone(),
            stored,
        );
        Ok(Self {
            ledger,
            return_path,
            intake: Some(Arc::new(intake)),
            sent: Some(sent),
            inbox: Some((inbox, receiver)),
        })
    }

    /// Starts the processor (when feedback is configured); returns the ledger.
    pub fn spawn(
        self,
        tasks: &TaskTracker,
        config: &Config,
        (registry, events, spool, queue): (
            &Arc<ArcSwap<Registry>>,
            &Arc<EventLog>,
            &Spool,
            &QueueHandle,
        ),
        shutdown: &CancellationToken,
    ) -> Ledger {
        let Some((inbox, receiver)) = self.inbox else {
            return self.ledger;
        };
        let processor = Processor {
            inbox,
            return_path: self.return_path,
            ledger: self.ledger.clone(),
            sent: self.sent.clone(),
            registry: registry.clone(),
            events: events.clone(),
            spool: spool.clone(),
            queue: queue.clone(),
            forward: config.feedback.forward,
            hostname: config.smtp.hostname.clone(),
            max_age: config.queue.max_age,
            keep_unmatched: config.feedback.keep_unmatched,
            max_unmatched: config.feedback.max_unmatched,
            set_aside_since_prune: Default::default(),
        };
        tasks.spawn(processor.run(receiver, shutdown.clone()));
        self.ledger
    }
}
