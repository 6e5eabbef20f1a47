//! Points through `apply`, `sweep` and `recompute`: the book in the customer's state.

use super::*;
use crate::domain::apply::{apply_with_referred, recompute};
use crate::domain::event::{EventBody, EventMeta, Redemption};
use crate::domain::points::{Outcome, Refusal};
use crate::domain::testkit::{cid, day, purchase, refund};

/// A programme with points earning `per_currency_unit` per 100 JPY, double at gold.
fn earning(per_currency_unit: f64) -> Programme {
    earning_with(per_currency_unit, "")
}

/// [`earning`], with `extra` lines in `[points.earn]`.
fn earning_with(per_currency_unit: f64, extra: &str) -> Programme {
    let text = format!(
        r#"
currency = "JPY"
[[tier]]
name = "member"
[[tier]]
name = "gold"
min_spend_minor = 100000
min_orders = 3
[points]
[points.earn]
per_currency_unit = {per_currency_unit:?}
currency_unit_minor = 100
pending_days = 14
first_order_bonus = 500
{extra}
[points.earn.tier_multipliers]
gold = 2.0
[points.expiry]
mode = "rolling"
months = 12
"#
    );
    Programme::parse(&text).expect("valid programme with points")
}

fn with_points() -> Programme {
    earning(1.0)
}

/// Applies one event to customer "c" at `now`.
fn apply_one(
    p: &Programme,
    state: Option<crate::domain::state::CustomerState>,
    event: &DomainEvent,
    now: chrono::DateTime<chrono::Utc>,
) -> (crate::domain::state::CustomerState, Metrics, Vec<Output>) {
    let changes = Changes {
        events: vec![event],
        ..Default::default()
    };
    apply(&cid("c"), state, &changes, p, None, now)
}

fn redemption(
    key: &str,
    customer: &str,
    points: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> DomainEvent {
    DomainEvent {
        meta: EventMeta {
            event_id: crate::domain::ids::EventId::parse(&format!("redemption:{key}"), 128)
                .expect("event id"),
            customer_id: cid(customer),
            occurred_at: at,
        },
        body: EventBody::Redemption(Redemption {
            redemption_id: key.to_owned(),
            points,
            reward: None,
        }),
    }
}

fn points_changed(outputs: &[Output]) -> Vec<(i64, i64, i64)> {
    outputs
        .iter()
        .filter_map(|o| match &o.kind {
            OutputKind::PointsChanged {
                changes,
                available,
                pending,
                ..
            } => Some((changes.earned, *available, *pending)),
            _ => None,
        })
        .collect()
}

#[test]
fn purchases_earn_pending_points_that_release_and_can_be_spent_once() {
    let p = with_points();
    let first = purchase("e1", "c", 20_000, day(0));
    let (state, _, outs) = apply_one(&p, None, &first, day(0));
    // 200 points for 20,000 JPY plus the 500 first-order bonus, all pending.
    assert_eq!(points_changed(&outs), vec![(700, 0, 700)]);
    assert!(state.status.next_check_at.is_some_and(|t| t <= day(14)));

    let (state, _, outs) = sweep(state, &p, None, day(15));
    assert_eq!(
        points_changed(&outs),
        vec![(0, 700, 0)],
        "released after 14 days"
    );

    let spend = redemption("k1", "c", 600, day(16));
    let again = redemption("k1", "c", 600, day(16));
    let (state, _, outs) = apply_one(&p, Some(state), &spend, day(16));
    assert_eq!(
        state.points.decisions[0].outcome,
        Outcome::Accepted { points: 600 }
    );
    assert_eq!(points_changed(&outs), vec![(0, 100, 0)]);
    let (state, _, _) = apply_one(&p, Some(state), &again, day(16));
    assert_eq!(
        state.points.decisions[0].outcome,
        Outcome::AlreadyDone { points: 600 }
    );

    let greedy = redemption("k2", "c", 101, day(17));
    let (state, _, _) = apply_one(&p, Some(state), &greedy, day(17));
    assert!(matches!(
        &state.points.decisions[0].outcome,
        Outcome::Refused(r @ Refusal::Redeem(_)) if r.code() == "insufficient_points"
    ));
    assert_eq!(
        state
            .points
            .fold(p.points_rules().expect("points"), day(17))
            .available,
        100
    );
}

#[test]
fn recompute_of_the_same_events_finds_no_points_difference() {
    let p = with_points();
    let events = [
        purchase("e1", "c", 50_000, day(0)),
        purchase("e2", "c", 40_000, day(3)),
        purchase("e3", "c", 30_000, day(5)),
        refund("r1", "c", "o-e2", 20_000, day(6)),
        purchase("e4", "c", 10_000, day(8)),
        redemption("k1", "c", 300, day(30)),
    ];
    let mut state = None;
    for e in &events {
        let at = e.meta.occurred_at;
        let (s, _, _) = apply_one(&p, state, e, at);
        state = Some(s);
    }
    let old = state.expect("state");
    // The customer reached gold on the third order: the fourth earned double.
    assert!(
        old.points
            .movements
            .iter()
            .any(|m| m.id == "e4:earn" && m.amount == 200),
        "{:?}",
        old.points.movements
    );
    assert!(
        old.points
            .movements
            .iter()
            .any(|m| m.id == "r1:clawback" && m.amount == 200)
    );
    let refs: Vec<&DomainEvent> = events.iter().collect();
    let (fresh, _, outs) = recompute(&old, &refs, &[], &p, None, day(31));
    assert!(
        !fresh.points.differs_from(&old.points),
        "{:?}\n{:?}",
        fresh.points.movements,
        old.points.movements
    );
    assert!(points_changed(&outs).is_empty(), "{outs:?}");

    // Under a programme that earns twice as much, recompute reports the difference.
    let richer = earning(2.0);
    let (fresh, _, outs) = recompute(&old, &refs, &[], &richer, None, day(31));
    assert!(fresh.points.differs_from(&old.points));
    assert_eq!(points_changed(&outs).len(), 1, "{outs:?}");
}

#[test]
fn a_redemption_dated_before_recorded_spending_still_sees_it() {
    let p = with_points();
    let first = purchase("e1", "c", 20_000, day(0));
    let (state, _, _) = apply_one(&p, None, &first, day(15));
    let spend_all = redemption("k1", "c", 700, day(20));
    let (state, _, _) = apply_one(&p, Some(state), &spend_all, day(20));
    assert_eq!(
        state.points.decisions[0].outcome,
        Outcome::Accepted { points: 700 }
    );
    // A till's message dated a day before the first redemption arrives after it.
    let late = redemption("k2", "c", 700, day(19));
    let (state, _, _) = apply_one(&p, Some(state), &late, day(21));
    assert!(
        matches!(&state.points.decisions[0].outcome, Outcome::Refused(r) if r.code() == "insufficient_points"),
        "{:?}",
        state.points.decisions
    );
    let folded = state
        .points
        .fold(p.points_rules().expect("points"), day(21));
    assert_eq!((folded.available, folded.debt), (0, 0));
}

#[test]
fn recompute_keeps_a_cancelled_referral_bonus_and_cancels_one_the_engine_missed() {
    let p = earning_with(1.0, "referral_bonus = 300");
    let own = purchase("e1", "c", 20_000, day(0));
    let (state, _, _) = apply_one(&p, None, &own, day(0));
    // "f", referred by "c", buys on day 1 and returns all of it on day 3.
    let bought = crate::domain::testkit::purchase_with(
        "f1",
        "f",
        "of1",
        day(1),
        crate::domain::testkit::PurchaseSpec {
            referred_by: Some("c"),
            ..Default::default()
        },
    );
    let back = refund("f2", "f", "of1", 10_000, day(3));
    let credited = Changes {
        referred: vec![(cid("f"), &bought)],
        ..Default::default()
    };
    let (granted, _, _) = apply_with_referred(
        &cid("c"),
        Some(state),
        &credited,
        &[&bought],
        &p,
        None,
        day(1),
    );
    let (cancelled, _, outs) = apply_with_referred(
        &cid("c"),
        Some(granted.clone()),
        &Changes::default(),
        &[&bought, &back],
        &p,
        None,
        day(3),
    );
    assert_eq!(points_changed(&outs), vec![(0, 0, 700)], "{outs:?}");
    let rules = p.points_rules().expect("points");
    assert_eq!(cancelled.points.fold(rules, day(30)).available, 700);

    // The same events, a month on: nothing to change.
    let (cancelled, _, _) = sweep(cancelled, &p, None, day(31));
    let (granted, _, _) = sweep(granted, &p, None, day(31));
    let referred = [&bought, &back];
    let (fresh, _, outs) = recompute(&cancelled, &[&own], &referred, &p, None, day(31));
    assert!(
        !fresh.points.differs_from(&cancelled.points),
        "{:?}",
        fresh.points.movements
    );
    assert!(points_changed(&outs).is_empty(), "{outs:?}");
    assert!(
        fresh.facts.referrals.contains("f"),
        "the referral still counts"
    );

    // A book the refund never reached (recorded before the rule existed): recompute cancels.
    let (fresh, _, outs) = recompute(&granted, &[&own], &referred, &p, None, day(31));
    assert!(fresh.points.differs_from(&granted.points));
    assert!(
        fresh
            .points
            .movements
            .iter()
            .any(|m| m.id == "referral-cancel:f" && m.source_event == "f2"),
        "{:?}",
        fresh.points.movements
    );
    assert_eq!(fresh.points.fold(rules, day(31)).available, 700);
    assert_eq!(points_changed(&outs).len(), 1, "{outs:?}");
}
