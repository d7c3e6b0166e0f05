//! In a fleet: whether a message is sent from here or handed to the node whose IPs can send it.
//!
//! A message goes to another node when its pool has no IP in rotation here, or when an attempt
//! here found none usable (all at their warm-up cap, suspended or unbindable), and a live node
//! has an IP of the pool. A message that was handed over is never handed on again, so it cannot
//! travel in circles. When every IP of the pool is on nodes that are down, the message waits.

use std::sync::Arc;

use super::context::AttemptContext;
use crate::fleet::store::NodeRecord;
use crate::outbound::handover::Peer;
use crate::outbound::report::{AttemptReport, Deferral, Outcome, RecipientOutcome};
use crate::outbound::shaping::ReleasableSlot;
use crate::registry::PoolMembers;
use crate::spool::Envelope;

/// What happened to a message in this attempt.
pub(super) enum Sent {
    /// Attempted here (or deferred here): the report says how each recipient fared.
    Here(AttemptReport),
    /// Spooled by another node, which now delivers it: this node's copy can go.
    HandedOver { node: String },
}

/// The live peers that have an IP of `pool` in rotation, and whether any peer has one at all.
fn peers_for(ctx: &AttemptContext, envelope: &Envelope) -> Option<(Vec<NodeRecord>, Vec<String>)> {
    let fleet = ctx.fleet.as_ref()?;
    if envelope.forwarded_from.is_some() {
        return None;
    }
    let owners = ctx.registry.load().remote_nodes_for(&envelope.pool);
    if owners.is_empty() {
        return None;
    }
    let live: Vec<NodeRecord> = fleet
        .live_peers()
        .into_iter()
        .filter(|peer| owners.contains(&peer.name))
        .collect();
    Some((live, owners))
}

/// The pool has an IP in rotation on this node.
fn has_local_source(ctx: &AttemptContext, pool: &str) -> bool {
    match ctx.registry.load().pool_members(pool) {
        PoolMembers::HostDefault => true,
        PoolMembers::Addresses(sources) => sources.iter().any(|s| s.weight > 0),
    }
}

/// Sends the message from here, or hands it over (see the module docs).
pub(super) async fn send(
    ctx: &Arc<AttemptContext>,
    envelope: &Envelope,
    slot: &mut dyn ReleasableSlot,
) -> Sent {
    let peers = peers_for(ctx, envelope);
    let report = match &peers {
        Some((live, owners)) if !has_local_source(ctx, &envelope.pool) => match live.first() {
            Some(_) => return hand_over(ctx, envelope, live).await,
            None => deferred_all(
                envelope,
                Deferral::NodesDown {
                    pool: envelope.pool.clone(),
                    nodes: owners.join(", "),
                },
            ),
        },
        _ => ctx.outbound.deliver(envelope, slot).await,
    };
    let nowhere_here = report.outcomes().next().is_some()
        && report.outcomes().all(|(_, outcome)| {
            matches!(&outcome.result, Outcome::Deferred(deferral) if deferral.is_no_source_here())
        });
    match peers {
        Some((live, _)) if nowhere_here && !live.is_empty() => {
            hand_over(ctx, envelope, &live).await
        }
        _ => Sent::Here(report),
    }
}

/// Hands the message to the first live peer that takes it; every pending recipient is deferred
/// with the last failure when none does.
async fn hand_over(ctx: &AttemptContext, envelope: &Envelope, live: &[NodeRecord]) -> Sent {
    let Some(fleet) = &ctx.fleet else {
        return Sent::Here(AttemptReport::new(envelope.recipients.len()));
    };
    // Start at a peer chosen by the message id, so mail spreads over the pool's nodes.
    let start = envelope
        .id
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    let mut last = String::new();
    for offset in 0..live.len() {
        let peer = &live[(start + offset) % live.len()];
        let to = Peer {
            node: &peer.name,
            forward_listen: &peer.forward_listen,
        };
        match ctx
            .outbound
            .hand_over(envelope, to, fleet.node(), fleet.secret())
            .await
        {
            Ok(()) => {
                return Sent::HandedOver {
                    node: peer.name.clone(),
                };
            }
            Err(error) => {
                tracing::warn!(id = %envelope.id, node = %peer.name, %error, "handover failed");
                last = error.to_string();
            }
        }
    }
    Sent::Here(deferred_all(envelope, Deferral::Handover { detail: last }))
}

/// Every pending recipient deferred for `why`.
fn deferred_all(envelope: &Envelope, why: Deferral) -> AttemptReport {
    let mut report = AttemptReport::new(envelope.recipients.len());
    for (index, _) in envelope.pending() {
        let outcome = RecipientOutcome::local(Outcome::Deferred(why.clone()), None, "fleet");
        report.record(index, outcome);
    }
    report
}
