//! Scenarios and properties of the points ledger, on dates the tests choose.

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;

use super::config::{Expiry, ExpiryMode, NegativeBalance, PointsRules};
use super::earn::{Purchase, clawback_for_refund, clawback_movement, earn_for_purchase};
use super::ledger::{Folded, Movement, MovementKind, fold};
use super::redeem::{RedeemError, Request, redeem};
use crate::domain::programme::sample;

fn day(n: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
        .single()
        .expect("date")
        + Duration::days(n)
}

fn mv(id: &str, at: i64, kind: MovementKind, amount: i64) -> Movement {
    Movement {
        id: id.to_owned(),
        at: day(at),
        kind,
        amount,
        reason: String::new(),
        source_event: id.to_owned(),
        programme_version: "v1".to_owned(),
    }
}

/// An earn on day `at` for `order`, available after `pending` days, expiring on day `exp`.
fn earn(id: &str, at: i64, amount: i64, order: &str, pending: i64, exp: Option<i64>) -> Movement {
    let kind = MovementKind::Earn {
        available_at: day(at + pending),
        expires_at: exp.map(day),
        order_id: Some(order.to_owned()),
    };
    mv(id, at, kind, amount)
}

fn redeem_mv(id: &str, at: i64, amount: i64) -> Movement {
    let kind = MovementKind::Redeem {
        redemption_id: id.to_owned(),
    };
    mv(&format!("r:{id}"), at, kind, amount)
}

fn cancel_mv(id: &str, at: i64, amount: i64) -> Movement {
    let kind = MovementKind::CancelRedemption {
        redemption_id: id.to_owned(),
    };
    mv(&format!("c:{id}"), at, kind, amount)
}

fn clawback_mv(id: &str, at: i64, order: &str, amount: i64) -> Movement {
    let kind = MovementKind::Clawback {
        order_id: order.to_owned(),
    };
    mv(id, at, kind, amount)
}

fn rolling() -> Expiry {
    Expiry::default()
}

fn rules() -> PointsRules {
    PointsRules::parse(
        "[earn]\nper_currency_unit = 1\ncurrency_unit_minor = 100\npending_days = 14\nfirst_order_bonus = 500\n[earn.category_multipliers]\nelectronics = 0.5\n[earn.tier_multipliers]\ngold = 1.5\n[[reward]]\nid = \"coffee\"\nname = \"A free coffee\"\ncost = 300\nmin_tier = \"silver\"\n",
    )
    .expect("valid rules")
}

/// balance = Σ lots = Σ movements applied (with derived expiries), less debt.
pub(super) fn assert_invariant(movements: &[Movement], f: &Folded) {
    let live: i64 = f
        .lots
        .iter()
        .filter(|l| l.expired_at.is_none())
        .map(|l| l.remaining)
        .sum();
    assert_eq!(f.available + f.pending, live, "balance = Σ open lots");
    let mut seen = std::collections::BTreeSet::new();
    let applied: i64 = movements
        .iter()
        .filter(|m| seen.insert(m.id.clone()) && !f.ignored.contains(&m.id))
        .map(Movement::signed)
        .sum();
    let expired: i64 = f.expiries().map(|p| p.amount).sum();
    assert_eq!(
        applied + expired,
        f.available + f.pending - f.debt,
        "Σ movements = balance − debt"
    );
    let posted: i64 = f.postings.iter().map(|p| p.amount).sum();
    assert_eq!(posted, f.available + f.pending - f.debt, "Σ postings");
    for l in &f.lots {
        assert!(l.remaining >= 0 && l.remaining <= l.amount, "{l:?}");
        assert!(l.expired_at.is_none_or(|e| e >= l.earned_at), "{l:?}");
    }
    assert!(f.available >= 0 && f.pending >= 0 && f.debt >= 0, "{f:?}");
    assert!(
        f.debt == 0 || f.available == 0,
        "spendable points pay the debt: {f:?}"
    );
}

#[test]
fn pending_then_available() {
    let ms = [earn("e1", 0, 100, "o1", 14, Some(365))];
    let f = fold(&ms, day(13), &rolling());
    assert_eq!((f.available, f.pending), (0, 100));
    let f = fold(&ms, day(14), &rolling());
    assert_eq!((f.available, f.pending), (100, 0));
    assert_invariant(&ms, &f);
}

#[test]
fn spending_takes_the_closest_expiry_first_and_expiry_takes_the_rest() {
    let ms = [
        earn("late", 0, 100, "o1", 0, Some(300)),
        earn("soon", 1, 100, "o2", 0, Some(100)),
        redeem_mv("x", 2, 150),
    ];
    let f = fold(&ms, day(50), &rolling());
    assert_eq!(f.available, 50);
    let soon = f.lots.iter().find(|l| l.id == "soon").expect("lot");
    assert_eq!(
        soon.remaining, 0,
        "the lot closest to expiry is spent first"
    );
    let f = fold(&ms, day(300), &rolling());
    assert_eq!(f.available, 0);
    assert_eq!(f.expiries().map(|p| p.amount).sum::<i64>(), -50);
    assert_invariant(&ms, &f);
}

#[test]
fn inactivity_expires_everything_after_idle_months() {
    let expiry = Expiry {
        mode: ExpiryMode::Inactivity,
        months: 6,
        ..Expiry::default()
    };
    let ms = [
        earn("a", 0, 100, "o1", 0, None),
        earn("b", 100, 50, "o2", 0, None),
    ];
    let f = fold(&ms, day(250), &expiry);
    assert_eq!(
        f.available, 150,
        "a purchase on day 100 keeps everything alive"
    );
    let due = expiry.inactive_after(day(100));
    assert!(f.lots.iter().all(|l| l.due_at == due), "{:?}", f.lots);
    let f = fold(&ms, day(300), &expiry);
    assert_eq!(f.available, 0);
    assert_invariant(&ms, &f);
    // A bonus earned while idle gets its own six months; it never expires before it was earned.
    let mut idle = ms.to_vec();
    let bonus = MovementKind::Earn {
        available_at: day(290),
        expires_at: None,
        order_id: None,
    };
    idle.push(mv("bonus", 290, bonus, 30));
    let f = fold(&idle, day(400), &expiry);
    assert_eq!(f.available, 30);
    let f = fold(&idle, day(480), &expiry);
    assert_eq!(f.available, 0);
    for l in &f.lots {
        assert!(l.expired_at >= Some(l.earned_at), "{l:?}");
    }
    assert_invariant(&idle, &f);
}

#[test]
fn full_refund_inside_the_pending_period_cancels_the_earn() {
    let p = rules();
    let purchase = Purchase {
        event_id: "ev1",
        order_id: "o1",
        at: day(0),
        amount_minor: 12_345,
        category: "books",
        first_order: true,
    };
    let mut ms = earn_for_purchase(&p, &purchase, "member", "v1");
    assert_eq!(
        ms.iter().map(|m| m.amount).collect::<Vec<_>>(),
        vec![123, 500]
    );
    let f = fold(&ms, day(3), &p.expiry);
    assert_eq!((f.available, f.pending), (0, 623));
    let (earned, clawed) = f.order_points(&ms, "o1");
    ms.extend(clawback_movement(
        "ev2",
        "o1",
        day(3),
        earned,
        clawed,
        12_345,
        12_345,
        "v1",
    ));
    let f = fold(&ms, day(30), &p.expiry);
    assert_eq!((f.available, f.pending, f.debt), (0, 0, 0));
    assert_invariant(&ms, &f);
}

#[test]
fn partial_refunds_take_back_in_proportion_and_never_more() {
    assert_eq!(clawback_for_refund(100, 0, 10_000, 2_500), 25);
    assert_eq!(clawback_for_refund(100, 25, 10_000, 5_000), 25);
    assert_eq!(clawback_for_refund(100, 50, 10_000, 10_000), 50);
    assert_eq!(clawback_for_refund(100, 100, 10_000, 20_000), 0);
    assert_eq!(clawback_for_refund(3, 0, 10_000, 1), 1, "rounds up");
    assert_eq!(clawback_for_refund(0, 0, 10_000, 10_000), 0);
}

#[test]
fn clawback_after_spending_records_the_shortfall() {
    let ms = [
        earn("e1", 0, 100, "o1", 0, None),
        redeem_mv("x", 1, 80),
        clawback_mv("cb", 2, "o1", 100),
    ];
    let f = fold(&ms, day(3), &rolling());
    assert_eq!((f.available, f.debt), (0, 80));
    assert_eq!(f.balance(NegativeBalance::Debt), 0);
    assert_eq!(f.balance(NegativeBalance::Negative), -80);
    assert_invariant(&ms, &f);
    // A later earn pays the debt first.
    let mut more = ms.to_vec();
    more.push(earn("e2", 4, 100, "o2", 0, None));
    let f = fold(&more, day(5), &rolling());
    assert_eq!((f.available, f.debt), (20, 0));
    assert_invariant(&more, &f);
}

#[test]
fn cancel_gives_back_to_the_same_lots_unless_expired() {
    let ms = [
        earn("a", 0, 100, "o1", 0, Some(10)),
        earn("b", 0, 100, "o2", 0, Some(100)),
        redeem_mv("x", 1, 150),
        cancel_mv("x", 20, 150),
    ];
    let f = fold(&ms, day(21), &rolling());
    // Lot a expired on day 10 with nothing in it; its 100 come back and expire at once.
    assert_eq!(f.available, 100);
    let b = f.lots.iter().find(|l| l.id == "b").expect("lot b");
    assert_eq!(b.remaining, 100);
    assert_invariant(&ms, &f);
    // A second cancel, or a cancel of the wrong amount, does nothing.
    let mut twice = ms.to_vec();
    twice.push(mv(
        "c2",
        22,
        MovementKind::CancelRedemption {
            redemption_id: "x".into(),
        },
        150,
    ));
    let f = fold(&twice, day(23), &rolling());
    assert_eq!(f.available, 100);
    assert_eq!(f.ignored, vec!["c2".to_owned()]);
}

#[test]
fn redemption_is_refused_above_the_balance_and_by_tier() {
    let p = rules();
    let programme = sample();
    let ms = [earn("e1", 0, 400, "o1", 0, None)];
    let f = fold(&ms, day(1), &p.expiry);
    let req = |points, reward| Request {
        redemption_id: "k1",
        source_event: "k1",
        at: day(1),
        points,
        reward,
    };
    assert_eq!(
        redeem(&f, &p, &programme, "member", &req(401, None), "v1"),
        Err(RedeemError::Insufficient {
            requested: 401,
            available: 400
        })
    );
    assert!(matches!(
        redeem(
            &f,
            &p,
            &programme,
            "member",
            &req(300, Some("coffee")),
            "v1"
        ),
        Err(RedeemError::TierTooLow { .. })
    ));
    assert!(matches!(
        redeem(&f, &p, &programme, "gold", &req(200, Some("coffee")), "v1"),
        Err(RedeemError::CostMismatch { .. })
    ));
    assert_eq!(
        redeem(&f, &p, &programme, "gold", &req(0, None), "v1"),
        Err(RedeemError::NotPositive(0))
    );
    let m = redeem(&f, &p, &programme, "gold", &req(300, Some("coffee")), "v1")
        .expect("enough points, tier high enough");
    let f = fold(&[ms[0].clone(), m], day(2), &p.expiry);
    assert_eq!(f.available, 100);
}

#[test]
fn multipliers_and_rounding() {
    let p = rules();
    let buy = |amount, category| Purchase {
        event_id: "ev",
        order_id: "o",
        at: day(0),
        amount_minor: amount,
        category,
        first_order: false,
    };
    let pts = |ms: Vec<Movement>| ms.iter().map(|m| m.amount).sum::<i64>();
    assert_eq!(
        pts(earn_for_purchase(&p, &buy(999, "books"), "member", "v")),
        9
    );
    assert_eq!(
        pts(earn_for_purchase(
            &p,
            &buy(1000, "electronics"),
            "gold",
            "v"
        )),
        7
    );
    assert_eq!(
        pts(earn_for_purchase(&p, &buy(50, "books"), "member", "v")),
        0
    );
    let ms = earn_for_purchase(&p, &buy(1000, "electronics"), "gold", "v");
    assert!(
        ms[0].reason.contains("×1.5 for tier gold"),
        "{}",
        ms[0].reason
    );
}

/// Random movement streams over a few lots and orders.
fn arb_movement() -> impl Strategy<Value = Movement> {
    let id = 0u8..40;
    prop_oneof![
        4 => (id.clone(), 0i64..60, 0i64..500, 0u8..4, 0i64..20, prop::option::of(0i64..120))
            .prop_map(|(i, at, amt, o, pend, exp)| earn(
                &format!("e{i}"), at, amt, &format!("o{o}"), pend, exp.map(|e| at + e)
            )),
        3 => (id.clone(), 0i64..60, 0i64..400).prop_map(|(i, at, amt)| redeem_mv(&format!("{i}"), at, amt)),
        1 => (id.clone(), 0i64..60, 0i64..400).prop_map(|(i, at, amt)| cancel_mv(&format!("{i}"), at, amt)),
        2 => (id.clone(), 0i64..60, 0u8..4, 0i64..300).prop_map(|(i, at, o, amt)| clawback_mv(
            &format!("cb{i}"), at, &format!("o{o}"), amt
        )),
        1 => (id, 0i64..60, -200i64..200, prop::option::of(0i64..90)).prop_map(|(i, at, amt, exp)| mv(
            &format!("adj{i}"), at, MovementKind::Adjust { expires_at: exp.map(|e| day(at + e)) }, amt
        )),
        1 => (0i64..60).prop_map(|at| mv(&format!("act{at}"), at, MovementKind::Activity, 0)),
    ]
}

/// Streams where an id means one movement (a resend is an exact copy; copies are added apart).
fn arb_movements(max: usize) -> impl Strategy<Value = Vec<Movement>> {
    prop::collection::vec(arb_movement(), 0..max).prop_map(|ms| {
        let mut seen = std::collections::BTreeSet::new();
        ms.into_iter()
            .filter(|m| seen.insert(m.id.clone()))
            .collect()
    })
}

fn arb_expiry() -> impl Strategy<Value = Expiry> {
    prop_oneof![
        Just(Expiry::default()),
        (1u32..4).prop_map(|months| Expiry {
            mode: ExpiryMode::Inactivity,
            months,
            ..Expiry::default()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Never negative; balance = Σ open lots = Σ movements − debt; in any order, with duplicates.
    #[test]
    fn invariant_holds_in_any_order_with_duplicates(
        ms in arb_movements(40),
        dups in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        seed in any::<u64>(),
        now in 0i64..200,
        expiry in arb_expiry(),
    ) {
        let f = fold(&ms, day(now), &expiry);
        assert_invariant(&ms, &f);
        let mut shuffled = ms.clone();
        if !ms.is_empty() {
            for d in &dups {
                shuffled.push(ms[d.index(ms.len())].clone());
            }
        }
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
        rand::seq::SliceRandom::shuffle(shuffled.as_mut_slice(), &mut rng);
        let g = fold(&shuffled, day(now), &expiry);
        prop_assert_eq!(&f, &g);
    }

    /// Earning then refunding the whole order leaves none of that order's points.
    #[test]
    fn earn_then_full_refund_leaves_nothing(
        amount in 100i64..10_000_000,
        first in any::<bool>(),
        others in arb_movements(20),
        refund_day in 0i64..40,
    ) {
        let p = rules();
        let purchase = Purchase {
            event_id: "buy", order_id: "mine", at: day(0), amount_minor: amount,
            category: "books", first_order: first,
        };
        let mut ms = earn_for_purchase(&p, &purchase, "member", "v1");
        let earned: i64 = ms.iter().map(|m| m.amount).sum();
        ms.extend(others);
        let before = fold(&ms, day(refund_day), &p.expiry);
        let (e, c) = before.order_points(&ms, "mine");
        prop_assert_eq!(e, earned);
        ms.extend(clawback_movement("refund", "mine", day(refund_day), e, c, amount, amount, "v1"));
        let after = fold(&ms, day(refund_day), &p.expiry);
        assert_invariant(&ms, &after);
        let mine: i64 = after.lots.iter()
            .filter(|l| l.order_id.as_deref() == Some("mine")).map(|l| l.remaining).sum();
        prop_assert_eq!(mine, 0);
        let (_, clawed) = after.order_points(&ms, "mine");
        prop_assert_eq!(clawed, earned);
        // The points came off the balance, or were recorded as debt.
        prop_assert_eq!(
            before.available + before.pending - before.debt - earned,
            after.available + after.pending - after.debt
        );
    }

    /// Spending and expiry take the lots closest to expiry first (lots that never expire last):
    /// once a lot keeps points, every later-expiring lot is untouched.
    #[test]
    fn spending_takes_oldest_expiry_first(
        lots in prop::collection::vec((1i64..200, prop::option::of(1i64..300)), 1..10),
        spend in 0i64..1500,
        now in 0i64..320,
    ) {
        let mut ms: Vec<Movement> = lots.iter().enumerate()
            .map(|(i, (amt, exp))| earn(&format!("e{i}"), 0, *amt, &format!("o{i}"), 0, *exp))
            .collect();
        let total: i64 = lots.iter().map(|(a, _)| a).sum();
        ms.push(redeem_mv("x", 0, spend.min(total)));
        let f = fold(&ms, day(now), &rolling());
        assert_invariant(&ms, &f);
        // The order the rule asks for, computed here rather than taken from the fold.
        let mut by_expiry: Vec<_> = f.lots.iter().collect();
        by_expiry.sort_by_key(|l| (l.expires_at.is_none(), l.expires_at, l.id.clone()));
        let mut kept = false;
        for l in by_expiry {
            let untouched_by_spend = f.postings.iter()
                .all(|p| p.movement != "r:x" || p.lot.as_deref() != Some(l.id.as_str()));
            if kept {
                prop_assert!(untouched_by_spend, "{:?} spent after a lot kept points", l.id);
            }
            let expired_with_points = f.postings.iter()
                .any(|p| p.movement == format!("expire:{}", l.id) && p.amount < 0);
            if l.remaining > 0 || expired_with_points {
                kept = true;
            }
        }
    }
}

#[test]
fn survey_anniversary_and_referral_bonuses() {
    let mut p = rules();
    p.earn.survey_bonus = 50;
    p.earn.anniversary_bonus = 200;
    p.earn.referral_bonus = 1000;
    let s = super::earn::survey_bonus(&p, "sv1", day(3), "v1").expect("bonus");
    assert_eq!((s.id.as_str(), s.amount), ("sv1:survey", 50));
    let a = super::earn::anniversary_bonuses(&p, "ev1", day(0), day(800), "v1");
    assert_eq!(
        a.iter().map(|m| (m.id.as_str(), m.at)).collect::<Vec<_>>(),
        vec![("anniversary:1", day(365)), ("anniversary:2", day(730))]
    );
    let r = |cleared, now| super::earn::referral_bonus(&p, "friend", "ev9", cleared, now, "v1");
    assert!(r(None, day(100)).is_none(), "first order not cleared");
    assert!(r(Some(day(20)), day(19)).is_none(), "not yet");
    let m = r(Some(day(20)), day(21)).expect("due");
    assert_eq!(
        (m.id.as_str(), m.amount, m.at),
        ("referral:friend", 1000, day(20))
    );
    let ms = [s, m, a[0].clone(), a[1].clone()];
    // Bonuses expire by the rules (12 months rolling here); anniversary 2 is after `now`.
    let f = fold(&ms, day(366), &p.expiry);
    assert_eq!(f.available, 50 + 1000 + 200);
    assert_eq!(f.ignored, vec!["anniversary:2".to_owned()]);
    p.earn.survey_bonus = 0;
    assert!(super::earn::survey_bonus(&p, "sv2", day(3), "v1").is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Redemptions checked one at a time on the current fold (as the store will, under the
    /// customer's row lock) never spend more than is available: an accepted one lowers the
    /// balance by exactly its points and adds no debt; a refused one asked for more than the
    /// balance net of debt.
    #[test]
    fn accepted_redemptions_never_overspend(
        base in arb_movements(30),
        requests in prop::collection::vec((0i64..5, 1i64..400), 1..30),
    ) {
        let p = rules();
        let programme = sample();
        let mut ms = base;
        let mut t = 60;
        for (i, (gap, points)) in requests.into_iter().enumerate() {
            t += gap;
            let before = fold(&ms, day(t), &p.expiry);
            let key = format!("k{i}");
            let req = Request { redemption_id: &key, source_event: &key, at: day(t), points, reward: None };
            match redeem(&before, &p, &programme, "member", &req, "v1") {
                Ok(m) => {
                    ms.push(m);
                    let after = fold(&ms, day(t), &p.expiry);
                    prop_assert_eq!(after.debt, before.debt);
                    prop_assert_eq!(after.available, before.available - points);
                    assert_invariant(&ms, &after);
                }
                Err(RedeemError::Insufficient { requested, available }) => {
                    prop_assert_eq!(requested, points);
                    prop_assert!(points > before.available - before.debt);
                    prop_assert_eq!(available, (before.available - before.debt).max(0));
                }
                Err(e) => prop_assert!(false, "unexpected refusal {e}"),
            }
        }
    }
}

#[test]
fn points_released_later_pay_the_debt_first() {
    let ms = [
        earn("e1", 0, 100, "o1", 0, None),
        earn("e2", 5, 60, "o2", 14, None),
        redeem_mv("x", 6, 100),
        clawback_mv("cb", 7, "o1", 100),
    ];
    let f = fold(&ms, day(10), &rolling());
    assert_eq!((f.available, f.pending, f.debt), (0, 60, 100));
    let f = fold(&ms, day(19), &rolling());
    assert_eq!((f.available, f.pending, f.debt), (0, 0, 40));
    let settled: Vec<_> = f
        .postings
        .iter()
        .filter(|p| p.movement == "settle:e2")
        .map(|p| (p.lot.as_deref(), p.amount, p.at))
        .collect();
    assert_eq!(
        settled,
        vec![(Some("e2"), -60, day(19)), (None, 60, day(19))]
    );
    assert_invariant(&ms, &f);
}

#[test]
fn changes_and_expiring_lots() {
    use super::summary::{Expiring, changes, expiring};
    let ms = [
        earn("e1", 0, 100, "o1", 14, Some(40)),
        earn("e2", 1, 50, "o2", 0, Some(200)),
        clawback_mv("cb", 2, "o1", 30),
        redeem_mv("x", 20, 60),
    ];
    let f = fold(&ms, day(45), &rolling());
    let c = changes(&ms, &f, day(0), day(45));
    assert_eq!((c.earned, c.clawed_back, c.redeemed), (50, 30, 60));
    // e1 was released on day 14 with 70 left; the redemption took 60 of them (closest expiry),
    // and its last 10 expired on day 40. e2 kept its 50.
    assert_eq!((c.released, c.expired), (70, 10));
    let c = changes(&ms, &f, day(-1), day(10));
    assert_eq!((c.earned, c.released, c.redeemed), (150, 0, 0));
    assert_eq!(
        expiring(&f, day(45), 200),
        vec![Expiring {
            lot: "e2".into(),
            amount: 50,
            at: day(200)
        }]
    );
    assert!(expiring(&f, day(45), 30).is_empty());
}
