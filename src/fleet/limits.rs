//! `site_max_message_rate` across the fleet: one GCRA slot per message in Redis, taken with one
//! script call (one round trip), so every node's sends to a site together keep the rate.
//!
//! The script keeps, per site, the theoretical arrival time (TAT) of the next allowed message in
//! microseconds of Redis's own clock (so nodes' clocks do not matter). A message may go when the
//! TAT is not in the future; the TAT then moves one interval (period ÷ count) on. Messages are
//! spaced evenly: no burst above one.

use std::time::Duration;

use super::store::{FleetStore, StoreError};
use crate::settings::shaping::Rate;

const GCRA_SCRIPT: &str = r#"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat > now then return tat - now end
redis.call('SET', KEYS[1], string.format('%.0f', now + interval), 'PX', math.floor(interval / 1000) + 1000)
return 0
"#;

/// The spacing between two messages at `rate`.
pub fn interval(rate: Rate) -> Duration {
    rate.per / rate.count.max(1)
}

/// Takes the site's next slot: `Ok(None)` when the message may go now, `Ok(Some(wait))` when
/// the next slot is `wait` away (nothing taken: ask again then).
pub async fn take_site_slot(
    store: &FleetStore,
    site: &str,
    rate: Rate,
) -> Result<Option<Duration>, StoreError> {
    let mut connection = store.connection();
    let wait_micros: i64 = redis::Script::new(GCRA_SCRIPT)
        .key(format!("poolrelay:site-rate:{site}"))
        .arg(interval(rate).as_micros() as u64)
        .invoke_async(&mut connection)
        .await?;
    Ok((wait_micros > 0).then(|| Duration::from_micros(wait_micros as u64)))
}
