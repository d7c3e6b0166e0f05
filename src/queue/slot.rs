//! A delivery's place among the scheduler's concurrent deliveries.

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use crate::outbound::shaping::ReleasableSlot;

/// One of `queue.max_concurrent_deliveries` places, held by a running attempt. An attempt that
/// has to wait for a shaping limit gives it back (so deliveries for other sites and pools keep
/// going), and gives up waiting when `stop` is cancelled (shutdown, delete or hold).
#[derive(Debug)]
pub struct DeliverySlot {
    permit: Option<OwnedSemaphorePermit>,
    stop: CancellationToken,
}

impl DeliverySlot {
    pub fn new(permit: OwnedSemaphorePermit, stop: CancellationToken) -> Self {
        Self {
            permit: Some(permit),
            stop,
        }
    }
}

impl ReleasableSlot for DeliverySlot {
    fn release(&mut self) {
        self.permit = None;
    }

    fn stop(&self) -> &CancellationToken {
        &self.stop
    }
}
