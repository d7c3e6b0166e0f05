//! The account-level suppression list: who is on it, why, since when, and pages of it.
//!
//! Addresses are compared as SES compares them: the domain case-insensitively, the local part
//! exactly. Each write commits durably (fsync) before it returns.

use std::sync::atomic::Ordering;

use base64::Engine;
use redb::{ReadableDatabase, ReadableTableMetadata};

use super::store::{Change, Ledger, LedgerError, SUPPRESSED};
use crate::settings::suppression::{SuppressedReasons, SuppressionReason};

/// One address on the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    pub address: String,
    pub reason: SuppressionReason,
    /// Unix seconds.
    pub last_update: u64,
    /// The message whose bounce or complaint put it there, if one did.
    pub message_id: Option<String>,
    pub feedback_id: Option<String>,
}

/// What to list and where to start.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Empty: every reason.
    pub reasons: Vec<SuppressionReason>,
    pub start: Option<u64>,
    pub end: Option<u64>,
    pub page_size: usize,
    /// From a previous page's `next_token`.
    pub next_token: Option<String>,
}

pub struct Page {
    pub entries: Vec<Suppressed>,
    pub next_token: Option<String>,
}

const TOKEN_PREFIX: &str = "s1:";
/// Longest address kept (RFC 5321 path limit).
const MAX_ADDRESS: usize = 320;

/// The key an address is stored under: the local part as given, the domain lower-cased.
/// `None` for something that is not an address.
pub fn normalize(address: &str) -> Option<String> {
    let address = address.trim();
    let (local, domain) = address.rsplit_once('@')?;
    // Domains: DNS names (U-labels too) or address literals; nothing else can receive mail.
    let domain_ok = domain
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '[' | ']' | ':'));
    let valid = !local.is_empty()
        && !domain.is_empty()
        && domain_ok
        && address.len() <= MAX_ADDRESS
        && !address.chars().any(|c| c.is_control() || c.is_whitespace());
    valid.then(|| format!("{local}@{}", domain.to_lowercase()))
}

fn encode(entry: &Suppressed) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(12);
    bytes.push(match entry.reason {
        SuppressionReason::Bounce => b'B',
        SuppressionReason::Complaint => b'C',
    });
    bytes.extend_from_slice(&entry.last_update.to_be_bytes());
    for text in [&entry.message_id, &entry.feedback_id] {
        let text = text.as_deref().unwrap_or("");
        let text = &text.as_bytes()[..text.len().min(255)];
        bytes.push(text.len() as u8);
        bytes.extend_from_slice(text);
    }
    bytes
}

fn decode(address: &str, bytes: &[u8]) -> Option<Suppressed> {
    let reason = match bytes.first()? {
        b'B' => SuppressionReason::Bounce,
        b'C' => SuppressionReason::Complaint,
        _ => return None,
    };
    let last_update = u64::from_be_bytes(bytes.get(1..9)?.try_into().ok()?);
    let mut rest = bytes.get(9..)?;
    let mut texts = [None, None];
    for text in &mut texts {
        let (&len, after) = rest.split_first()?;
        let value = after.get(..len as usize)?;
        *text = (!value.is_empty()).then(|| String::from_utf8_lossy(value).into_owned());
        rest = &after[len as usize..];
    }
    let [message_id, feedback_id] = texts;
    Some(Suppressed {
        address: address.to_string(),
        reason,
        last_update,
        message_id,
        feedback_id,
    })
}

impl Ledger {
    /// The entry for `address`, if it is on the list.
    pub fn suppressed(&self, address: &str) -> Result<Option<Suppressed>, LedgerError> {
        if self.suppressed_count() == 0 {
            return Ok(None);
        }
        let Some(key) = normalize(address) else {
            return Ok(None);
        };
        let read = self.db.begin_read()?;
        let table = read.open_table(SUPPRESSED)?;
        Ok(table
            .get(key.as_str())?
            .and_then(|value| decode(&key, value.value())))
    }

    /// Whether mail to `address` is stopped under `reasons` (the set's or the account's).
    pub fn stops(
        &self,
        address: &str,
        reasons: SuppressedReasons,
    ) -> Result<Option<Suppressed>, LedgerError> {
        if reasons.is_empty() {
            return Ok(None);
        }
        Ok(self
            .suppressed(address)?
            .filter(|entry| reasons.contains(entry.reason)))
    }

    /// Adds (or updates) entries in one durable commit. Returns how many were new.
    pub fn suppress_all(&self, entries: &[Suppressed]) -> Result<usize, LedgerError> {
        let mut changes = Vec::with_capacity(entries.len());
        for entry in entries {
            let key = normalize(&entry.address).ok_or_else(|| {
                LedgerError::Invalid(format!("{:?} is not an email address", entry.address))
            })?;
            changes.push(Change::Suppressed {
                key,
                entry: encode(entry),
            });
        }
        let added = self.apply(&changes)?;
        self.tell(changes);
        Ok(added)
    }

    /// Applies changes (this relay's, or another fleet node's) in one durable commit without
    /// telling anyone. Entries that do not decode are skipped. Returns how many were new.
    pub fn apply(&self, changes: &[Change]) -> Result<usize, LedgerError> {
        let write = self.db.begin_write()?;
        let mut added = 0;
        {
            let mut table = write.open_table(SUPPRESSED)?;
            for change in changes {
                match change {
                    Change::Suppressed { key, entry } => {
                        if decode(key, entry).is_none() || normalize(key).as_ref() != Some(key) {
                            continue;
                        }
                        if table.insert(key.as_str(), entry.as_slice())?.is_none() {
                            added += 1;
                        }
                    }
                    Change::Removed { key } => {
                        table.remove(key.as_str())?;
                    }
                }
            }
            self.suppressed.store(table.len()?, Ordering::Relaxed);
        }
        write.commit()?;
        Ok(added)
    }

    fn tell(&self, changes: Vec<Change>) {
        if let Some(sender) = self.changes.get() {
            for change in changes {
                let _ = sender.send(change);
            }
        }
    }

    pub fn suppress(&self, entry: &Suppressed) -> Result<bool, LedgerError> {
        Ok(self.suppress_all(std::slice::from_ref(entry))? == 1)
    }

    /// Takes `address` off the list; false if it was not on it.
    pub fn unsuppress(&self, address: &str) -> Result<bool, LedgerError> {
        let Some(key) = normalize(address) else {
            return Ok(false);
        };
        let write = self.db.begin_write()?;
        let removed = {
            let mut table = write.open_table(SUPPRESSED)?;
            let removed = table.remove(key.as_str())?.is_some();
            self.suppressed.store(table.len()?, Ordering::Relaxed);
            removed
        };
        write.commit()?;
        if removed {
            self.tell(vec![Change::Removed { key }]);
        }
        Ok(removed)
    }

    /// One page of the list in address order.
    pub fn list(&self, query: &ListQuery) -> Result<Page, LedgerError> {
        let after = match &query.next_token {
            None => None,
            Some(token) => Some(read_token(token).ok_or_else(|| {
                LedgerError::Invalid("the NextToken is not one this relay gave".into())
            })?),
        };
        let read = self.db.begin_read()?;
        let table = read.open_table(SUPPRESSED)?;
        let range = match &after {
            Some(after) => table.range::<&str>((
                std::ops::Bound::Excluded(after.as_str()),
                std::ops::Bound::Unbounded,
            ))?,
            None => table.range::<&str>(..)?,
        };
        let page_size = query.page_size.max(1);
        let mut entries = Vec::new();
        let mut next_token = None;
        for item in range {
            let (key, value) = item?;
            let Some(entry) = decode(key.value(), value.value()) else {
                continue;
            };
            let wanted = (query.reasons.is_empty() || query.reasons.contains(&entry.reason))
                && query.start.is_none_or(|start| entry.last_update >= start)
                && query.end.is_none_or(|end| entry.last_update <= end);
            if !wanted {
                continue;
            }
            if entries.len() == page_size {
                next_token = entries
                    .last()
                    .map(|last: &Suppressed| make_token(&last.address));
                break;
            }
            entries.push(entry);
        }
        Ok(Page {
            entries,
            next_token,
        })
    }
}

fn make_token(after: &str) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    engine.encode(format!("{TOKEN_PREFIX}{after}"))
}

fn read_token(token: &str) -> Option<String> {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let text = String::from_utf8(engine.decode(token).ok()?).ok()?;
    let after = text.strip_prefix(TOKEN_PREFIX)?;
    normalize(after).filter(|n| n == after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(address: &str, reason: SuppressionReason, at: u64) -> Suppressed {
        Suppressed {
            address: address.into(),
            reason,
            last_update: at,
            message_id: Some("0006421c8f3e1a2b-00000c".into()),
            feedback_id: None,
        }
    }

    #[test]
    fn addresses_match_on_exact_local_part_and_any_case_domain() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("ledger.redb")).unwrap();
        assert!(ledger.suppressed("a@example.test").unwrap().is_none());
        assert!(
            ledger
                .suppress(&entry("Bob@Example.TEST", SuppressionReason::Bounce, 5))
                .unwrap()
        );
        let found = ledger.suppressed("Bob@example.test").unwrap().unwrap();
        assert_eq!(found.address, "Bob@example.test");
        assert_eq!(found.message_id.as_deref(), Some("0006421c8f3e1a2b-00000c"));
        assert!(ledger.suppressed("bob@example.test").unwrap().is_none());
        let complaints = SuppressedReasons::from_reasons([SuppressionReason::Complaint]);
        assert!(
            ledger
                .stops("Bob@EXAMPLE.test", complaints)
                .unwrap()
                .is_none()
        );
        assert!(
            ledger
                .stops("Bob@EXAMPLE.test", SuppressedReasons::default())
                .unwrap()
                .is_some()
        );
        assert!(ledger.unsuppress("Bob@example.test").unwrap());
        assert!(!ledger.unsuppress("Bob@example.test").unwrap());
        assert_eq!(ledger.suppressed_count(), 0);
        assert!(normalize("no-at-sign").is_none());
        assert!(normalize("a b@example.test").is_none());
        assert!(normalize("a@example.test,BOUNCE").is_none());
    }

    #[test]
    fn pages_cover_every_entry_once_and_filters_apply() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.redb");
        let ledger = Ledger::open(&path).unwrap();
        let entries: Vec<Suppressed> = (0..25)
            .map(|i| {
                let reason = if i % 5 == 0 {
                    SuppressionReason::Complaint
                } else {
                    SuppressionReason::Bounce
                };
                entry(&format!("user{i:02}@example.test"), reason, 100 + i)
            })
            .collect();
        assert_eq!(ledger.suppress_all(&entries).unwrap(), 25);
        drop(ledger);
        let ledger = Ledger::open(&path).unwrap();
        assert_eq!(ledger.suppressed_count(), 25);
        let mut query = ListQuery {
            page_size: 7,
            ..ListQuery::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = ledger.list(&query).unwrap();
            seen.extend(page.entries.into_iter().map(|e| e.address));
            match page.next_token {
                Some(token) => query.next_token = Some(token),
                None => break,
            }
        }
        let expected: Vec<String> = entries.iter().map(|e| e.address.clone()).collect();
        assert_eq!(seen, expected);
        let complaints = ledger
            .list(&ListQuery {
                reasons: vec![SuppressionReason::Complaint],
                start: Some(105),
                end: Some(120),
                page_size: 100,
                next_token: None,
            })
            .unwrap();
        let addresses: Vec<&str> = complaints
            .entries
            .iter()
            .map(|e| e.address.as_str())
            .collect();
        assert_eq!(
            addresses,
            [
                "user05@example.test",
                "user10@example.test",
                "user15@example.test",
                "user20@example.test"
            ]
        );
        let bogus = ListQuery {
            next_token: Some("bm90IGEgdG9rZW4".into()),
            ..query
        };
        assert!(matches!(ledger.list(&bogus), Err(LedgerError::Invalid(_))));
    }
}
