//! Message ids: unique, sortable by arrival, safe as file names.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A new id: microseconds since the epoch, then a per-process sequence number, in hex
/// (`0006421c8f3e1a2b-00000c`). Unique across restarts as long as the clock does not go back
/// by more than the time the previous run lasted; the sequence keeps ids made in the same
/// microsecond apart.
pub fn new_message_id() -> String {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed) & 0xff_ffff;
    format!("{micros:016x}-{sequence:06x}")
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_unique_and_ordered() {
        let ids: Vec<String> = (0..1000).map(|_| super::new_message_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len());
        assert!(
            ids.iter()
                .all(|id| id.len() == 23 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
        );
    }
}
