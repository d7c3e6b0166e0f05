//! A message's bytes kept in memory from acceptance to its first delivery attempt, so the common
//! path (accepted, delivered at once) reads nothing back from disk. The same buffer is what the
//! log writer appends: nothing is copied. What is held counts against a process-wide budget;
//! past it a message is read from its segment like any retry.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of content the whole process keeps in memory for first attempts.
const BUDGET: usize = 64 * 1024 * 1024;
static HELD: AtomicUsize = AtomicUsize::new(0);

/// A message record's payload: the content (`size` bytes) followed by its envelope and footer.
#[derive(PartialEq, Eq)]
pub struct HeldContent {
    payload: Vec<u8>,
    size: usize,
    counted: usize,
}

impl HeldContent {
    /// Wraps a payload whose first `size` bytes are the content; it counts against the budget
    /// only if there is room (see [`HeldContent::within_budget`]).
    pub fn new(payload: Vec<u8>, size: usize) -> Self {
        let want = payload.capacity();
        let counted = HELD
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held + want <= BUDGET).then_some(held + want)
            })
            .map_or(0, |_| want);
        Self {
            payload,
            size,
            counted,
        }
    }

    /// Whether this may be kept for the first attempt.
    pub fn within_budget(&self) -> bool {
        self.counted > 0
    }

    /// The whole payload, as written to the segment.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The message content.
    pub fn content(&self) -> &[u8] {
        &self.payload[..self.size.min(self.payload.len())]
    }
}

impl std::fmt::Debug for HeldContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeldContent({} bytes)", self.size)
    }
}

impl Drop for HeldContent {
    fn drop(&mut self) {
        HELD.fetch_sub(self.counted, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_the_first_size_bytes_and_the_budget_is_given_back() {
        let held = HeldContent::new(b"contentFOOTER".to_vec(), 7);
        assert_eq!(held.content(), b"content");
        assert_eq!(held.payload(), b"contentFOOTER");
        assert!(held.within_budget());
        let too_big = HeldContent::new(Vec::with_capacity(BUDGET + 1), 0);
        assert!(!too_big.within_budget(), "over the budget: read from disk");
    }
}
