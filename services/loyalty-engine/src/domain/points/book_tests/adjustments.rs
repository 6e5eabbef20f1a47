//! Manual adjustments: points granted or taken back by an operator.

use super::*;
use crate::domain::apply::recompute;

#[test]
fn a_grant_is_available_at_once_and_expires_by_the_rules_or_when_the_operator_says() {
    // Earned points wait 14 days; granted ones do not.
    let mut run = Run::new(rolling("pending_days = 14"));
    let out = run.apply(&[adjustment("a1", "k1", 500, None, day(0))], day(0));
    assert_eq!(run.outcomes(), vec![Outcome::Accepted { points: 500 }]);
    let (c, available, pending, debt) = one_change(&out);
    assert_eq!((c.adjusted, available, pending, debt), (500, 500, 0, 0));
    let m = run.movement("adjust:k1");
    assert_eq!(m.amount, 500);
    assert_eq!(m.source_event, "a1");
    assert_eq!(m.reason, "adjustment by ops: late parcel");
    // Rolling, 12 months from the grant.
    let rules = run.programme.points_rules().expect("points");
    let derived = rules.expiry.expires_at(day(0));
    assert!(derived.is_some());
    assert_eq!(
        m.kind,
        MovementKind::Adjust {
            expires_at: derived
        }
    );

    let given = day(40);
    run.apply(&[adjustment("a2", "k2", 100, Some(given), day(1))], day(1));
    assert_eq!(
        run.movement("adjust:k2").kind,
        MovementKind::Adjust {
            expires_at: Some(given)
        }
    );
    assert_eq!(run.fold(day(39)).available, 600);
    // The 100 expire when the operator said.
    assert_eq!(run.fold(day(40)).available, 500);
    assert_invariant(run.movements(), &run.fold(day(41)));

    // The same key again: one adjustment.
    let out = run.apply(&[adjustment("a3", "k1", 500, None, day(2))], day(2));
    assert_eq!(run.outcomes(), vec![Outcome::AlreadyDone { points: 500 }]);
    assert!(changed(&out).is_empty(), "{out:#?}");

    // An expiry not after the grant is refused.
    run.apply(&[adjustment("a4", "k4", 10, Some(day(1)), day(3))], day(3));
    match &run.outcomes()[..] {
        [Outcome::Refused(r @ Refusal::ExpiresBeforeGrant { .. })] => {
            assert_eq!(r.code(), "expires_before_grant")
        }
        other => panic!("expires before grant expected: {other:?}"),
    }
    run.apply(&[adjustment("a5", "k5", 0, None, day(3))], day(3));
    assert_eq!(
        run.outcomes(),
        vec![Outcome::Refused(Refusal::ZeroAdjustment)]
    );
}

#[test]
fn a_deduction_takes_from_the_soonest_expiring_lots() {
    let mut run = Run::new(rolling("pending_days = 0"));
    // Expiring on day 200, then on day 100 (granted later but sooner to expire), then by the
    // rules (12 months).
    run.apply(
        &[adjustment("a1", "late", 100, Some(day(200)), day(0))],
        day(0),
    );
    run.apply(
        &[adjustment("a2", "soon", 100, Some(day(100)), day(1))],
        day(1),
    );
    run.apply(&[adjustment("a3", "rules", 100, None, day(2))], day(2));
    let out = run.apply(&[adjustment("a4", "take", -150, None, day(3))], day(3));
    assert_eq!(run.outcomes(), vec![Outcome::Accepted { points: -150 }]);
    let (c, available, _, debt) = one_change(&out);
    assert_eq!((c.adjusted, available, debt), (-150, 150, 0));
    let f = run.fold(day(3));
    let remaining = |id: &str| {
        f.lots
            .iter()
            .find(|l| l.id == id)
            .map(|l| l.remaining)
            .unwrap_or_else(|| panic!("no lot {id}: {f:#?}"))
    };
    assert_eq!(remaining("adjust:soon"), 0);
    assert_eq!(remaining("adjust:late"), 50);
    assert_eq!(remaining("adjust:rules"), 100);
    assert_eq!(
        run.movement("adjust:take").kind,
        MovementKind::Adjust { expires_at: None }
    );
    assert_invariant(run.movements(), &f);
}

#[test]
fn a_deduction_beyond_the_spendable_points_is_refused_and_never_makes_debt() {
    let mut run = Run::new(rolling("pending_days = 10"));
    // 100 points pending (not spendable), 50 granted.
    run.apply(&[purchase("p1", "c1", 10_000, day(0))], day(0));
    run.apply(&[adjustment("a1", "g", 50, None, day(1))], day(1));
    let out = run.apply(&[adjustment("a2", "take", -60, None, day(2))], day(2));
    let refused = run.state().points.decisions[0].clone();
    assert_eq!(
        refused.outcome,
        Outcome::Refused(Refusal::Redeem(RedeemError::Insufficient {
            requested: 60,
            available: 50
        }))
    );
    assert_eq!(refused.redemption_id, "take");
    assert!(changed(&out).is_empty(), "{out:#?}");
    assert!(
        run.movements().iter().all(|m| m.id != "adjust:take"),
        "{:#?}",
        run.movements()
    );
    let f = run.fold(day(2));
    assert_eq!((f.available, f.pending, f.debt), (50, 100, 0));
    // All 50 may go.
    run.apply(&[adjustment("a3", "take-50", -50, None, day(2))], day(2));
    assert_eq!(run.outcomes(), vec![Outcome::Accepted { points: -50 }]);
    assert_eq!(run.fold(day(2)).available, 0);
}

#[test]
fn adjustments_are_refused_without_points_in_the_programme() {
    let mut run = Run::new(sample());
    run.apply(&[adjustment("a1", "k", 500, None, day(0))], day(0));
    assert_eq!(run.outcomes(), vec![Outcome::Refused(Refusal::NoPoints)]);
    assert!(run.movements().is_empty());
}

#[test]
fn recompute_keeps_adjustments_and_reports_no_difference() {
    let p = rolling("pending_days = 0");
    let mut run = Run::new(p.clone());
    let events = [
        purchase("p1", "c1", 10_000, day(0)),
        adjustment("a1", "grant", 500, None, day(1)),
        adjustment("a2", "take", -550, None, day(2)),
        // Refused when it came (50 left) ...
        adjustment("a3", "refused", -60, None, day(3)),
        // ... and a purchase dated before it that came after it: recompute, in time order,
        // must not judge the deduction again (it would be accepted now).
        purchase("p2", "c1", 10_000, day(2)),
    ];
    for e in &events {
        run.apply(std::slice::from_ref(e), e.meta.occurred_at);
    }
    let f = run.fold(day(3));
    assert_eq!(f.available, 150);
    assert!(run.movements().iter().all(|m| m.id != "adjust:refused"));
    let refs: Vec<&DomainEvent> = events.iter().collect();
    let (fresh, _, outs) = recompute(run.state(), &refs, &[], &p, None, day(4));
    assert!(
        !fresh.points.differs_from(&run.state().points),
        "{:#?}\nvs\n{:#?}",
        fresh.points.movements,
        run.state().points.movements
    );
    assert!(changed(&outs).is_empty(), "{outs:#?}");
    assert_eq!(
        fresh
            .points
            .fold(p.points_rules().expect("points"), day(4))
            .available,
        150
    );
    assert!(
        fresh
            .points
            .movements
            .iter()
            .any(|m| m.id == "adjust:grant")
    );
    assert!(fresh.points.movements.iter().any(|m| m.id == "adjust:take"));
}
