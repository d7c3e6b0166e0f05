//! `site_max_message_rate` across the fleet: one GCRA slot per message in Redis, taken with one
//! script call (one round trip), so every node's sends to a site together keep the rate.
//!
//! The script keeps, per site, the theoretical arrival time (TAT) of the next allowed message in
//! microseconds of Redis's own clock (so nodes' clocks do not matter). A message may go when the
//! TAT is not in the future; the TAT then moves one interval (period ÷ count) on. Messages are
//! spaced evenly; only at rates above 100/s may they bunch, by up to 10 ms worth of the rate (so
//! nodes sending at once are not sent back to wait a microsecond each).

use std::time::Duration;

use super::store::{FleetStore, StoreError};
use crate::settings::shaping::Rate;

const GCRA_SCRIPT: &str = r#"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat - tolerance > now then return tat - tolerance - now end
if tat < now then tat = now end
redis.call('SET', KEYS[1], string.format('%.0f', tat + interval), 'PX', math.floor((tat + interval - now) / 1000) + 1000)
return 0
"#;

/// The spacing between two messages at `rate`.
pub fn interval(rate: Rate) -> Duration {
    rate.per / rate.count.max(1)
}

/// How far ahead of its slot a message may go: none at rates up to 100/s, 10 ms worth above.
pub fn tolerance(rate: Rate) -> Duration {
    Duration::from_millis(10).saturating_sub(interval(rate))
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
        .arg(tolerance(rate).as_micros() as u64)
        .invoke_async(&mut connection)
        .await?;
    Ok((wait_micros > 0).then(|| Duration::from_micros(wait_micros as u64)))
}

/// The account's sending quota across the fleet: per-minute recipient counts for the rolling 24
/// hours (with their running total) and a token bucket holding one second of `max_send_rate`,
/// both in one script. Returns 0 (counted), 1 (over the rate) or 2 (over the 24-hour quota).
const QUOTA_SCRIPT: &str = r#"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local minute = math.floor(now / 60)
local rate, day, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local counts = KEYS[1]
local total = tonumber(redis.call('HGET', counts, 'total') or '0')
local first = tonumber(redis.call('HGET', counts, 'first') or tostring(minute))
local keep_from = minute - 1439
if first < keep_from then
  if keep_from - first > 1440 then
    redis.call('DEL', counts)
    total = 0
  else
    for m = first, keep_from - 1 do
      local c = redis.call('HGET', counts, tostring(m))
      if c then
        total = total - tonumber(c)
        redis.call('HDEL', counts, tostring(m))
      end
    end
  end
  first = keep_from
end
if day > 0 and total + n > day then return 2 end
if rate > 0 then
  local tokens = tonumber(redis.call('HGET', KEYS[2], 'tokens') or tostring(rate))
  local last = tonumber(redis.call('HGET', KEYS[2], 'at') or tostring(now))
  tokens = math.min(math.min(tokens, rate) + (now - last) * rate, rate)
  if tokens < 1 then
    redis.call('HSET', KEYS[2], 'tokens', tostring(tokens), 'at', tostring(now))
    return 1
  end
  redis.call('HSET', KEYS[2], 'tokens', tostring(tokens - n), 'at', tostring(now))
end
redis.call('HINCRBY', counts, tostring(minute), n)
redis.call('HSET', counts, 'total', total + n, 'first', first)
return 0
"#;

/// What the fleet's quota said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaAnswer {
    Counted,
    OverRate,
    OverDaily,
}

/// Counts `recipients` against the fleet's quota (one round trip).
pub async fn admit_quota(
    store: &FleetStore,
    max_send_rate: u64,
    max_24_hour_send: u64,
    recipients: u64,
) -> Result<QuotaAnswer, StoreError> {
    let mut connection = store.connection();
    let answer: i64 = redis::Script::new(QUOTA_SCRIPT)
        .key("poolrelay:quota:minutes")
        .key("poolrelay:quota:rate")
        .arg(max_send_rate)
        .arg(max_24_hour_send)
        .arg(recipients)
        .invoke_async(&mut connection)
        .await?;
    Ok(match answer {
        0 => QuotaAnswer::Counted,
        1 => QuotaAnswer::OverRate,
        _ => QuotaAnswer::OverDaily,
    })
}

/// SES's `SentLast24Hours` for the whole fleet (as of the last message counted).
pub async fn sent_last_24_hours(store: &FleetStore) -> Result<u64, StoreError> {
    let mut connection = store.connection();
    let total: Option<u64> =
        redis::AsyncCommands::hget(&mut connection, "poolrelay:quota:minutes", "total").await?;
    Ok(total.unwrap_or(0))
}

/// Raises the fleet's warm-up counts for `day` to `counts` where they are lower (atomic: each
/// field only grows), and returns the fleet's counts for `ips` afterwards.
const WARMUP_SCRIPT: &str = r#"
for i = 1, #ARGV, 2 do
  local current = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if tonumber(ARGV[i + 1]) > current then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
redis.call('EXPIRE', KEYS[1], 172800)
local out = {}
for i = 1, #ARGV, 2 do
  out[#out + 1] = redis.call('HGET', KEYS[1], ARGV[i]) or '0'
end
return out
"#;

/// Shares today's warm-up counts of this node's IPs (`counts`, every IP listed, 0 for none yet)
/// and returns the fleet's count of each, in the same order.
pub async fn share_warmup_counts(
    store: &FleetStore,
    day: chrono::NaiveDate,
    counts: &[(std::net::IpAddr, u64)],
) -> Result<Vec<(std::net::IpAddr, u64)>, StoreError> {
    if counts.is_empty() {
        return Ok(Vec::new());
    }
    let script = redis::Script::new(WARMUP_SCRIPT);
    let mut script = script.key(format!("poolrelay:warmup:{day}"));
    for (ip, n) in counts {
        script.arg(ip.to_string()).arg(*n);
    }
    let mut connection = store.connection();
    let fleet: Vec<String> = script.invoke_async(&mut connection).await?;
    Ok(counts
        .iter()
        .zip(fleet)
        .map(|(&(ip, _), n)| (ip, n.parse().unwrap_or(0)))
        .collect())
}
