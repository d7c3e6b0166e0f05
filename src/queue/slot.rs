//! A delivery's place among the scheduler's concurrent deliveries.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::outbound::shaping::ReleasableSlot;

/// How many deliveries may wait for a shaping limit at once, per place for a running one.
/// Without a bound, every queued message would start and wait (a million after a restart with
/// a full spool), and whichever got the next connection first would go first; with it, the
/// queue's order of arrival holds to within a few times `max_concurrent_deliveries`.
pub const WAITING_PER_RUNNING: usize = 4;

/// One of `queue.max_concurrent_deliveries` places, held by a running attempt. An attempt that
/// has to wait for a shaping limit gives it back for one of the waiting places (so deliveries
/// for other sites and pools keep going) when one is free, and gives up waiting when `stop` is
/// cancelled (shutdown, delete or hold).
#[derive(Debug)]
pub struct DeliverySlot {
    running: Option<OwnedSemaphorePermit>,
    waiting_places: Arc<Semaphore>,
    waiting: Option<OwnedSemaphorePermit>,
    stop: CancellationToken,
}

impl DeliverySlot {
    pub fn new(
        running: OwnedSemaphorePermit,
        waiting_places: Arc<Semaphore>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            running: Some(running),
            waiting_places,
            waiting: None,
            stop,
        }
    }
}

impl ReleasableSlot for DeliverySlot {
    fn release(&mut self) {
        if self.running.is_none() {
            return;
        }
        // Every waiting place taken: keep the running place and wait in it.
        if let Ok(waiting) = self.waiting_places.clone().try_acquire_owned() {
            self.waiting = Some(waiting);
            self.running = None;
        }
    }

    fn stop(&self) -> &CancellationToken {
        &self.stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_given_back_only_for_a_free_waiting_place() {
        let running = Arc::new(Semaphore::new(2));
        let waiting = Arc::new(Semaphore::new(1));
        let take = || running.clone().try_acquire_owned().unwrap();
        let mut first = DeliverySlot::new(take(), waiting.clone(), CancellationToken::new());
        let mut second = DeliverySlot::new(take(), waiting.clone(), CancellationToken::new());
        first.release();
        assert_eq!(
            running.available_permits(),
            1,
            "the first waits in a waiting place"
        );
        second.release();
        assert_eq!(
            running.available_permits(),
            1,
            "no waiting place left: the second keeps its place"
        );
        drop(first);
        assert_eq!(waiting.available_permits(), 1);
    }
}
