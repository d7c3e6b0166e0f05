//! What one delivery attempt did, recipient by recipient, in types.
//!
//! `Outbound::deliver` returns an [`AttemptReport`]; the queue turns it into the message's new
//! state, logs, metrics, events and bounces. A deferral says *why* ([`Deferral`]), so nothing
//! downstream has to read meaning back out of reply text. The reply text an operator sees (and
//! the spool keeps) is made in one place, [`Deferral::reply`] and [`Failure::reply`].

use std::net::IpAddr;

use super::response::RemoteReply;

/// The outcome of one attempt for each recipient it was given.
#[derive(Debug, Default)]
pub struct AttemptReport {
    /// Indexed like the envelope's recipients; `None` for recipients not attempted (already
    /// final, or the relay began shutting down while their delivery waited for a shaping limit).
    outcomes: Vec<Option<RecipientOutcome>>,
    /// The source IP of the last session opened; the next attempt prefers another one.
    pub last_source_ip: Option<IpAddr>,
}

impl AttemptReport {
    pub fn new(recipients: usize) -> Self {
        Self {
            outcomes: (0..recipients).map(|_| None).collect(),
            last_source_ip: None,
        }
    }

    /// Records (or replaces) the outcome for recipient `index`.
    pub fn record(&mut self, index: usize, outcome: RecipientOutcome) {
        if let Some(slot) = self.outcomes.get_mut(index) {
            *slot = Some(outcome);
        }
    }

    /// Every recipient attempted, with its outcome.
    pub fn outcomes(&self) -> impl Iterator<Item = (usize, &RecipientOutcome)> {
        self.outcomes
            .iter()
            .enumerate()
            .filter_map(|(index, outcome)| outcome.as_ref().map(|o| (index, o)))
    }

    /// True if at least one recipient was attempted (the attempt counts).
    pub fn attempted_any(&self) -> bool {
        self.outcomes.iter().any(Option::is_some)
    }
}

/// What happened to one recipient, and where it happened.
#[derive(Debug, Clone)]
pub struct RecipientOutcome {
    pub result: Outcome,
    /// The source IP the session was bound to (`None`: none, or the host's default address).
    pub source_ip: Option<IpAddr>,
    /// The next hop, for logs: `host (address)`, a host name, or the recipient's domain.
    pub next_hop: String,
    /// The address of the server that answered, when one did.
    pub remote_mta: Option<IpAddr>,
    /// The TLS version of the session, when the outcome came from a transaction.
    pub tls_version: Option<String>,
}

impl RecipientOutcome {
    /// An outcome decided before any server answered.
    pub fn local(result: Outcome, source_ip: Option<IpAddr>, next_hop: impl Into<String>) -> Self {
        Self {
            result,
            source_ip,
            next_hop: next_hop.into(),
            remote_mta: None,
            tls_version: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The next hop accepted the recipient.
    Delivered(RemoteReply),
    /// Permanent: the recipient fails now and the sender gets a bounce.
    Failed(Failure),
    /// Temporary: the recipient stays queued and is retried.
    Deferred(Deferral),
}

impl Outcome {
    /// The SMTP-style reply recorded for the recipient.
    pub fn reply(&self) -> String {
        match self {
            Self::Delivered(reply) => reply.to_string(),
            Self::Failed(failure) => failure.reply(),
            Self::Deferred(deferral) => deferral.reply(),
        }
    }
}

/// Why a recipient failed permanently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The next hop refused the recipient with a 5xx reply.
    Remote(RemoteReply),
    /// The domain cannot receive mail (does not exist, null MX, no address).
    NoSuchDomain(String),
    /// The message needs SMTPUTF8 and the next hop does not offer it.
    Smtputf8Unsupported,
    /// Every next hop of the domain is this relay itself.
    LoopsBack { domain: String },
}

impl Failure {
    pub fn reply(&self) -> String {
        match self {
            Self::Remote(reply) => reply.to_string(),
            Self::NoSuchDomain(reason) => format!("550 5.1.2 {reason}"),
            Self::Smtputf8Unsupported => {
                "553 5.6.7 the next hop does not support SMTPUTF8".to_string()
            }
            Self::LoopsBack { domain } => {
                format!("554 5.4.6 mail for {domain} loops back to this relay")
            }
        }
    }
}

/// Why a recipient was deferred.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deferral {
    /// Every IP of the pool (and of its overflow pool) is at its warm-up cap for today.
    WarmupCap { pool: String },
    /// Every usable IP of the pool is suspended for the site after earlier refusals.
    SiteSuspended { pool: String, site: String },
    /// The site refused the pool's usable IPs in this attempt (its reply).
    SiteRefused {
        pool: String,
        site: String,
        reply: String,
    },
    /// The pool's addresses cannot be bound on this host.
    Unbindable { pool: String },
    /// The pool has no IP in rotation (every weight is 0).
    NotInRotation { pool: String },
    /// No IP of the pool could be used for this next hop.
    NoUsableSource { pool: String },
    /// The pool has no address of the family the next hop is reached over: mail never leaves
    /// from another pool or from the host's default address instead.
    NoSourceOfFamily {
        pool: String,
        family: &'static str,
        next_hop: String,
    },
    /// TLS is required, and the next hop does not offer it or the handshake failed.
    TlsRequired { detail: String },
    /// The next hop answered with a temporary failure.
    Remote(RemoteReply),
    /// No session could be had with any next-hop address (connect failed, refused greeting).
    Unreachable { detail: String },
    /// The connection broke during the transaction.
    ConnectionLost { detail: String },
    /// The next hop could not be looked up now.
    Dns { detail: String },
    /// The message's content could not be read from the spool.
    Spool { detail: String },
    /// In a fleet: every IP of the pool is on nodes that are down.
    NodesDown { pool: String, nodes: String },
    /// In a fleet: the node with IPs of the pool could not take the message.
    Handover { detail: String },
}

impl Deferral {
    /// The reply recorded for the recipient (kept in the spool, shown by the queue API and in
    /// bounces, events and logs).
    pub fn reply(&self) -> String {
        match self {
            Self::WarmupCap { pool } => {
                format!("451 4.7.0 every IP of pool {pool} is at its warm-up limit for today")
            }
            Self::SiteSuspended { pool, site } => {
                format!("451 4.7.0 every usable IP of pool {pool} is suspended for {site}")
            }
            Self::SiteRefused { pool, site, reply } => {
                format!("451 4.7.0 {site} refuses the usable IPs of pool {pool}: {reply}")
            }
            Self::Unbindable { pool } => format!(
                "451 4.4.1 no usable dedicated IP in pool {pool}: its addresses cannot be bound on this host"
            ),
            Self::NotInRotation { pool } => {
                format!("451 4.4.1 pool {pool} has no dedicated IP in rotation")
            }
            Self::NoUsableSource { pool } => {
                format!("451 4.4.1 no usable dedicated IP in pool {pool}")
            }
            Self::NoSourceOfFamily {
                pool,
                family,
                next_hop,
            } => format!(
                "451 4.4.1 pool {pool} has no {family} address, and next hop {next_hop} is reached only over {family}"
            ),
            // 4.7.10 is "encryption needed" (RFC 5248): the failure is about TLS, not the host.
            Self::TlsRequired { detail } => format!("451 4.7.10 {detail}"),
            Self::Remote(reply) => reply.to_string(),
            Self::Unreachable { detail } => format!("451 4.4.1 {detail}"),
            Self::ConnectionLost { detail } => format!("451 4.4.2 {detail}"),
            Self::Dns { detail } => format!("451 4.4.3 {detail}"),
            Self::Spool { detail } => format!("451 4.3.0 {detail}"),
            Self::NodesDown { pool, nodes } => format!(
                "451 4.4.1 every IP of pool {pool} is on fleet nodes that are down ({nodes})"
            ),
            Self::Handover { detail } => format!("451 4.4.1 {detail}"),
        }
    }

    /// No IP of the pool can send it from this node now (none here, all capped, suspended or
    /// unbindable): in a fleet, another node's IP may.
    pub fn is_no_source_here(&self) -> bool {
        matches!(
            self,
            Self::WarmupCap { .. }
                | Self::SiteSuspended { .. }
                | Self::Unbindable { .. }
                | Self::NotInRotation { .. }
                | Self::NoUsableSource { .. }
                | Self::NoSourceOfFamily { .. }
        )
    }

    /// The receiver refuses (or already refuses) the pool's IPs: SES's `IPFailure`.
    pub fn is_ip_failure(&self) -> bool {
        matches!(self, Self::SiteSuspended { .. } | Self::SiteRefused { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_carry_the_status_that_fits_the_reason() {
        let pool = || "p".to_string();
        let site = || "mx.a.test".to_string();
        let cases = [
            (Deferral::WarmupCap { pool: pool() }, "451 4.7.0 "),
            (
                Deferral::SiteSuspended {
                    pool: pool(),
                    site: site(),
                },
                "451 4.7.0 ",
            ),
            (Deferral::Unbindable { pool: pool() }, "451 4.4.1 "),
            (
                Deferral::TlsRequired {
                    detail: "no STARTTLS".into(),
                },
                "451 4.7.10 ",
            ),
            (
                Deferral::ConnectionLost {
                    detail: "reset".into(),
                },
                "451 4.4.2 ",
            ),
            (Deferral::Dns { detail: "x".into() }, "451 4.4.3 "),
        ];
        for (deferral, prefix) in cases {
            assert!(deferral.reply().starts_with(prefix), "{deferral:?}");
        }
        let refused = Deferral::SiteRefused {
            pool: pool(),
            site: site(),
            reply: "554 5.7.1 blocked".into(),
        };
        assert!(refused.is_ip_failure());
        assert!(!Deferral::WarmupCap { pool: pool() }.is_ip_failure());
        assert_eq!(
            Failure::NoSuchDomain("no such domain".into()).reply(),
            "550 5.1.2 no such domain"
        );
    }

    #[test]
    fn a_later_outcome_replaces_an_earlier_one_and_unattempted_ones_are_skipped() {
        let mut report = AttemptReport::new(3);
        assert!(!report.attempted_any());
        let deferred = |pool: &str| {
            RecipientOutcome::local(
                Outcome::Deferred(Deferral::NoUsableSource { pool: pool.into() }),
                None,
                "-",
            )
        };
        report.record(2, deferred("first"));
        report.record(2, deferred("second"));
        report.record(7, deferred("out of range"));
        let seen: Vec<(usize, String)> = report
            .outcomes()
            .map(|(index, outcome)| (index, outcome.result.reply()))
            .collect();
        assert_eq!(
            seen,
            vec![(2, "451 4.4.1 no usable dedicated IP in pool second".into())]
        );
        assert!(report.attempted_any());
    }
}
