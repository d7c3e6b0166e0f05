//! Opening the ledger database.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{Database, ReadableTableMetadata, TableDefinition};

/// Address (local part as given, domain lower-cased) → encoded entry.
pub(super) const SUPPRESSED: TableDefinition<&str, &[u8]> = TableDefinition::new("suppressed");
/// Spool id → JSON sent record.
pub(super) const SENT: TableDefinition<&str, &[u8]> = TableDefinition::new("sent");
/// `Message-ID` header value → spool id.
pub(super) const SENT_BY_HEADER: TableDefinition<&str, &str> =
    TableDefinition::new("sent_by_header");

/// redb's page cache. Lookups stay in microseconds with the rest in the OS page cache, and the
/// relay's memory stays bounded with ten million entries.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger database: {0}")]
    Database(Box<redb::Error>),
    #[error("{0}")]
    Invalid(String),
}

/// `?` on any of redb's error types.
macro_rules! from_redb {
    ($($error:ty),*) => {$(
        impl From<$error> for LedgerError {
            fn from(error: $error) -> Self {
                Self::Database(Box::new(error.into()))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    std::io::Error
);

/// The ledger. Cheap to clone; every method blocks on disk (call it from blocking threads).
#[derive(Clone)]
pub struct Ledger {
    pub(super) db: Arc<Database>,
    /// Entries on the suppression list: with none, a lookup is not even made.
    pub(super) suppressed: Arc<AtomicU64>,
    /// In a fleet: where this node's own changes to the list are told (to share them).
    pub(super) changes: Arc<std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Change>>>,
}

/// A change to the suppression list, as stored: the normalized address and the encoded entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Suppressed { key: String, entry: Vec<u8> },
    Removed { key: String },
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").finish_non_exhaustive()
    }
}

impl Ledger {
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(LedgerError::from)?;
        }
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)?;
        let write = db.begin_write()?;
        let count = {
            let suppressed = write.open_table(SUPPRESSED)?;
            write.open_table(SENT)?;
            write.open_table(SENT_BY_HEADER)?;
            suppressed.len()?
        };
        write.commit()?;
        Ok(Self {
            db: Arc::new(db),
            suppressed: Arc::new(AtomicU64::new(count)),
            changes: Arc::default(),
        })
    }

    /// From now on, every change this relay makes to the list is sent here (once; later calls
    /// get `None`).
    pub fn watch_changes(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Change>> {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        self.changes.set(sender).ok().map(|()| receiver)
    }

    /// How many addresses are on the suppression list.
    pub fn suppressed_count(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }
}
