//! Earning: multipliers, rounding, pending and release.

use super::*;

#[test]
fn earning_applies_category_and_tier_multipliers_then_the_rounding_rule() {
    let multipliers = "[earn.category_multipliers]\nelectronics = 0.5\ndaily_goods = 2.0\n[earn.tier_multipliers]\ngold = 1.5\n";
    for (rounding, daily, electronics) in [("down", 246, 61), ("nearest", 247, 62), ("up", 247, 62)]
    {
        let mut run = Run::new(rolling(&format!(
            "rounding = \"{rounding}\"\n{multipliers}"
        )));
        // 123.45 units × 2.0 = 246.9; 123.45 × 0.5 = 61.725.
        run.apply(
            &[
                bought("d", "od", 12_345, "daily_goods", day(0)),
                bought("e", "oe", 12_345, "electronics", day(0)),
            ],
            day(0),
        );
        assert_eq!(run.movement("d:earn").amount, daily, "{rounding}");
        assert_eq!(run.movement("e:earn").amount, electronics, "{rounding}");
        let reason = &run.movement("e:earn").reason;
        assert!(reason.contains("×0.5 for electronics"), "{reason}");
    }

    // Three orders make the customer gold; the next order earns ×1.5, the ones before did not.
    let mut run = Run::new(rolling(multipliers));
    run.apply(
        &[
            bought("g1", "o1", 40_000, "books", day(0)),
            bought("g2", "o2", 40_000, "books", day(1)),
            bought("g3", "o3", 40_000, "books", day(2)),
        ],
        day(2),
    );
    assert_eq!(run.state().tier(), "gold");
    assert_eq!(
        run.movement("g3:earn").amount,
        400,
        "tier when the order was applied"
    );
    run.apply(&[bought("g4", "o4", 10_001, "books", day(3))], day(3));
    let earn = run.movement("g4:earn");
    assert_eq!(earn.amount, 150, "100.01 × 1.5 = 150.015, rounded down");
    assert!(
        earn.reason.contains("×1.5 for tier gold"),
        "{}",
        earn.reason
    );
    assert_eq!(earn.programme_version, run.programme.version);
    assert_eq!(earn.source_event, "g4");
}

#[test]
fn earned_points_are_pending_until_the_return_window_passes_then_released() {
    let mut run = Run::new(rolling("pending_days = 14"));
    let out = run.apply(&[purchase("p1", "c1", 10_000, day(0))], day(0));
    let (c, available, pending, debt) = one_change(&out);
    assert_eq!(
        (c.earned, c.released, available, pending, debt),
        (100, 0, 0, 100, 0)
    );
    assert!(
        run.state().status.next_check_at <= Some(day(14)),
        "the sweeper comes back by the release: {:?}",
        run.state().status.next_check_at
    );

    // A redemption before the release finds nothing to spend.
    run.apply(&[redemption("r1", "early", 10, None, day(5))], day(5));
    assert!(
        matches!(
            run.outcomes()[..],
            [Outcome::Refused(Refusal::Redeem(
                RedeemError::Insufficient {
                    requested: 10,
                    available: 0
                }
            ))]
        ),
        "{:?}",
        run.outcomes()
    );

    let out = run.sweep(day(14) - Duration::seconds(1));
    assert!(changed(&out).is_empty(), "nothing new yet: {out:#?}");
    let out = run.sweep(day(14));
    let (c, available, pending, _) = one_change(&out);
    assert_eq!((c.earned, c.released, available, pending), (0, 100, 100, 0));
    let out = run.sweep(day(15));
    assert!(changed(&out).is_empty(), "released once: {out:#?}");
    assert_invariant(run.movements(), &run.fold(day(15)));
}

#[test]
fn an_event_dated_after_now_is_reported_once_now_reaches_it() {
    // A shop's clock ahead of ours (or an event-time clock stored with less precision than the
    // event): the earn is recorded but cannot count yet; it is reported when time reaches it,
    // not lost.
    let mut run = Run::new(rolling("pending_days = 0"));
    let ahead = day(0) + Duration::milliseconds(5);
    let out = run.apply(&[purchase("p1", "c1", 10_000, ahead)], day(0));
    assert!(changed(&out).is_empty(), "{out:#?}");
    let out = run.sweep(ahead);
    let (c, available, ..) = one_change(&out);
    assert_eq!((c.earned, available), (100, 100));
    let out = run.sweep(day(1));
    assert!(changed(&out).is_empty(), "reported once: {out:#?}");
}
