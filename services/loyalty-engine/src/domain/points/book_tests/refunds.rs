//! Refunds claw back: full, partial, out of order, before the purchase, after spending.

use super::*;

#[test]
fn a_full_refund_inside_the_return_window_cancels_the_earn_and_the_first_order_bonus() {
    let mut run = Run::new(rolling("pending_days = 14\nfirst_order_bonus = 500"));
    run.apply(&[purchase("p1", "c1", 10_000, day(0))], day(0));
    assert_eq!(run.fold(day(0)).pending, 600);
    let out = run.apply(&[refund("r1", "c1", "o-p1", 10_000, day(3))], day(3));
    let (c, available, pending, debt) = one_change(&out);
    assert_eq!((c.clawed_back, available, pending, debt), (600, 0, 0, 0));
    assert!(
        run.movement("r1:clawback")
            .reason
            .contains("takes back 600"),
        "{}",
        run.movement("r1:clawback").reason
    );
    // Nothing is released later.
    let out = run.sweep(day(20));
    assert!(changed(&out).is_empty(), "{out:#?}");
    assert_invariant(run.movements(), &run.fold(day(20)));
}

#[test]
fn two_half_refunds_take_back_everything_the_order_earned() {
    let mut run = Run::new(rolling("pending_days = 14"));
    run.apply(&[purchase("p1", "c1", 10_050, day(0))], day(0));
    assert_eq!(run.movement("p1:earn").amount, 100);
    run.apply(&[refund("r1", "c1", "o-p1", 5_025, day(1))], day(1));
    assert_eq!(run.movement("r1:clawback").amount, 50);
    assert_eq!(run.fold(day(1)).pending, 50);
    run.apply(&[refund("r2", "c1", "o-p1", 5_025, day(2))], day(2));
    assert_eq!(run.movement("r2:clawback").amount, 50);
    let f = run.fold(day(30));
    assert_eq!((f.available, f.pending), (0, 0));
    assert_invariant(run.movements(), &f);
}

#[test]
fn partial_refunds_arriving_out_of_order_still_take_back_their_whole_share() {
    // The later refund arrives first; the earlier one must still take its share.
    let mut run = Run::new(rolling("pending_days = 14"));
    run.apply(&[purchase("p1", "c1", 10_000, day(0))], day(0));
    run.apply(&[refund("r2", "c1", "o-p1", 5_000, day(2))], day(2));
    run.apply(&[refund("r1", "c1", "o-p1", 5_000, day(1))], day(2));
    let f = run.fold(day(30));
    assert_eq!((f.available, f.pending), (0, 0), "{:#?}", run.movements());
    assert_invariant(run.movements(), &f);
}

#[test]
fn a_refund_that_arrives_before_its_purchase_claws_back_when_the_purchase_comes() {
    let mut run = Run::new(rolling("pending_days = 14"));
    let out = run.apply(&[refund("r1", "c1", "o-p1", 4_000, day(2))], day(2));
    assert!(
        changed(&out).is_empty(),
        "nothing to take back yet: {out:#?}"
    );
    let out = run.apply(&[purchase("p1", "c1", 10_000, day(0))], day(2));
    let (c, available, pending, _) = one_change(&out);
    assert_eq!(
        (c.earned, c.clawed_back, available, pending),
        (100, 40, 0, 60)
    );
    assert_eq!(run.movement("r1:clawback").at, day(2));
    // The same purchase again (a redelivery) changes nothing.
    let out = run.apply(&[purchase("p1", "c1", 10_000, day(0))], day(3));
    assert!(changed(&out).is_empty(), "{out:#?}");
    assert_invariant(run.movements(), &run.fold(day(3)));
}

#[test]
fn a_refund_after_spending_records_a_debt_with_its_reason_paid_by_later_earns() {
    let mut run = Run::new(rolling("pending_days = 0\nnegative_balance = \"debt\""));
    run.apply(&[purchase("p1", "c1", 10_000, day(0))], day(0));
    run.apply(&[redemption("x1", "spend", 80, None, day(1))], day(1));
    assert_eq!(run.outcomes(), vec![Outcome::Accepted { points: 80 }]);
    let out = run.apply(&[refund("r1", "c1", "o-p1", 10_000, day(2))], day(2));
    let (c, available, pending, debt) = one_change(&out);
    assert_eq!((c.clawed_back, available, pending, debt), (100, 0, 0, 80));
    let reason = &run.movement("r1:clawback").reason;
    assert!(
        reason.contains("takes back 100 of the 100 points"),
        "{reason}"
    );
    let f = run.fold(day(2));
    assert_eq!(
        f.balance(crate::domain::points::config::NegativeBalance::Debt),
        0
    );
    assert_invariant(run.movements(), &f);

    // The next earn pays the debt first.
    let out = run.apply(&[purchase("p2", "c1", 10_000, day(3))], day(3));
    let (c, available, _, debt) = one_change(&out);
    assert_eq!((c.earned, available, debt), (100, 20, 0));
    assert_invariant(run.movements(), &run.fold(day(3)));
}

#[test]
fn a_refund_after_spending_shows_a_negative_balance_in_negative_mode() {
    let mut run = Run::new(rolling("pending_days = 0\nnegative_balance = \"negative\""));
    run.apply(&[purchase("p1", "c1", 10_000, day(0))], day(0));
    run.apply(&[redemption("x1", "spend", 80, None, day(1))], day(1));
    run.apply(&[refund("r1", "c1", "o-p1", 10_000, day(2))], day(2));
    let f = run.fold(day(2));
    assert_eq!(
        f.balance(crate::domain::points::config::NegativeBalance::Negative),
        -80
    );
    assert_eq!(f.debt, 80);
    assert!(
        run.movement("r1:clawback")
            .reason
            .contains("refund of 10000")
    );
    assert_invariant(run.movements(), &f);
}
