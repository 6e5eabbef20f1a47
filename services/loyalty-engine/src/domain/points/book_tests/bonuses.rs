//! Bonuses: first order, survey, anniversary, referral.

use super::*;

#[test]
fn the_first_order_bonus_is_paid_on_the_first_order_only() {
    let mut run = Run::new(rolling("pending_days = 14\nfirst_order_bonus = 500"));
    run.apply(&[purchase("p1", "c1", 1_000, day(0))], day(0));
    run.apply(&[purchase("p2", "c1", 1_000, day(1))], day(1));
    let bonus = run.movement("p1:first_order");
    assert_eq!(bonus.amount, 500);
    assert!(
        matches!(&bonus.kind, MovementKind::Earn { order_id: Some(o), available_at, .. } if o == "o-p1" && *available_at == day(14)),
        "the bonus belongs to the order and is pending with it: {bonus:?}"
    );
    assert!(!run.movements().iter().any(|m| m.id == "p2:first_order"));
    assert_eq!(run.fold(day(20)).available, 520);
}

#[test]
fn a_survey_answer_earns_its_bonus_at_once_and_once() {
    let mut run = Run::new(rolling("survey_bonus = 50"));
    let answer = survey(
        "s1",
        "c1",
        crate::domain::event::SurveyScore::Nps(9),
        day(0),
    );
    let out = run.apply(std::slice::from_ref(&answer), day(0));
    let (c, available, pending, _) = one_change(&out);
    assert_eq!(
        (c.earned, available, pending),
        (50, 50, 0),
        "spendable at once"
    );
    let out = run.apply(&[answer], day(1));
    assert!(
        changed(&out).is_empty(),
        "a redelivered answer earns nothing: {out:#?}"
    );
}

#[test]
fn anniversaries_of_the_first_order_earn_a_bonus_each_once() {
    let mut run = Run::new(rolling("pending_days = 0\nanniversary_bonus = 200"));
    run.apply(&[purchase("p1", "c1", 1_000, day(0))], day(0));
    let first = t0() + chrono::Months::new(12);
    assert!(
        run.state().status.next_check_at <= Some(first),
        "the sweeper comes back for the anniversary"
    );
    let out = run.sweep(first - Duration::seconds(1));
    assert!(
        !run.movements().iter().any(|m| m.id == "anniversary:1"),
        "{out:#?}"
    );
    let out = run.sweep(first);
    let (c, ..) = one_change(&out);
    assert_eq!(c.earned, 200);
    let out = run.sweep(first + Duration::days(1));
    assert!(changed(&out).is_empty(), "once per anniversary: {out:#?}");
    run.sweep(t0() + chrono::Months::new(24));
    let m = run.movement("anniversary:2");
    assert_eq!((m.amount, m.at), (200, t0() + chrono::Months::new(24)));
    assert_eq!(m.reason, "2-year anniversary of the first order");
}

#[test]
fn a_referral_earns_the_referrer_a_bonus_once_the_referred_order_clears() {
    let mut run = Run::new(rolling("pending_days = 14\nreferral_bonus = 1000"));
    run.apply(&[purchase("own", "c1", 1_000, day(0))], day(0));
    let referred = purchase_with(
        "n1",
        "newbie",
        "on1",
        day(1),
        PurchaseSpec {
            referred_by: Some("c1"),
            ..Default::default()
        },
    );
    let batch = Batch {
        events: Vec::new(),
        referred: vec![(cid("newbie"), &referred)],
    };
    let out = run.apply_batch(&batch, day(1));
    let (c, available, pending, _) = one_change(&out);
    assert_eq!((c.earned, available, pending), (1000, 0, 1010));
    let m = run.movement("referral:newbie");
    assert!(m.reason.contains("referral bonus"), "{}", m.reason);
    assert_eq!(m.source_event, "n1");
    // The same customer's next order (or a redelivery) does not pay again.
    let again = purchase_with(
        "n2",
        "newbie",
        "on2",
        day(2),
        PurchaseSpec {
            referred_by: Some("c1"),
            ..Default::default()
        },
    );
    let batch = Batch {
        events: Vec::new(),
        referred: vec![(cid("newbie"), &again), (cid("newbie"), &referred)],
    };
    run.apply_batch(&batch, day(2));
    let out = run.sweep(day(15));
    let (c, available, pending, _) = one_change(&out);
    assert_eq!((c.released, available, pending), (1010, 1010, 0));
    assert_invariant(run.movements(), &run.fold(day(15)));
}
