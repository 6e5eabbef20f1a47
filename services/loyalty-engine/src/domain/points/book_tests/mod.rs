//! The points book through the domain's front door (`apply::apply` and `apply::sweep`), with a
//! programme that has `[points]`: earning, pending and release, each expiry mode with its
//! warning, refund clawback, the bonuses, redemption decisions, and order independence.

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;

use super::{Outcome, Refusal};
use crate::domain::apply::{Changes as Batch, apply_with_referred, sweep};
use crate::domain::event::{
    Adjustment, DomainEvent, EventBody, EventMeta, Redemption, RedemptionCancel,
};
use crate::domain::ids::EventId;
use crate::domain::output::{Output, OutputKind};
use crate::domain::points::config::PointsRules;
use crate::domain::points::ledger::{Folded, Movement, MovementKind};
use crate::domain::points::redeem::RedeemError;
use crate::domain::points::summary::Changes;
use crate::domain::programme::{Programme, sample};
use crate::domain::state::CustomerState;
use crate::domain::testkit::{PurchaseSpec, cid, day, purchase, purchase_with, refund, survey, t0};

/// `domain::programme::sample()` (silver: 30,000 JPY over 2 orders; gold: 100,000 over 3) with
/// `[points]`: 1 point per 100 JPY, the `earn` and `expiry` lines added to their sections, and a
/// reward for silver and above.
fn programme(earn: &str, expiry: &str) -> Programme {
    let text = format!(
        "enabled = true\n[earn]\nper_currency_unit = 1.0\ncurrency_unit_minor = 100\n{earn}\n[expiry]\n{expiry}\n[[reward]]\nid = \"coffee\"\nname = \"A free coffee\"\ncost = 30\nmin_tier = \"silver\"\n"
    );
    let mut p = sample();
    match PointsRules::parse(&text) {
        Ok(rules) => p.points = Some(rules),
        Err(e) => panic!("test [points]: {e}\n{text}"),
    }
    p
}

fn rolling(earn: &str) -> Programme {
    programme(earn, "mode = \"rolling\"\nmonths = 12\nwarn_days = 30")
}

fn meta(id: &str, customer: &str, at: DateTime<Utc>) -> EventMeta {
    EventMeta {
        event_id: EventId::parse(id, 128).expect("valid id"),
        customer_id: cid(customer),
        occurred_at: at,
    }
}

fn redemption(
    id: &str,
    redemption_id: &str,
    points: i64,
    reward: Option<&str>,
    at: DateTime<Utc>,
) -> DomainEvent {
    DomainEvent {
        meta: meta(id, "c1", at),
        body: EventBody::Redemption(Redemption {
            redemption_id: redemption_id.to_owned(),
            points,
            reward: reward.map(str::to_owned),
        }),
    }
}

fn cancel(id: &str, redemption_id: &str, at: DateTime<Utc>) -> DomainEvent {
    DomainEvent {
        meta: meta(id, "c1", at),
        body: EventBody::RedemptionCancel(RedemptionCancel {
            redemption_id: redemption_id.to_owned(),
        }),
    }
}

fn adjustment(
    id: &str,
    key: &str,
    points: i64,
    expires_at: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
) -> DomainEvent {
    DomainEvent {
        meta: meta(id, "c1", at),
        body: EventBody::Adjustment(Adjustment {
            adjustment_id: key.to_owned(),
            points,
            reason: "late parcel".to_owned(),
            expires_at,
            by: "ops".to_owned(),
        }),
    }
}

fn bought(
    id: &str,
    order: &str,
    amount: i64,
    category: &'static str,
    at: DateTime<Utc>,
) -> DomainEvent {
    purchase_with(
        id,
        "c1",
        order,
        at,
        PurchaseSpec {
            amount,
            category,
            ..Default::default()
        },
    )
}

/// One customer ("c1") fed batch by batch, with everything the domain said.
struct Run {
    programme: Programme,
    state: Option<CustomerState>,
}

impl Run {
    fn new(programme: Programme) -> Self {
        Self {
            programme,
            state: None,
        }
    }

    fn apply(&mut self, events: &[DomainEvent], now: DateTime<Utc>) -> Vec<Output> {
        let batch = Batch {
            events: events.iter().collect(),
            referred: Vec::new(),
        };
        self.apply_batch(&batch, now)
    }

    fn apply_batch(&mut self, batch: &Batch<'_>, now: DateTime<Utc>) -> Vec<Output> {
        self.apply_referred(batch, &[], now)
    }

    /// A batch with the events of customers "c1" referred, as the engine reads them from the
    /// ledger (`apply::apply_with_referred`).
    fn apply_referred(
        &mut self,
        batch: &Batch<'_>,
        referred: &[&DomainEvent],
        now: DateTime<Utc>,
    ) -> Vec<Output> {
        let (state, _, outputs) = apply_with_referred(
            &cid("c1"),
            self.state.take(),
            batch,
            referred,
            &self.programme,
            None,
            now,
        );
        self.state = Some(state);
        outputs
    }

    fn sweep(&mut self, now: DateTime<Utc>) -> Vec<Output> {
        let state = self.state.take().expect("a customer to sweep");
        let (state, _, outputs) = sweep(state, &self.programme, None, now);
        self.state = Some(state);
        outputs
    }

    fn state(&self) -> &CustomerState {
        self.state.as_ref().expect("a customer")
    }

    fn movements(&self) -> &[Movement] {
        &self.state().points.movements
    }

    fn movement(&self, id: &str) -> &Movement {
        self.movements()
            .iter()
            .find(|m| m.id == id)
            .unwrap_or_else(|| panic!("no movement {id}: {:#?}", self.movements()))
    }

    fn fold(&self, now: DateTime<Utc>) -> Folded {
        let rules = self.programme.points_rules().expect("points enabled");
        self.state().points.fold(rules, now)
    }

    fn outcomes(&self) -> Vec<Outcome> {
        self.state()
            .points
            .decisions
            .iter()
            .map(|d| d.outcome.clone())
            .collect()
    }
}

/// The PointsChanged outputs: (changes, available, pending, debt).
fn changed(outputs: &[Output]) -> Vec<(Changes, i64, i64, i64)> {
    outputs
        .iter()
        .filter_map(|o| match &o.kind {
            OutputKind::PointsChanged {
                changes,
                available,
                pending,
                debt,
            } => Some((changes.clone(), *available, *pending, *debt)),
            _ => None,
        })
        .collect()
}

/// The single PointsChanged of a batch.
fn one_change(outputs: &[Output]) -> (Changes, i64, i64, i64) {
    let all = changed(outputs);
    assert_eq!(all.len(), 1, "one PointsChanged: {outputs:#?}");
    all.into_iter().next().expect("one")
}

/// A PointsWillExpire: (lot, amount, expires_at).
type Warning = (String, i64, DateTime<Utc>);

/// The PointsWillExpire outputs.
fn warnings(outputs: &[Output]) -> Vec<Warning> {
    outputs
        .iter()
        .filter_map(|o| match &o.kind {
            OutputKind::PointsWillExpire {
                lot,
                amount,
                expires_at,
            } => Some((lot.clone(), *amount, *expires_at)),
            _ => None,
        })
        .collect()
}

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
        .single()
        .expect("date")
}

/// The ledger invariant (`points::tests`), and the book records each movement id once.
fn assert_invariant(movements: &[Movement], f: &Folded) {
    super::super::tests::assert_invariant(movements, f);
    let ids: std::collections::BTreeSet<_> = movements.iter().map(|m| &m.id).collect();
    assert_eq!(ids.len(), movements.len(), "movement ids are unique");
}

mod adjustments;
mod bonuses;
mod earning;
mod expiry;
mod properties;
mod redemptions;
mod referrals;
mod refunds;
