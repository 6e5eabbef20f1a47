//! Refunds: full and partial, and what they take back.

use super::*;

#[test]
fn refunds_reverse_spend_and_orders_proportionally() {
    let p = sample();
    let events = vec![
        purchase("e1", "c", 10_000, day(0)),
        purchase("e2", "c", 20_000, day(1)),
        refund("r1", "c", "o-e1", 10_000, day(2)), // full
        refund("r2", "c", "o-e2", 5_000, day(3)),  // a quarter
    ];
    let (_, m, _) = run(None, &events, &p, day(4));
    assert_eq!(m.lifetime_spend_minor, 15_000);
    assert!((m.orders - 0.75).abs() < 1e-9, "{}", m.orders);
    assert_eq!(m.unmatched_refunds, 0);
    // A fully refunded order is no purchase day: one purchase day left, no repeat purchase.
    assert_eq!(m.repeat_purchases, 0);
}

#[test]
fn a_refund_for_an_unknown_order_is_applied_and_flagged_until_the_order_arrives() {
    let p = sample();
    let (state, m, _) = run(
        None,
        &[
            purchase("e1", "c", 10_000, day(0)),
            refund("r1", "c", "o-x", 3_000, day(1)),
        ],
        &p,
        day(2),
    );
    assert_eq!(m.lifetime_spend_minor, 7_000);
    assert_eq!(m.unmatched_refunds, 1);
    assert_eq!(m.orders, 1.0);
    // The order shows up late: the refund now matches it, as if it had come first.
    let (_, m, _) = run(
        Some(state),
        &[purchase_with(
            "e2",
            "c",
            "o-x",
            day(0),
            PurchaseSpec {
                amount: 6_000,
                ..Default::default()
            },
        )],
        &p,
        day(2),
    );
    assert_eq!(m.unmatched_refunds, 0);
    assert_eq!(m.lifetime_spend_minor, 13_000);
    assert!((m.orders - 1.5).abs() < 1e-9);
}
