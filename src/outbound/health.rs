//! Health of source IPs: which IP must not be used, for which site, and until when.
//!
//! Two kinds of suspension, both skipped by source selection:
//! - **unbindable**: the address is not on the host (bind failed). It applies to every site and
//!   lasts until a periodic re-check can bind the address again.
//! - **(IP, site)**: a receiver refused the IP for reputation reasons (see [`super::classify`]).
//!   It lasts `suspension`, doubling each time the site refuses the IP again before a delivery
//!   from it succeeds, up to `max_suspension`. One success from the pair forgets the history.
//!
//! A third kind, the operator's suspension, is part of the configuration (`[[ip]] suspended`).
//! Site suspensions (with their backoff level) are saved to `spool/health.json`, so a restart
//! neither forgets a blocklisting nor starts its backoff over; unbindable addresses are found
//! again at start-up.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use parking_lot::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use crate::settings::health::HealthSettings;
use crate::settings::health::ReplyRule;
use crate::spool::state_file::StateFile;

/// One (IP, site) suspension, current or remembered for its backoff level.
#[derive(Debug, Clone)]
struct SiteSuspension {
    until: Instant,
    /// 1 for the first suspension, 2 after the next refusal, ...
    level: u32,
    rule: String,
    reply: String,
    since: SystemTime,
}

#[derive(Debug, Clone)]
struct Unbindable {
    since: SystemTime,
    error: String,
}

/// A suspension as reported by the API and metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SiteReport {
    pub site: String,
    pub rule: String,
    pub reply: String,
    /// Unix seconds.
    pub since: u64,
    pub until: u64,
    /// How many times in a row the site refused the IP.
    pub level: u32,
}

/// An IP's health as reported by the API and metrics (and, in a fleet, by the IP's node to the
/// others in its heartbeat).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IpHealth {
    /// Why the address cannot be bound, since when (unix seconds).
    pub unbindable: Option<(String, u64)>,
    /// Sites refusing this IP now.
    pub sites: Vec<SiteReport>,
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// One site suspension as saved in `health.json` (times in unix seconds).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Saved {
    ip: IpAddr,
    site: String,
    until: u64,
    level: u32,
    rule: String,
    reply: String,
    since: u64,
}

/// Suspensions shared by all deliveries.
#[derive(Debug)]
pub struct Health {
    settings: HealthSettings,
    sites: Mutex<HashMap<(IpAddr, String), SiteSuspension>>,
    unbindable: Mutex<HashMap<IpAddr, Unbindable>>,
    /// Where site suspensions are saved.
    file: StateFile,
    /// Addresses back in rotation (bindable again, or resumed by an operator) that the queue has
    /// not yet heard of, and the signal that there are some.
    returned: Mutex<Vec<IpAddr>>,
    pub returned_signal: tokio::sync::Notify,
    /// Reverse DNS of each dedicated IP (PTR, FCrDNS), as last checked.
    pub reverse_dns: super::reverse_dns::ReverseDnsBoard,
}

impl Health {
    pub fn new(settings: HealthSettings) -> Self {
        Self::load(settings, None)
    }

    /// Health with the site suspensions saved in `path` (missing or unreadable: none).
    pub fn load(settings: HealthSettings, path: Option<PathBuf>) -> Self {
        let file = StateFile::new(path);
        let saved: Vec<Saved> = file.load().unwrap_or_default();
        let (now, wall) = (Instant::now(), unix(SystemTime::now()));
        let sites = saved
            .into_iter()
            .map(|s| {
                let remaining = Duration::from_secs(s.until.saturating_sub(wall));
                let suspension = SiteSuspension {
                    until: now + remaining,
                    level: s.level,
                    rule: s.rule,
                    reply: s.reply,
                    since: UNIX_EPOCH + Duration::from_secs(s.since),
                };
                ((s.ip, s.site), suspension)
            })
            .collect();
        Self {
            settings,
            sites: Mutex::new(sites),
            unbindable: Mutex::new(HashMap::new()),
            file,
            returned: Mutex::new(Vec::new()),
            returned_signal: tokio::sync::Notify::new(),
            reverse_dns: Default::default(),
        }
    }

    /// `address` is back in rotation: the queue retries the mail waiting for its pools now.
    pub fn back_in_rotation(&self, address: IpAddr) {
        self.returned.lock().push(address);
        self.returned_signal.notify_one();
    }

    /// The addresses back in rotation since the last call.
    pub fn take_returned(&self) -> Vec<IpAddr> {
        std::mem::take(&mut *self.returned.lock())
    }

    /// Blocking: writes the site suspensions if they changed.
    pub fn save(&self) -> std::io::Result<()> {
        self.file.save(|| {
            let (now, wall) = (Instant::now(), SystemTime::now());
            self.sites()
                .iter()
                .map(|((ip, site), s)| Saved {
                    ip: *ip,
                    site: site.clone(),
                    until: unix(wall + s.until.saturating_duration_since(now)),
                    level: s.level,
                    rule: s.rule.clone(),
                    reply: s.reply.clone(),
                    since: unix(s.since),
                })
                .collect::<Vec<Saved>>()
        })
    }

    fn changed(&self) {
        self.file.changed();
    }

    pub fn settings(&self) -> &HealthSettings {
        &self.settings
    }

    fn sites(&self) -> MutexGuard<'_, HashMap<(IpAddr, String), SiteSuspension>> {
        self.sites.lock()
    }

    fn unbindable(&self) -> MutexGuard<'_, HashMap<IpAddr, Unbindable>> {
        self.unbindable.lock()
    }

    /// The rule `reply` matches if it refuses the source IP rather than the message or the
    /// recipient (see [`super::classify`]). Only a question: [`Health::refused`] suspends.
    pub fn ip_refusal(&self, reply: &super::client::RemoteReply) -> Option<&ReplyRule> {
        super::classify::classify(&self.settings.rules, reply)
    }

    /// True while `address` cannot be bound on this host.
    pub fn is_unbindable(&self, address: IpAddr) -> bool {
        self.unbindable().contains_key(&address)
    }

    /// True while `site` refuses `address`.
    pub fn is_suspended_for_site(&self, address: IpAddr, site: &str, now: Instant) -> bool {
        let sites = self.sites();
        !sites.is_empty()
            && sites
                .get(&(address, site.to_string()))
                .is_some_and(|s| s.until > now)
    }

    /// The site refused `address` for reputation reasons: suspends the pair, longer each time.
    /// Returns how long.
    pub fn refused(
        &self,
        address: IpAddr,
        site: &str,
        rule: &str,
        reply: &str,
        now: Instant,
    ) -> Duration {
        let mut sites = self.sites();
        let key = (address, site.to_string());
        let level = match sites.get(&key) {
            // Still suspended: a refusal on a connection that was already open says nothing new.
            Some(current) if current.until > now => return current.until - now,
            Some(previous) => previous.level + 1,
            None => 1,
        };
        let factor = 1u32.checked_shl(level - 1).unwrap_or(u32::MAX);
        let length = self
            .settings
            .suspension
            .saturating_mul(factor)
            .min(self.settings.max_suspension);
        tracing::warn!(source_ip = %address, site, rule, reply, level, seconds = length.as_secs(), "IP suspended for this site");
        crate::metrics::METRICS
            .site_suspensions
            .get_or_create(&crate::metrics::IpLabels {
                source_ip: address.to_string(),
            })
            .inc();
        sites.insert(
            key,
            SiteSuspension {
                until: now + length,
                level,
                rule: rule.to_string(),
                reply: reply.to_string(),
                since: SystemTime::now(),
            },
        );
        self.changed();
        length
    }

    /// A delivery from `address` to `site` succeeded: the pair's history is forgotten.
    pub fn delivered(&self, address: IpAddr, site: &str) {
        let mut sites = self.sites();
        if sites.is_empty() {
            return;
        }
        if let Some(old) = sites.remove(&(address, site.to_string())) {
            self.changed();
            tracing::info!(source_ip = %address, site, level = old.level, "IP delivers to this site again");
        }
    }

    /// Lifts every site suspension of `address` (an operator's resume).
    pub fn clear_sites(&self, address: IpAddr) {
        self.sites().retain(|(ip, _), _| *ip != address);
        self.changed();
        self.back_in_rotation(address);
    }

    /// Binding `address` failed: it is suspended for every site until a re-check binds it.
    /// Returns true the first time (so the caller logs once).
    pub fn bind_failed(&self, address: IpAddr, error: &str) -> bool {
        let mut unbindable = self.unbindable();
        if unbindable.contains_key(&address) {
            return false;
        }
        unbindable.insert(
            address,
            Unbindable {
                since: SystemTime::now(),
                error: error.to_string(),
            },
        );
        true
    }

    /// Addresses waiting for a re-check.
    pub fn unbindable_addresses(&self) -> Vec<IpAddr> {
        self.unbindable().keys().copied().collect()
    }

    /// `address` can be bound again. Returns true if it was suspended.
    pub fn bind_works(&self, address: IpAddr) -> bool {
        let was = self.unbindable().remove(&address).is_some();
        if was {
            self.back_in_rotation(address);
        }
        was
    }

    /// What is known about `address` now; expired site suspensions are not reported.
    pub fn report(&self, address: IpAddr) -> IpHealth {
        let now = Instant::now();
        let wall = SystemTime::now();
        let unbindable = self
            .unbindable()
            .get(&address)
            .map(|u| (u.error.clone(), unix(u.since)));
        let mut sites: Vec<SiteReport> = self
            .sites()
            .iter()
            .filter(|((ip, _), s)| *ip == address && s.until > now)
            .map(|((_, site), s)| SiteReport {
                site: site.clone(),
                rule: s.rule.clone(),
                reply: s.reply.clone(),
                since: unix(s.since),
                until: unix(wall + (s.until - now)),
                level: s.level,
            })
            .collect();
        sites.sort_by(|a, b| a.site.cmp(&b.site));
        IpHealth { unbindable, sites }
    }

    /// Drops remembered suspensions that ended long ago (their backoff no longer applies).
    pub fn forget_old(&self, now: Instant) {
        let keep = self.settings.max_suspension * 2;
        let mut sites = self.sites();
        let before = sites.len();
        sites.retain(|_, s| now.saturating_duration_since(s.until) < keep);
        if sites.len() != before {
            self.changed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> Health {
        Health::new(HealthSettings {
            suspension: Duration::from_secs(60),
            max_suspension: Duration::from_secs(300),
            ..HealthSettings::default()
        })
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn refusal_suspends_only_that_pair() {
        let health = health();
        let now = Instant::now();
        health.refused(ip(2), "mx.a.test", "blocklist", "554 5.7.1 blocked", now);
        assert!(health.is_suspended_for_site(ip(2), "mx.a.test", now));
        assert!(!health.is_suspended_for_site(ip(2), "mx.b.test", now));
        assert!(!health.is_suspended_for_site(ip(3), "mx.a.test", now));
        assert!(!health.is_suspended_for_site(ip(2), "mx.a.test", now + Duration::from_secs(61)));
    }

    #[test]
    fn backoff_doubles_while_the_site_keeps_refusing_and_is_capped() {
        let health = health();
        let mut now = Instant::now();
        let mut lengths = Vec::new();
        for _ in 0..5 {
            let length = health.refused(ip(2), "site", "r", "421", now);
            lengths.push(length.as_secs());
            now += length; // the next refusal comes right after the suspension ends
        }
        assert_eq!(lengths, [60, 120, 240, 300, 300]);
    }

    #[test]
    fn refusals_during_a_suspension_do_not_extend_it() {
        let health = health();
        let now = Instant::now();
        health.refused(ip(2), "site", "r", "421", now);
        let again = health.refused(ip(2), "site", "r", "421", now + Duration::from_secs(10));
        assert_eq!(again.as_secs(), 50);
    }

    #[test]
    fn a_delivery_resets_the_backoff() {
        let health = health();
        let now = Instant::now();
        let first = health.refused(ip(2), "site", "r", "421", now);
        health.delivered(ip(2), "site");
        assert_eq!(
            health.refused(ip(2), "site", "r", "421", now + first),
            first
        );
    }

    #[test]
    fn unbindable_address_is_suspended_everywhere_until_it_binds() {
        let health = health();
        assert!(health.bind_failed(ip(9), "not on this host"));
        assert!(!health.bind_failed(ip(9), "not on this host"));
        assert!(health.is_unbindable(ip(9)));
        assert_eq!(health.unbindable_addresses(), [ip(9)]);
        assert!(health.report(ip(9)).unbindable.is_some());
        assert!(health.bind_works(ip(9)));
        assert!(!health.is_unbindable(ip(9)));
        assert_eq!(health.take_returned(), [ip(9)], "the queue hears of it");
        assert!(!health.bind_works(ip(9)));
        assert!(health.take_returned().is_empty());
    }

    #[test]
    fn site_suspensions_survive_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("health.json");
        let saved = Health::load(HealthSettings::default(), Some(path.clone()));
        let now = Instant::now();
        saved.refused(ip(2), "mx.a.test", "blocklist", "554 blocked", now);
        saved.refused(
            ip(2),
            "mx.a.test",
            "blocklist",
            "554 blocked",
            now + Duration::from_secs(301),
        );
        saved.bind_failed(ip(9), "not here");
        saved.save().unwrap();
        let loaded = Health::load(HealthSettings::default(), Some(path));
        let report = loaded.report(ip(2));
        assert_eq!(report.sites.len(), 1);
        assert_eq!(report.sites[0].level, 2);
        assert_eq!(report.sites[0].rule, "blocklist");
        assert!(loaded.is_suspended_for_site(ip(2), "mx.a.test", Instant::now()));
        // Unbindable addresses are not saved: they are checked again at start-up.
        assert!(!loaded.is_unbindable(ip(9)));
    }

    #[test]
    fn report_lists_current_site_suspensions() {
        let health = health();
        let now = Instant::now();
        health.refused(ip(2), "b.site", "blocklist", "554 blocked", now);
        health.refused(ip(2), "a.site", "reputation", "421 reputation", now);
        let report = health.report(ip(2));
        let sites: Vec<&str> = report.sites.iter().map(|s| s.site.as_str()).collect();
        assert_eq!(sites, ["a.site", "b.site"]);
        assert_eq!(report.sites[0].rule, "reputation");
        health.clear_sites(ip(2));
        assert!(health.report(ip(2)).sites.is_empty());
    }
}
