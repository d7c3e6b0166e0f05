//! What was sent: enough of each delivered message for a bounce or complaint that arrives days
//! later to become an SES event (its `mail` object) and to be forwarded to its sender.
//!
//! Deliveries hand records to one recorder thread, which writes them in batches (one durable
//! commit every [`BATCH_WINDOW`] while there are any) and drops records older than the
//! bounce-token lifetime once an hour. A crash can lose the last batch: a report for one of those messages is
//! then kept as unmatched, never lost.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use redb::ReadableDatabase;
use serde::{Deserialize, Serialize};

use super::store::{Ledger, LedgerError, SENT, SENT_BY_HEADER};

const BATCH_WINDOW: Duration = Duration::from_millis(250);
/// Batches are committed without fsync (visible to readers at once) and made durable this
/// often: an fsync every 250 ms beside the spool's on the same disk cost about a tenth of the
/// relay's throughput. A crash loses at most this much of the record (those reports are kept
/// as unmatched), never mail.
const DURABLE_EVERY: Duration = Duration::from_secs(5);
const MAX_BATCH: usize = 4096;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Longest `Message-ID` value indexed.
const MAX_HEADER_ID: usize = 998;

/// One recipient of a sent message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentRecipient {
    pub address: String,
    /// The address it left from (none: not delivered, or the host's default address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outgoing_ip: Option<IpAddr>,
}

/// A delivered message, as a later report needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentRecord {
    pub message_id: String,
    pub received_at: u64,
    /// The original reverse path (empty for `<>`).
    pub sender: String,
    pub recipients: Vec<SentRecipient>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_set: Option<String>,
    pub pool: String,
    pub client_ip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
}

/// What deliveries hand the recorder thread. Records are only pushed (no wake-up per message:
/// on a busy relay one per delivery cost 14% of its throughput); the thread takes them every
/// [`BATCH_WINDOW`], or at once when asked to flush.
#[derive(Default)]
struct Waiting {
    records: Vec<SentRecord>,
    flushes: Vec<tokio::sync::oneshot::Sender<()>>,
}

struct Shared {
    waiting: parking_lot::Mutex<Waiting>,
    flush_asked: parking_lot::Condvar,
}

/// Hands sent records to the recorder thread, which ends when the last handle is dropped.
#[derive(Clone)]
pub struct SentRecorder {
    shared: std::sync::Arc<Shared>,
}

impl SentRecorder {
    /// Starts the recorder thread; records older than `lifetime` are dropped.
    pub fn start(ledger: Ledger, lifetime: Duration) -> std::io::Result<Self> {
        let shared = std::sync::Arc::new(Shared {
            waiting: parking_lot::Mutex::new(Waiting::default()),
            flush_asked: parking_lot::Condvar::new(),
        });
        let weak = std::sync::Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("poolrelay-sent".into())
            .spawn(move || record_loop(&ledger, &weak, lifetime))?;
        Ok(Self { shared })
    }

    pub fn record(&self, record: SentRecord) {
        self.shared.waiting.lock().records.push(record);
    }

    /// Returns once every record handed over so far is committed (a report can arrive within
    /// milliseconds of the delivery it is about).
    pub async fn flush(&self) {
        let (done, committed) = tokio::sync::oneshot::channel();
        self.shared.waiting.lock().flushes.push(done);
        self.shared.flush_asked.notify_one();
        let _ = committed.await;
    }
}

fn record_loop(ledger: &Ledger, shared: &std::sync::Weak<Shared>, lifetime: Duration) {
    let mut last_prune = Instant::now();
    let mut last_durable = Instant::now();
    loop {
        let Some(strong) = shared.upgrade() else {
            // The relay stopped: what is committed becomes durable.
            if let Err(error) = ledger.write_sent(&[], true) {
                tracing::error!(%error, "cannot make the last sent records durable");
            }
            return;
        };
        let taken = {
            let mut waiting = strong.waiting.lock();
            if waiting.flushes.is_empty() {
                strong.flush_asked.wait_for(&mut waiting, BATCH_WINDOW);
            }
            std::mem::take(&mut *waiting)
        };
        // The last handle may go while this thread holds `strong`: the check above ends it then.
        drop(strong);
        let durable = last_durable.elapsed() >= DURABLE_EVERY;
        if durable {
            last_durable = Instant::now();
        }
        for batch in taken.records.chunks(MAX_BATCH) {
            if let Err(error) = ledger.write_sent(batch, durable) {
                tracing::error!(%error, records = batch.len(), "cannot record sent messages; their bounces will be kept as unmatched");
            }
        }
        for done in taken.flushes {
            let _ = done.send(());
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            let cutoff = crate::spool::unix_now().saturating_sub(lifetime.as_secs());
            match ledger.prune_sent(cutoff) {
                Ok(removed) => tracing::info!(
                    removed,
                    "dropped sent records past the bounce token lifetime"
                ),
                Err(error) => tracing::error!(%error, "cannot prune sent records"),
            }
        }
    }
}

impl Ledger {
    /// Writes (replacing) sent records in one commit, fsynced if `durable` (else made durable
    /// by the next durable commit of the database).
    pub fn write_sent(&self, records: &[SentRecord], durable: bool) -> Result<(), LedgerError> {
        let mut write = self.db.begin_write()?;
        if !durable {
            write
                .set_durability(redb::Durability::None)
                .map_err(|error| LedgerError::Invalid(error.to_string()))?;
        }
        {
            let mut sent = write.open_table(SENT)?;
            let mut by_header = write.open_table(SENT_BY_HEADER)?;
            for record in records {
                let json = serde_json::to_vec(record)
                    .map_err(|error| LedgerError::Invalid(error.to_string()))?;
                sent.insert(record.message_id.as_str(), json.as_slice())?;
                if let Some(header) = record
                    .header_message_id
                    .as_deref()
                    .filter(|h| h.len() <= MAX_HEADER_ID)
                {
                    by_header.insert(header, record.message_id.as_str())?;
                }
            }
        }
        write.commit()?;
        Ok(())
    }

    /// The record of spool id `message_id`.
    pub fn sent(&self, message_id: &str) -> Result<Option<SentRecord>, LedgerError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(SENT)?;
        let Some(value) = table.get(message_id)? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(value.value()).ok())
    }

    /// The record of the message whose `Message-ID` header was `header` (angle brackets and
    /// surrounding space as in the header).
    pub fn sent_by_header(&self, header: &str) -> Result<Option<SentRecord>, LedgerError> {
        let id = {
            let read = self.db.begin_read()?;
            let table = read.open_table(SENT_BY_HEADER)?;
            let Some(id) = table.get(header.trim())? else {
                return Ok(None);
            };
            id.value().to_string()
        };
        self.sent(&id)
    }

    /// Drops records of messages accepted before `cutoff` (Unix seconds). Spool ids begin with
    /// their time in hex microseconds, so the old ones are one range of keys.
    pub fn prune_sent(&self, cutoff: u64) -> Result<u64, LedgerError> {
        let first_kept = format!("{:016x}", cutoff.saturating_mul(1_000_000));
        let write = self.db.begin_write()?;
        let mut removed = 0;
        {
            let mut sent = write.open_table(SENT)?;
            sent.retain_in::<&str, _>(..first_kept.as_str(), |_, _| {
                removed += 1;
                false
            })?;
            let mut by_header = write.open_table(SENT_BY_HEADER)?;
            by_header.retain(|_, id| id >= first_kept.as_str())?;
        }
        write.commit()?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, header: &str) -> SentRecord {
        SentRecord {
            message_id: id.into(),
            received_at: 1,
            sender: "app@example.test".into(),
            recipients: vec![SentRecipient {
                address: "a@example.test".into(),
                outgoing_ip: Some([127, 0, 0, 2].into()),
            }],
            configuration_set: Some("marketing".into()),
            pool: "bulk".into(),
            client_ip: [127, 0, 0, 1].into(),
            header_message_id: Some(header.into()),
            tags: Vec::new(),
        }
    }

    #[test]
    fn records_are_found_by_id_and_header_and_pruned_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("l.redb")).unwrap();
        // 1,000 and 3,000 seconds after the epoch.
        let old = format!("{:016x}-000001", 1_000u64 * 1_000_000);
        let new = format!("{:016x}-000002", 3_000u64 * 1_000_000);
        ledger
            .write_sent(
                &[
                    record(&old, "<old@example.test>"),
                    record(&new, "<new@example.test>"),
                ],
                false,
            )
            .unwrap();
        assert_eq!(ledger.sent(&old).unwrap().unwrap().pool, "bulk");
        let by_header = ledger
            .sent_by_header(" <new@example.test> ")
            .unwrap()
            .unwrap();
        assert_eq!(by_header.message_id, new);
        assert_eq!(ledger.prune_sent(2_000).unwrap(), 1);
        assert!(ledger.sent(&old).unwrap().is_none());
        assert!(
            ledger
                .sent_by_header("<old@example.test>")
                .unwrap()
                .is_none()
        );
        assert!(ledger.sent(&new).unwrap().is_some());
    }
}
