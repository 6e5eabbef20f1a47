//! Referral bonuses cancelled when the referred customer's order is refunded in full before the
//! bonus clears: full, partial, after clearing, out of order, in one batch, duplicated, in debt.

use super::*;

/// "newbie"'s purchase naming "c1" as referrer: order "on1", 10,000 JPY.
fn referred_buy(at: DateTime<Utc>) -> DomainEvent {
    purchase_with(
        "n1",
        "newbie",
        "on1",
        at,
        PurchaseSpec {
            referred_by: Some("c1"),
            ..Default::default()
        },
    )
}

fn referred_refund(id: &str, amount: i64, at: DateTime<Utc>) -> DomainEvent {
    refund(id, "newbie", "on1", amount, at)
}

fn programme() -> Programme {
    rolling("pending_days = 14\nreferral_bonus = 1000")
}

/// "c1" buys on day 0 (10 points, pending until day 14), then "newbie"'s purchase on day 1
/// credits c1 with the bonus (pending until day 15).
fn referred() -> (Run, DomainEvent) {
    let mut run = Run::new(programme());
    run.apply(&[purchase("own", "c1", 1_000, day(0))], day(0));
    let p = referred_buy(day(1));
    let batch = Batch {
        events: Vec::new(),
        referred: vec![(cid("newbie"), &p)],
    };
    run.apply_referred(&batch, &[&p], day(1));
    assert_eq!(run.fold(day(1)).pending, 1010);
    (run, p)
}

/// A batch of "newbie"'s refunds for "c1": nothing of c1's own, and the ledger's events of
/// newbie (`seen`).
fn refunded(run: &mut Run, seen: &[&DomainEvent], now: DateTime<Utc>) -> Vec<Output> {
    run.apply_referred(&Batch::default(), seen, now)
}

fn cancellation(run: &Run) -> Option<&Movement> {
    run.movements()
        .iter()
        .find(|m| m.id == "referral-cancel:newbie")
}

#[test]
fn a_full_refund_before_the_bonus_clears_cancels_it() {
    let (mut run, p) = referred();
    let r = referred_refund("nr1", 10_000, day(5));
    let out = refunded(&mut run, &[&p, &r], day(5));
    let (c, available, pending, debt) = one_change(&out);
    assert_eq!(
        (c.clawed_back, available, pending, debt),
        (1000, 0, 10, 0),
        "the bonus goes, c1's own pending points stay"
    );
    let m = cancellation(&run).expect("the bonus is cancelled");
    assert_eq!(
        (m.amount, m.at, m.source_event.as_str()),
        (1000, day(5), "nr1")
    );
    assert!(
        matches!(&m.kind, MovementKind::Clawback { order_id } if order_id == "referral:newbie"),
        "{m:?}"
    );
    assert_eq!(
        m.reason,
        format!(
            "referral bonus cancelled: the referred customer's order was refunded before it \
             cleared on {}",
            day(15).date_naive()
        )
    );
    // Only c1's own points are released later.
    let out = run.sweep(day(15));
    let (c, available, pending, _) = one_change(&out);
    assert_eq!((c.released, available, pending), (10, 10, 0));
    assert_invariant(run.movements(), &run.fold(day(15)));
}

#[test]
fn a_partial_refund_leaves_the_bonus_alone() {
    let (mut run, p) = referred();
    let r = referred_refund("nr1", 9_999, day(5));
    refunded(&mut run, &[&p, &r], day(5));
    assert!(cancellation(&run).is_none(), "{:#?}", run.movements());
    let out = run.sweep(day(15));
    let (c, available, pending, _) = one_change(&out);
    assert_eq!((c.released, available, pending), (1010, 1010, 0));
    assert_invariant(run.movements(), &run.fold(day(15)));
}

#[test]
fn partial_refunds_that_add_up_to_the_order_before_it_clears_cancel_the_bonus() {
    let (mut run, p) = referred();
    let r1 = referred_refund("nr1", 4_000, day(3));
    refunded(&mut run, &[&p, &r1], day(3));
    assert!(cancellation(&run).is_none());
    let r2 = referred_refund("nr2", 6_000, day(10));
    refunded(&mut run, &[&p, &r1, &r2], day(10));
    let m = cancellation(&run).expect("cancelled by the second refund");
    assert_eq!((m.at, m.source_event.as_str()), (day(10), "nr2"));
    assert_eq!(run.fold(day(30)).available, 10);
}

#[test]
fn a_refund_after_the_bonus_cleared_leaves_it_alone() {
    let (mut run, p) = referred();
    run.sweep(day(15));
    let r = referred_refund("nr1", 10_000, day(16));
    let out = refunded(&mut run, &[&p, &r], day(16));
    assert!(cancellation(&run).is_none(), "{:#?}", run.movements());
    assert!(changed(&out).is_empty(), "{out:#?}");
    assert_eq!(run.fold(day(16)).available, 1010);
    // Completed only after clearing: a first half inside the window, the rest after it.
    let (mut run, p) = referred();
    let r1 = referred_refund("nr1", 5_000, day(14));
    refunded(&mut run, &[&p, &r1], day(14));
    let r2 = referred_refund("nr2", 5_000, day(15));
    refunded(&mut run, &[&p, &r1, &r2], day(15));
    assert!(cancellation(&run).is_none(), "{:#?}", run.movements());
    assert_eq!(run.fold(day(15)).available, 1010);
}

#[test]
fn a_refund_arriving_before_the_referred_purchase_still_cancels_the_bonus() {
    let mut run = Run::new(programme());
    run.apply(&[purchase("own", "c1", 1_000, day(0))], day(0));
    let r = referred_refund("nr1", 10_000, day(5));
    // The refund alone: no bonus yet, nothing to cancel.
    let out = refunded(&mut run, &[&r], day(5));
    assert!(changed(&out).is_empty(), "{out:#?}");
    assert!(cancellation(&run).is_none());
    // Then the purchase, with the refund already in the ledger.
    let p = referred_buy(day(1));
    let batch = Batch {
        events: Vec::new(),
        referred: vec![(cid("newbie"), &p)],
    };
    let out = run.apply_referred(&batch, &[&r, &p], day(5));
    let (c, available, pending, _) = one_change(&out);
    assert_eq!(
        (c.earned, c.clawed_back, available, pending),
        (1000, 1000, 0, 10)
    );
    // The same as in order, and as in one batch.
    let (mut in_order, p) = referred();
    refunded(&mut in_order, &[&p, &r], day(5));
    let mut one_batch = Run::new(programme());
    one_batch.apply(&[purchase("own", "c1", 1_000, day(0))], day(0));
    let batch = Batch {
        events: Vec::new(),
        referred: vec![(cid("newbie"), &p)],
    };
    one_batch.apply_referred(&batch, &[&p, &r], day(5));
    for other in [&in_order, &one_batch] {
        assert_eq!(
            cancellation(other).map(|m| (m.at, m.amount, m.source_event.clone())),
            cancellation(&run).map(|m| (m.at, m.amount, m.source_event.clone()))
        );
        assert_eq!(other.fold(day(40)), run.fold(day(40)));
    }
    assert_invariant(run.movements(), &run.fold(day(40)));
}

#[test]
fn a_duplicate_refund_changes_nothing() {
    let (mut run, p) = referred();
    let r = referred_refund("nr1", 10_000, day(5));
    refunded(&mut run, &[&p, &r], day(5));
    let before = run.movements().to_vec();
    // Redelivered (the ledger lists it twice), and the same refund judged again.
    let out = refunded(&mut run, &[&p, &r, &r], day(6));
    assert!(changed(&out).is_empty(), "{out:#?}");
    assert_eq!(run.movements(), &before[..]);
    // A duplicate inside the window does not make a partial refund full.
    let (mut run, p) = referred();
    let half = referred_refund("nr1", 5_000, day(5));
    refunded(&mut run, &[&p, &half, &half], day(5));
    assert!(cancellation(&run).is_none(), "{:#?}", run.movements());
}

#[test]
fn cancelling_a_bonus_that_paid_a_debt_brings_the_debt_back() {
    let mut run = Run::new(rolling(
        "pending_days = 14\nreferral_bonus = 1000\nnegative_balance = \"debt\"",
    ));
    // c1 earns 100, spends them once released, and the order is refunded: a debt of 100.
    run.apply(&[purchase("own", "c1", 10_000, day(0))], day(0));
    run.apply(&[redemption("x1", "k1", 100, None, day(14))], day(14));
    run.apply(&[refund("r1", "c1", "o-own", 10_000, day(15))], day(15));
    assert_eq!(run.fold(day(15)).debt, 100);
    // The bonus pays the debt first; its cancellation takes all of it back.
    let p = referred_buy(day(16));
    let batch = Batch {
        events: Vec::new(),
        referred: vec![(cid("newbie"), &p)],
    };
    run.apply_referred(&batch, &[&p], day(16));
    let f = run.fold(day(16));
    assert_eq!((f.pending, f.debt), (900, 0));
    let r = referred_refund("nr1", 10_000, day(20));
    refunded(&mut run, &[&p, &r], day(20));
    let f = run.fold(day(40));
    assert_eq!((f.available, f.pending, f.debt), (0, 0, 100));
    assert_invariant(run.movements(), &f);
}
