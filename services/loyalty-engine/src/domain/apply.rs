//! Applying a customer's new events: record the facts, then re-evaluate once. Pure and
//! deterministic; `now` is passed in.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::churn::Model;
use super::evaluate::evaluate;
use super::event::{DomainEvent, EventBody};
use super::ids::CustomerId;
use super::metrics::Metrics;
use super::output::{Cause, Output};
use super::points::book::is_first_order;
use super::programme::Programme;
use super::state::CustomerState;
use super::tier::{self, TierOverride};

/// Facts for one customer from one batch.
#[derive(Debug, Default)]
pub struct Changes<'a> {
    pub events: Vec<&'a DomainEvent>,
    /// Customers this customer referred (credited by the referred customer's purchase).
    pub referred: Vec<(CustomerId, &'a DomainEvent)>,
}

impl Changes<'_> {
    /// The event the outputs are attributed to: the latest in event time.
    fn cause(&self) -> Option<Cause> {
        latest(
            self.events
                .iter()
                .copied()
                .chain(self.referred.iter().map(|(_, e)| *e)),
        )
    }
}

/// The latest of `events` in event time, as a cause.
fn latest<'a>(events: impl Iterator<Item = &'a DomainEvent>) -> Option<Cause> {
    events
        .max_by(|a, b| {
            (a.meta.occurred_at, a.meta.event_id.as_str())
                .cmp(&(b.meta.occurred_at, b.meta.event_id.as_str()))
        })
        .map(|e| Cause::Event(e.meta.event_id.clone()))
}

/// Cancels the referral bonuses whose referred orders were refunded before they cleared,
/// given the referred customers' events (grouped here by customer).
fn cancel_referrals(
    state: &mut CustomerState,
    referred_events: &[&DomainEvent],
    programme: &Programme,
) {
    let mut by_referred: BTreeMap<&CustomerId, Vec<&DomainEvent>> = BTreeMap::new();
    for e in referred_events {
        by_referred.entry(&e.meta.customer_id).or_default().push(e);
    }
    for (referred, events) in by_referred {
        state
            .points
            .on_referred_refunds(referred.as_str(), &events, programme);
    }
}

/// Applies `changes` to the customer's state (None for a customer seen for the first time)
/// and re-evaluates at `now`.
pub fn apply(
    id: &CustomerId,
    state: Option<CustomerState>,
    changes: &Changes<'_>,
    programme: &Programme,
    model: Option<&Model>,
    now: DateTime<Utc>,
) -> (CustomerState, Metrics, Vec<Output>) {
    apply_with_referred(id, state, changes, &[], programme, model, now)
}

/// [`apply`], also given the events of customers this customer referred that may cancel a
/// referral bonus: their purchases naming this customer and their refunds, in any order,
/// duplicates allowed (the engine reads them from the event ledger, this batch's included).
/// A bonus whose order was refunded in full before it cleared is cancelled
/// (`PointsBook::on_referred_refunds`). With no changes of its own, the outputs are attributed
/// to the latest of those events (the refund that cancelled the bonus).
pub fn apply_with_referred(
    id: &CustomerId,
    state: Option<CustomerState>,
    changes: &Changes<'_>,
    referred_events: &[&DomainEvent],
    programme: &Programme,
    model: Option<&Model>,
    now: DateTime<Utc>,
) -> (CustomerState, Metrics, Vec<Output>) {
    let mut state = state.unwrap_or_else(|| CustomerState::new(id.clone(), programme));
    state.points.decisions.clear();
    for e in &changes.events {
        let first_order = is_first_order(&state.facts, e);
        state.facts.record(e, &programme.retention);
        let tier = state.status.tier.tier.clone();
        state
            .points
            .on_event(e, &state.facts, first_order, programme, &tier);
    }
    for (referred, e) in &changes.referred {
        state.facts.credit_referral(referred);
        state.points.on_referral(referred.as_str(), e, programme);
    }
    cancel_referrals(&mut state, referred_events, programme);
    let cause = changes
        .cause()
        .or_else(|| latest(referred_events.iter().copied()))
        .unwrap_or(Cause::Sweep);
    let (metrics, outputs) = evaluate(&mut state, programme, model, now, &cause);
    (state, metrics, outputs)
}

/// Re-evaluates a customer because time passed (the sweeper).
pub fn sweep(
    mut state: CustomerState,
    programme: &Programme,
    model: Option<&Model>,
    now: DateTime<Utc>,
) -> (CustomerState, Metrics, Vec<Output>) {
    let (metrics, outputs) = evaluate(&mut state, programme, model, now, &Cause::Sweep);
    (state, metrics, outputs)
}

/// Sets a manual tier override, then re-evaluates the rest.
pub fn override_tier(
    mut state: CustomerState,
    manual: TierOverride,
    programme: &Programme,
    model: Option<&Model>,
    now: DateTime<Utc>,
) -> (CustomerState, Metrics, Vec<Output>) {
    let who = Cause::Operator(format!("operator:{}", manual.set_by));
    let changed = tier::set_override(&mut state.status.tier, manual);
    let (metrics, mut outputs) = evaluate(&mut state, programme, model, now, &who);
    if let tier::TierEvent::Changed {
        previous,
        new,
        kind,
        reason,
        at,
    } = changed
    {
        outputs.insert(
            0,
            Output {
                customer_id: state.customer_id.clone(),
                cause: who,
                effective_at: at,
                metrics: Box::new(metrics.clone()),
                churn: None,
                kind: super::output::OutputKind::TierChanged {
                    previous,
                    new,
                    change: kind,
                    reason,
                },
            },
        );
    }
    (state, metrics, outputs)
}

/// Rebuilds a customer from their recorded events under the current programme (after a rule
/// change). What happened before the oldest recorded event (events pruned from the ledger) is
/// kept from `old`. The tier goes straight to what the rules give, downgrades included (an
/// active manual override stays); outputs are produced only for real differences from `old`.
/// `referred`: the events of the customers this customer referred — their purchases naming
/// this customer (the referral credits) and their refunds (which may cancel a referral bonus).
pub fn recompute(
    old: &CustomerState,
    events: &[&DomainEvent],
    referred: &[&DomainEvent],
    programme: &Programme,
    model: Option<&Model>,
    now: DateTime<Utc>,
) -> (CustomerState, Metrics, Vec<Output>) {
    use super::metrics::Metrics as M;
    use super::output::OutputKind;
    use super::tier::{TierChangeKind, qualifying_rank};

    let mut fresh = CustomerState::new(old.customer_id.clone(), programme);
    let horizon = events.iter().map(|e| e.meta.occurred_at).min();
    fresh.facts = match horizon {
        Some(horizon) => old.facts.before(horizon),
        None => old.facts.clone(),
    };
    // Points: derived again from the events in time order, each purchase at the tier it earned
    // at (or, if not recorded, the tier held now); redemptions
    // and what else was decided once are kept (see `PointsBook::kept_for_recompute`).
    fresh.points = old.points.kept_for_recompute(horizon);
    let mut sorted = events.to_vec();
    sorted.sort_by(|a, b| {
        (a.meta.occurred_at, a.meta.event_id.as_str())
            .cmp(&(b.meta.occurred_at, b.meta.event_id.as_str()))
    });
    let held = old.tier().to_owned();
    for e in sorted {
        let first_order = is_first_order(&fresh.facts, e);
        fresh.facts.record(e, &programme.retention);
        if !matches!(
            e.body,
            EventBody::Redemption(_) | EventBody::RedemptionCancel(_) | EventBody::Adjustment(_)
        ) {
            fresh
                .points
                .on_event(e, &fresh.facts, first_order, programme, &held);
        }
    }
    // Referral bonuses are kept; a cancellation the engine missed is derived again.
    cancel_referrals(&mut fresh, referred, programme);
    fresh.points.settle_against(&old.points);
    for e in referred {
        if let EventBody::Purchase(p) = &e.body
            && p.referred_by.as_ref() == Some(&old.customer_id)
        {
            fresh.facts.credit_referral(&e.meta.customer_id);
        }
    }
    fresh.status = old.status.clone();
    fresh.status.tier.pending = None;
    let metrics_now = M::derive(&fresh.facts, programme, now);
    let manual_active = fresh
        .status
        .tier
        .manual
        .as_ref()
        .is_some_and(|o| o.expires_at > now);
    let mut outputs = Vec::new();
    let cause = Cause::Operator("recompute".to_owned());
    if !manual_active {
        let q = qualifying_rank(&metrics_now, programme);
        let rule = &programme.tiers[q];
        let held = old.tier().to_owned();
        if rule.name != held {
            let change = if q > programme.rank(&held) {
                TierChangeKind::Upgrade
            } else {
                TierChangeKind::Downgrade
            };
            outputs.push(Output {
                customer_id: old.customer_id.clone(),
                cause: cause.clone(),
                effective_at: now,
                metrics: Box::new(metrics_now.clone()),
                churn: None,
                kind: OutputKind::TierChanged {
                    previous: held,
                    new: rule.name.clone(),
                    change,
                    reason: format!(
                        "recomputed under the current programme: qualifying spend {} {} over {} orders meets {}",
                        metrics_now.qualifying_spend_minor,
                        programme.currency,
                        tier::orders_words(metrics_now.qualifying_orders),
                        rule.name
                    ),
                },
            });
            fresh.status.tier.tier = rule.name.clone();
            fresh.status.tier.since = Some(now);
        }
    }
    let (metrics, more) = evaluate(&mut fresh, programme, model, now, &cause);
    outputs.extend(more);
    (fresh, metrics, outputs)
}
