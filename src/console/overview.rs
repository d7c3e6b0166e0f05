//! Overview: the queue (size, oldest message, by state) and the last hour per pool and per IP
//! as charts, inside `#live`, which the page's one script refreshes every 10 seconds.

use std::collections::BTreeMap;

use maud::{Markup, html};

use super::charts::minutes_chart;
use super::pages::layout;
use super::session::Session;
use crate::events::history::{Counts, Minute};
use crate::queue::QueueEntry;

/// Per key, its count in each minute (oldest first).
fn series<K: Ord + Clone>(
    minutes: &[Minute],
    key_of: impl Fn(&Minute) -> Vec<(K, Counts)>,
) -> BTreeMap<K, Vec<Counts>> {
    let mut series: BTreeMap<K, Vec<Counts>> = BTreeMap::new();
    for (index, minute) in minutes.iter().enumerate() {
        for (key, counts) in key_of(minute) {
            series
                .entry(key)
                .or_insert_with(|| vec![Counts::default(); minutes.len()])[index] = counts;
        }
    }
    series
}

fn age(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds / 60),
        _ => format!("{:.1} h", seconds as f64 / 3600.0),
    }
}

pub fn overview(session: &Session, minutes: &[Minute], queue: &[QueueEntry]) -> Markup {
    let pools = series(minutes, |m| {
        m.pools.iter().map(|(k, v)| (k.clone(), *v)).collect()
    });
    let ips = series(minutes, |m| m.ips.iter().map(|(k, v)| (*k, *v)).collect());
    let oldest = queue.iter().map(|e| e.age_seconds).max();
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    for entry in queue {
        *states
            .entry(format!("{:?}", entry.state).to_lowercase())
            .or_default() += 1;
    }
    layout(
        "Overview",
        Some(session),
        html! {
            div id="live" {
                section {
                    h2 { "Queue" }
                    p {
                        strong { (queue.len()) } " messages queued"
                        @if let Some(oldest) = oldest { "; the oldest is " (age(oldest)) " old" }
                        @for (state, count) in &states { " · " (count) " " (state) }
                    }
                }
                section {
                    h2 { "Per pool" }
                    @if pools.is_empty() { p { "Nothing delivered, deferred or bounced in the last hour." } }
                    @for (pool, counts) in &pools { (minutes_chart(pool, counts)) }
                }
                section {
                    h2 { "Per IP" }
                    @for (ip, counts) in &ips { (minutes_chart(&ip.to_string(), counts)) }
                }
            }
            script src="/console/app.js" defer {}
        },
    )
}
