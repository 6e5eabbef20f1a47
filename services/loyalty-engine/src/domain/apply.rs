//! Applying a customer's new events: record the facts, then re-evaluate once. Pure and
//! deterministic; `now` is passed in.

use chrono::{DateTime, Utc};

use super::churn::Model;
use super::evaluate::evaluate;
use super::event::DomainEvent;
use super::ids::CustomerId;
use super::metrics::Metrics;
use super::output::{Cause, Output};
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
        self.events
            .iter()
            .copied()
            .chain(self.referred.iter().map(|(_, e)| *e))
            .max_by(|a, b| {
                (a.meta.occurred_at, a.meta.event_id.as_str())
                    .cmp(&(b.meta.occurred_at, b.meta.event_id.as_str()))
            })
            .map(|e| Cause::Event(e.meta.event_id.clone()))
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
    let mut state = state.unwrap_or_else(|| CustomerState::new(id.clone(), programme));
    for e in &changes.events {
        state.facts.record(e, &programme.retention);
    }
    for (referred, _) in &changes.referred {
        state.facts.credit_referral(referred);
    }
    let cause = changes.cause().unwrap_or(Cause::Sweep);
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
