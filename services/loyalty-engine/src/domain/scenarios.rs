//! Scenario and property tests of the pure domain, on a clock the test controls.

use chrono::Duration;
use proptest::prelude::*;

use super::apply::{Changes, apply, override_tier, sweep};
use super::event::{DomainEvent, SurveyScore, TicketStatus};
use super::metrics::{BadExperience, Metrics, NpsCategory};
use super::motive::{Motive, motive};
use super::output::{Output, OutputKind};
use super::programme::{Programme, sample};
use super::segment::{Segment, segment};
use super::state::CustomerState;
use super::testkit::*;
use super::tier::{TierChangeKind, TierOverride};

fn run(
    state: Option<CustomerState>,
    events: &[DomainEvent],
    p: &Programme,
    now: chrono::DateTime<chrono::Utc>,
) -> (CustomerState, Metrics, Vec<Output>) {
    let changes = Changes {
        events: events.iter().collect(),
        referred: vec![],
    };
    apply(&cid("c"), state, &changes, p, None, now)
}

fn tier_changes(outputs: &[Output]) -> Vec<(String, String, TierChangeKind)> {
    outputs
        .iter()
        .filter_map(|o| match &o.kind {
            OutputKind::TierChanged {
                previous,
                new,
                change,
                ..
            } => Some((previous.clone(), new.clone(), *change)),
            _ => None,
        })
        .collect()
}

fn will_downgrade(
    outputs: &[Output],
) -> Option<(String, String, chrono::DateTime<chrono::Utc>, Vec<String>)> {
    outputs.iter().find_map(|o| match &o.kind {
        OutputKind::TierWillDowngrade {
            current,
            to,
            downgrade_at,
            to_keep,
            ..
        } => Some((current.clone(), to.clone(), *downgrade_at, to_keep.clone())),
        _ => None,
    })
}

// ---- refunds ----------------------------------------------------------------------------

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

// ---- tiers ------------------------------------------------------------------------------

#[test]
fn upgrade_is_immediate_then_grace_then_soft_landing() {
    let p = sample(); // silver 30k/2, gold 100k/3, platinum 300k/5 (not detractor); grace 30d
    let buys: Vec<DomainEvent> = (0..3)
        .map(|i| purchase(&format!("e{i}"), "c", 40_000, day(i)))
        .collect();
    let (state, _, out) = run(None, &buys, &p, day(2));
    assert_eq!(state.tier(), "gold");
    assert_eq!(
        tier_changes(&out),
        vec![("member".into(), "gold".into(), TierChangeKind::Upgrade)]
    );

    // Two refunds: 40k over 1 order left, which meets no tier above member.
    let (state, _, out) = run(
        Some(state),
        &[
            refund("r1", "c", "o-e0", 40_000, day(10)),
            refund("r2", "c", "o-e1", 40_000, day(10)),
        ],
        &p,
        day(10),
    );
    assert_eq!(state.tier(), "gold", "no drop during the grace period");
    let (current, to, at, keep) = will_downgrade(&out).expect("a TierWillDowngrade at once");
    assert_eq!(
        (current.as_str(), to.as_str()),
        ("gold", "silver"),
        "soft landing: one tier down"
    );
    assert_eq!(at, day(40));
    assert!(
        keep.iter().any(|k| k.contains("spend 60000 JPY more")),
        "{keep:?}"
    );
    assert!(keep.iter().any(|k| k.contains("2 more orders")), "{keep:?}");

    let (state, _, out) = sweep(state, &p, None, day(39));
    assert!(
        tier_changes(&out).is_empty() && will_downgrade(&out).is_none(),
        "still in grace: {out:?}"
    );
    assert_eq!(state.status.next_check_at.map(|t| t <= day(40)), Some(true));

    let (state, _, out) = sweep(state, &p, None, day(41));
    assert_eq!(state.tier(), "silver");
    assert_eq!(
        tier_changes(&out),
        vec![("gold".into(), "silver".into(), TierChangeKind::Downgrade)]
    );
    let changed = out
        .iter()
        .find(|o| matches!(o.kind, OutputKind::TierChanged { .. }))
        .expect("changed");
    assert_eq!(
        changed.effective_at,
        day(40),
        "effective when the grace ended"
    );
    let (_, to, at, _) = will_downgrade(&out).expect("the next step is announced");
    assert_eq!((to.as_str(), at), ("member", day(70)));

    let (state, _, out) = sweep(state, &p, None, day(71));
    assert_eq!(state.tier(), "member");
    assert_eq!(
        tier_changes(&out),
        vec![("silver".into(), "member".into(), TierChangeKind::Downgrade)]
    );
    assert!(state.status.tier.pending.is_none());
}

#[test]
fn requalifying_during_grace_cancels_the_downgrade() {
    let p = sample();
    let buys: Vec<DomainEvent> = (0..2)
        .map(|i| purchase(&format!("e{i}"), "c", 20_000, day(i)))
        .collect();
    let (state, _, _) = run(None, &buys, &p, day(1));
    assert_eq!(state.tier(), "silver");
    let (state, _, out) = run(
        Some(state),
        &[refund("r", "c", "o-e1", 20_000, day(5))],
        &p,
        day(5),
    );
    assert!(will_downgrade(&out).is_some());
    let (state, _, out) = run(
        Some(state),
        &[purchase("e9", "c", 20_000, day(10))],
        &p,
        day(10),
    );
    assert!(
        out.iter()
            .all(|o| !matches!(o.kind, OutputKind::TierChanged { .. }))
    );
    assert!(state.status.tier.pending.is_none());
    let (state, _, out) = sweep(state, &p, None, day(60));
    assert_eq!(state.tier(), "silver");
    assert!(tier_changes(&out).is_empty());
}

#[test]
fn without_soft_landing_the_drop_goes_straight_to_the_qualifying_tier() {
    let mut p = sample();
    p.qualification.soft_landing = false;
    let buys: Vec<DomainEvent> = (0..3)
        .map(|i| purchase(&format!("e{i}"), "c", 40_000, day(i)))
        .collect();
    let (state, _, _) = run(None, &buys, &p, day(2));
    let refunds: Vec<DomainEvent> = (0..3)
        .map(|i| refund(&format!("r{i}"), "c", &format!("o-e{i}"), 40_000, day(5)))
        .collect();
    let (state, _, out) = run(Some(state), &refunds, &p, day(5));
    assert_eq!(will_downgrade(&out).map(|w| w.1), Some("member".to_owned()));
    let (state, _, _) = sweep(state, &p, None, day(36));
    assert_eq!(state.tier(), "member");
}

#[test]
fn purchases_leaving_the_rolling_window_start_a_downgrade() {
    let p = sample();
    let buys: Vec<DomainEvent> = (0..2)
        .map(|i| purchase(&format!("e{i}"), "c", 20_000, day(i)))
        .collect();
    let (state, _, _) = run(None, &buys, &p, day(1));
    assert_eq!(state.tier(), "silver");
    let next = state.status.next_check_at.expect("a next check");
    assert!(
        next <= day(365),
        "the sweeper must look when the first order leaves the window: {next}"
    );
    let (_, m, out) = sweep(state, &p, None, day(367));
    assert_eq!(m.qualifying_spend_minor, 0);
    assert_eq!(m.lifetime_spend_minor, 40_000);
    assert!(will_downgrade(&out).is_some(), "{out:?}");
}

#[test]
fn the_top_tier_requires_not_being_a_detractor() {
    let p = sample();
    let buys: Vec<DomainEvent> = (0..5)
        .map(|i| purchase(&format!("e{i}"), "c", 70_000, day(i)))
        .collect();
    let (state, _, _) = run(None, &buys, &p, day(5));
    assert_eq!(state.tier(), "platinum");
    let (state, m, out) = run(
        Some(state),
        &[survey("s1", "c", SurveyScore::Nps(3), day(6))],
        &p,
        day(6),
    );
    assert_eq!(m.nps_category, NpsCategory::Detractor);
    let (_, to, _, keep) = will_downgrade(&out).expect("platinum is at risk");
    assert_eq!(to, "gold");
    assert!(
        keep.iter().any(|k| k.contains("not a detractor")),
        "{keep:?}"
    );
    assert_eq!(state.tier(), "platinum");
}

#[test]
fn a_manual_override_holds_until_it_expires_then_the_rules_apply() {
    let p = sample();
    let (state, _, _) = run(None, &[purchase("e1", "c", 5_000, day(0))], &p, day(0));
    let manual = TierOverride {
        tier: "gold".into(),
        reason: "VIP complaint goodwill".into(),
        expires_at: day(10),
        set_at: day(1),
        set_by: "ops@example".into(),
    };
    let (state, _, out) = override_tier(state, manual, &p, None, day(1));
    assert_eq!(state.tier(), "gold");
    assert_eq!(
        tier_changes(&out),
        vec![("member".into(), "gold".into(), TierChangeKind::Override)]
    );
    let (state, _, out) = sweep(state, &p, None, day(5));
    assert!(tier_changes(&out).is_empty(), "{out:?}");
    assert!(state.status.next_check_at.is_some_and(|t| t <= day(10)));
    let (state, _, out) = sweep(state, &p, None, day(11));
    assert_eq!(
        tier_changes(&out),
        vec![(
            "gold".into(),
            "member".into(),
            TierChangeKind::OverrideExpired
        )]
    );
    assert_eq!(state.tier(), "member");
    assert!(state.status.tier.manual.is_none());
}

// ---- grid and motives -------------------------------------------------------------------

fn metrics_with(nps: Option<u8>, profit: i64) -> Metrics {
    let p = sample();
    let mut events = vec![purchase("e1", "c", profit.max(1), day(0))];
    if let Some(score) = nps {
        events.push(survey("s", "c", SurveyScore::Nps(score), day(1)));
    }
    let (_, m, _) = run(None, &events, &p, day(2));
    m
}

#[test]
fn grid_boundaries() {
    let rules = &sample().segments; // high value from 100,000
    let cases = [
        (Some(9), 100_000, Segment::Loyal),
        (Some(9), 99_999, Segment::Angel),
        (Some(10), 1, Segment::Angel),
        (Some(6), 100_000, Segment::Hostage),
        (Some(0), 99_999, Segment::Rebel),
        (Some(7), 100_000, Segment::HighValueNotLoyal),
        (Some(8), 99_999, Segment::Neutral),
        (None, 100_000, Segment::HighValueNotLoyal),
        (None, 10, Segment::Neutral),
    ];
    for (nps, spend, want) in cases {
        let (got, reason) = segment(&metrics_with(nps, spend), rules);
        assert_eq!(got, want, "nps {nps:?}, spend {spend}: {reason}");
    }
}

#[test]
fn without_nps_bad_experiences_make_a_detractor() {
    let p = sample();
    let mut events = vec![purchase("e1", "c", 150_000, day(0))];
    events.push(ticket(
        "t1",
        "c",
        "T1",
        TicketStatus::Reopened,
        day(1),
        TicketSpec::default(),
    ));
    events.push(ticket(
        "t2",
        "c",
        "T2",
        TicketStatus::Resolved,
        day(2),
        TicketSpec {
            csat: Some(1),
            ..Default::default()
        },
    ));
    let (state, m, out) = run(None, &events, &p, day(3));
    assert_eq!(m.bad_experiences, 2);
    assert_eq!(state.status.segment, Some(Segment::Hostage));
    assert!(out.iter().any(|o| matches!(
        o.kind,
        OutputKind::SegmentChanged {
            new: Segment::Hostage,
            ..
        }
    )));
}

#[test]
fn a_hostage_appears_when_a_big_spender_answers_nps_3() {
    let p = sample();
    let (state, _, _) = run(None, &[purchase("e1", "c", 150_000, day(0))], &p, day(0));
    assert_eq!(state.status.segment, Some(Segment::HighValueNotLoyal));
    let (state, _, out) = run(
        Some(state),
        &[survey("s1", "c", SurveyScore::Nps(3), day(1))],
        &p,
        day(1),
    );
    assert_eq!(state.status.segment, Some(Segment::Hostage));
    let change = out.iter().find_map(|o| match &o.kind {
        OutputKind::SegmentChanged {
            previous,
            new,
            reason,
        } => Some((*previous, *new, reason.clone())),
        _ => None,
    });
    let (previous, new, reason) = change.expect("SegmentChanged");
    assert_eq!(
        (previous, new),
        (Some(Segment::HighValueNotLoyal), Segment::Hostage)
    );
    assert!(reason.contains("NPS 3"), "{reason}");
}

fn orders_with(specs: &[PurchaseSpec]) -> Metrics {
    let p = sample();
    let events: Vec<DomainEvent> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            purchase_with(
                &format!("e{i}"),
                "c",
                &format!("o{i}"),
                day(i as i64 * 7),
                s.clone(),
            )
        })
        .collect();
    let (_, m, _) = run(None, &events, &p, day(specs.len() as i64 * 7));
    m
}

#[test]
fn motive_boundaries() {
    let rules = &sample().motives; // price-driven from 50% discounted spend
    let plain = PurchaseSpec {
        amount: 10_000,
        ..Default::default()
    };
    let discounted = PurchaseSpec {
        amount: 10_000,
        discount: 1_000,
        ..Default::default()
    };
    // 2 of 4 orders discounted: exactly 50%.
    let m = orders_with(&[
        discounted.clone(),
        discounted.clone(),
        plain.clone(),
        plain.clone(),
    ]);
    assert_eq!(motive(&m, rules).0, Motive::PriceDriven);
    // 1 of 3: 33%.
    let m = orders_with(&[discounted.clone(), plain.clone(), plain.clone()]);
    assert_ne!(motive(&m, rules).0, Motive::PriceDriven);
    // Two orders are too few to judge.
    let m = orders_with(&[discounted.clone(), discounted]);
    assert_eq!(motive(&m, rules).0, Motive::Unknown);
    // Programme rewards.
    let reward = PurchaseSpec {
        amount: 10_000,
        coupon: Some("PTS-500"),
        channel: "app",
        ..Default::default()
    };
    let app = PurchaseSpec {
        channel: "app",
        ..plain.clone()
    };
    let m = orders_with(&[reward, app.clone(), app.clone(), app.clone()]);
    let (got, signals) = motive(&m, rules);
    // 1 of 4 = 25% rewards (below 30%); all orders in the app, on rhythm: convenience.
    assert_eq!(got, Motive::Convenience, "{signals:?}");
    let reward = PurchaseSpec {
        amount: 10_000,
        coupon: Some("REWARD-1"),
        ..Default::default()
    };
    let m = orders_with(&[reward.clone(), reward, plain.clone(), plain]);
    // Coupons count as discounts too: 50% of spend → price-driven wins over programme-driven.
    assert_eq!(motive(&m, rules).0, Motive::PriceDriven);
}

#[test]
fn truly_loyal_needs_frequency_promotion_and_referrals() {
    let p = sample();
    let mut events: Vec<DomainEvent> = (0..6)
        .map(|i| purchase(&format!("e{i}"), "c", 10_000, day(i * 7)))
        .collect();
    events.push(survey("s", "c", SurveyScore::Nps(10), day(40)));
    let (state, m, _) = run(None, &events, &p, day(42));
    assert_eq!(motive(&m, &p.motives).0, Motive::Satisfied);
    let changes = Changes {
        events: vec![],
        referred: vec![(cid("friend"), &events[0])],
    };
    let (_, m, _) = apply(&cid("c"), Some(state), &changes, &p, None, day(42));
    assert_eq!(m.referrals, 1);
    assert_eq!(motive(&m, &p.motives).0, Motive::TrulyLoyal);
}

// ---- service ----------------------------------------------------------------------------

#[test]
fn bad_experiences_count_each_ticket_once_in_a_sliding_window() {
    let p = sample(); // 90-day window, aging after 7 days
    let bad = TicketSpec {
        escalated: true,
        sla_breached: true,
        csat: Some(1),
        sentiment: Some(-0.9),
    };
    let events = vec![
        ticket(
            "t1",
            "c",
            "T1",
            TicketStatus::Opened,
            day(0),
            TicketSpec::default(),
        ),
        ticket("t2", "c", "T1", TicketStatus::Reopened, day(1), bad),
        ticket(
            "t3",
            "c",
            "T1",
            TicketStatus::Closed,
            day(2),
            TicketSpec::default(),
        ),
        ticket(
            "t4",
            "c",
            "T2",
            TicketStatus::Opened,
            day(50),
            TicketSpec::default(),
        ),
    ];
    let (state, m, _) = run(None, &events, &p, day(52));
    assert_eq!(m.bad_experiences, 1, "T1 once, T2 not yet aged");
    assert_eq!(m.open_tickets, 1);
    let (state, m, _) = sweep(state, &p, None, day(58));
    assert_eq!(m.bad_experiences, 2, "T2 is now an aging open ticket");
    assert!(
        m.bad_experience_kinds
            .contains(&BadExperience::AgingOpenTicket)
    );
    assert!((m.oldest_open_ticket_days.unwrap_or(0.0) - 8.0).abs() < 1e-9);
    let (_, m, _) = sweep(state, &p, None, day(95));
    assert_eq!(
        m.bad_experiences, 1,
        "T1 left the window; T2 still open and aging"
    );
}

#[test]
fn overdue_follows_the_customers_own_rhythm_and_category() {
    let p = sample(); // daily_goods 7 days, electronics 365, overdue after 2x
    let weekly: Vec<DomainEvent> = (0..5)
        .map(|i| purchase(&format!("e{i}"), "c", 1_000, day(i * 7)))
        .collect();
    let (_, m, _) = run(None, &weekly, &p, day(28 + 13));
    assert!((m.expected_interval_days - 7.0).abs() < 1e-9);
    assert!(!m.overdue);
    let (_, m, _) = run(None, &weekly, &p, day(28 + 15));
    assert!(m.overdue);
    let tv = purchase_with(
        "tv",
        "c",
        "o-tv",
        day(0),
        PurchaseSpec {
            amount: 90_000,
            category: "electronics",
            ..Default::default()
        },
    );
    let (_, m, _) = run(None, &[tv], &p, day(200));
    assert_eq!(m.main_category.as_deref(), Some("electronics"));
    assert!(!m.overdue, "a TV buyer is not overdue after 200 days");
}

#[test]
fn spend_trend_compares_the_recent_period_with_the_one_before() {
    let p = sample(); // 90-day periods
    let events = vec![
        purchase("a", "c", 30_000, day(10)),
        purchase("b", "c", 10_000, day(100)),
    ];
    let (_, m, _) = run(None, &events, &p, day(120));
    assert_eq!(
        (m.recent_spend_minor, m.previous_spend_minor),
        (10_000, 30_000)
    );
    assert!((m.spend_trend.unwrap_or(0.0) - 1.0 / 3.0).abs() < 1e-9);
}

// ---- order independence and idempotence -------------------------------------------------

fn arbitrary_events() -> impl Strategy<Value = Vec<DomainEvent>> {
    let one = (0u8..6, 0i64..400, 1i64..50_000, 0usize..6, 0u8..11)
        .prop_map(|(kind, d, amount, k, score)| (kind, d, amount, k, score));
    prop::collection::vec(one, 1..25).prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (kind, d, amount, k, score))| {
                let id = format!("ev{i}");
                let at = day(d);
                match kind {
                    0 | 1 => purchase_with(
                        &id,
                        "c",
                        &format!("o{k}"),
                        at,
                        PurchaseSpec {
                            amount,
                            discount: amount / 10 * i64::from(k % 2 == 0),
                            ..Default::default()
                        },
                    ),
                    2 => refund(&id, "c", &format!("o{k}"), amount / 3, at),
                    3 => ticket(
                        &id,
                        "c",
                        &format!("T{k}"),
                        [
                            TicketStatus::Opened,
                            TicketStatus::Reopened,
                            TicketStatus::Closed,
                        ][k % 3],
                        at,
                        TicketSpec {
                            escalated: k == 1,
                            csat: Some(1 + score % 5),
                            ..Default::default()
                        },
                    ),
                    4 => survey(&id, "c", SurveyScore::Nps(score), at),
                    _ => survey(&id, "c", SurveyScore::Csat(1 + score % 5), at),
                }
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_order_and_duplicates_give_the_same_state(events in arbitrary_events(), seed in any::<u64>()) {
        let p = sample();
        let now = day(420);
        let (reference, ref_metrics, _) = run(None, &events, &p, now);

        // Shuffle deterministically from the seed, and resend some events.
        let mut shuffled: Vec<DomainEvent> = events.clone();
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        let dups: Vec<DomainEvent> = shuffled.iter().step_by(3).cloned().collect();
        shuffled.extend(dups);

        let (once, metrics, _) = run(None, &shuffled, &p, now);
        prop_assert_eq!(&once, &reference);
        prop_assert_eq!(&metrics, &ref_metrics);

        // One event at a time, in the shuffled order: the same facts and metrics.
        let mut state = None;
        for e in &shuffled {
            let (s, _, _) = run(state, std::slice::from_ref(e), &p, now);
            state = Some(s);
        }
        let state = state.expect("at least one event");
        prop_assert_eq!(&state.facts, &reference.facts);
        prop_assert_eq!(Metrics::derive(&state.facts, &p, now), ref_metrics);
    }
}

#[test]
fn evaluation_as_of_the_past_ignores_later_events() {
    let p = sample();
    let events = vec![
        purchase("a", "c", 20_000, day(0)),
        purchase("b", "c", 20_000, day(10)),
    ];
    let (state, _, _) = run(None, &events, &p, day(10));
    let m = Metrics::derive(&state.facts, &p, day(5));
    assert_eq!(m.lifetime_spend_minor, 20_000);
    assert_eq!(m.orders, 1.0);
    let _ = Duration::days(1);
}

// ---- churn ------------------------------------------------------------------------------

mod churn_risk {
    use super::*;
    use crate::domain::churn::{self, ChurnRules, Level, Model, Play};
    use crate::domain::model::BgNbdParams;

    fn cdnow() -> Model {
        Model {
            version: 1,
            purchases: BgNbdParams::new(0.243, 4.414, 0.793, 2.426).expect("valid params"),
            spend: None,
        }
    }

    fn churn_outputs(out: &[Output]) -> Vec<(Option<Level>, Level, Play)> {
        out.iter()
            .filter_map(|o| match &o.kind {
                OutputKind::ChurnRiskChanged {
                    previous,
                    new,
                    play,
                    ..
                } => Some((*previous, *new, *play)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn levels_have_hysteresis() {
        let r = ChurnRules::default(); // medium 0.4, high 0.7, band 0.05
        assert_eq!(churn::level(0.39, None, &r), Level::Low);
        assert_eq!(churn::level(0.40, None, &r), Level::Medium);
        assert_eq!(churn::level(0.70, Some(Level::Low), &r), Level::High);
        // Falling just under a threshold keeps the level…
        assert_eq!(churn::level(0.68, Some(Level::High), &r), Level::High);
        assert_eq!(churn::level(0.37, Some(Level::Medium), &r), Level::Medium);
        // …clearing the band leaves it.
        assert_eq!(churn::level(0.64, Some(Level::High), &r), Level::Medium);
        assert_eq!(churn::level(0.34, Some(Level::Medium), &r), Level::Low);
        assert_eq!(churn::level(0.10, Some(Level::High), &r), Level::Low);
    }

    #[test]
    fn the_base_is_one_minus_p_alive_and_drivers_add_up() {
        let p = sample();
        // x = 2 repeat purchase days, then silence.
        let events: Vec<DomainEvent> = (0..3)
            .map(|i| purchase(&format!("e{i}"), "c", 5_000, day(i * 14)))
            .collect();
        let (_, m, _) = run(None, &events, &p, day(28 + 200));
        let model = cdnow();
        let a = churn::assess(&m, &p.churn, Some(&model));
        let s = churn::summary(&m).expect("a summary");
        let p_alive = model.purchases.p_alive(&s);
        assert_eq!(a.p_alive, Some(p_alive));
        assert!((a.base - (1.0 - p_alive)).abs() < 1e-12);
        let total: f64 = a.drivers.iter().map(|d| d.contribution).sum();
        assert!(
            (total - a.score).abs() < 1e-9,
            "contributions sum to the score"
        );
        assert_eq!(a.drivers[0].name, "inactivity");
    }

    #[test]
    fn service_drivers_raise_the_score_and_call_for_service_recovery() {
        let p = sample();
        let mut events: Vec<DomainEvent> = (0..4)
            .map(|i| purchase(&format!("e{i}"), "c", 5_000, day(i * 7)))
            .collect();
        let (calm, m_calm, _) = run(None, &events, &p, day(22));
        let calm_score = calm.status.churn.as_ref().map(|c| c.score).unwrap_or(1.0);
        events.push(ticket(
            "t1",
            "c",
            "T1",
            TicketStatus::Reopened,
            day(22),
            TicketSpec::default(),
        ));
        events.push(ticket(
            "t2",
            "c",
            "T2",
            TicketStatus::Resolved,
            day(22),
            TicketSpec {
                escalated: true,
                ..Default::default()
            },
        ));
        events.push(survey("s", "c", SurveyScore::Nps(2), day(22)));
        let (angry, m, out) = run(None, &events, &p, day(22));
        let a = churn::assess(&m, &p.churn, None);
        assert!(a.score > calm_score + 0.5, "{} vs {}", a.score, calm_score);
        assert!(m_calm.bad_experiences == 0 && m.bad_experiences == 2);
        let names: Vec<&str> = a.drivers.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names[..2],
            ["bad_experiences", "detractor_nps"],
            "{:?}",
            a.drivers
        );
        let status = angry.status.churn.expect("assessed");
        assert_eq!(status.level, Level::High);
        // Low spend and a detractor: a rebel, so the playbook.
        assert_eq!(angry.status.segment, Some(Segment::Rebel));
        assert_eq!(
            churn_outputs(&out),
            vec![(None, Level::High, Play::Playbook)]
        );
    }

    #[test]
    fn plays_follow_segment_and_drivers() {
        let p = sample();
        // A big spender with bad service and a detractor answer: a hostage, VIP outreach.
        let mut events = vec![purchase("e1", "c", 150_000, day(0))];
        events.push(ticket(
            "t1",
            "c",
            "T1",
            TicketStatus::Reopened,
            day(1),
            TicketSpec {
                sla_breached: true,
                ..Default::default()
            },
        ));
        events.push(ticket(
            "t2",
            "c",
            "T2",
            TicketStatus::Reopened,
            day(1),
            TicketSpec::default(),
        ));
        events.push(survey("s", "c", SurveyScore::Nps(4), day(1)));
        let (state, _, _) = run(None, &events, &p, day(2));
        assert_eq!(state.status.segment, Some(Segment::Hostage));
        assert_eq!(state.status.churn.map(|c| c.play), Some(Play::VipOutreach));

        // A happy weekly buyer gone quiet: a lapse with good sentiment, win-back.
        let mut events: Vec<DomainEvent> = (0..6)
            .map(|i| purchase(&format!("w{i}"), "c", 3_000, day(i * 7)))
            .collect();
        events.push(survey("s", "c", SurveyScore::Nps(9), day(30)));
        let (state, _, _) = run(None, &events, &p, day(35 + 40));
        let c = state.status.churn.expect("assessed");
        assert_eq!(c.level, Level::High, "{c:?}");
        assert_eq!(c.play, Play::WinBackOffer);
    }

    #[test]
    fn the_sweeper_raises_risk_as_silence_grows() {
        let p = sample();
        let events: Vec<DomainEvent> = (0..6)
            .map(|i| purchase(&format!("e{i}"), "c", 3_000, day(i * 7)))
            .collect();
        let model = cdnow();
        let changes = Changes {
            events: events.iter().collect(),
            referred: vec![],
        };
        let (mut state, _, _) = apply(&cid("c"), None, &changes, &p, Some(&model), day(35));
        assert_eq!(
            state.status.churn.as_ref().map(|c| c.level),
            Some(Level::Low)
        );
        let mut levels = vec![];
        let mut now = day(35);
        // Follow the sweeper's own schedule, with no new event.
        for _ in 0..40 {
            now = state
                .status
                .next_check_at
                .expect("a next check while risk can still grow");
            let (next, _, out) = sweep(state, &p, Some(&model), now);
            state = next;
            levels.extend(churn_outputs(&out).into_iter().map(|(_, l, _)| l));
            if state
                .status
                .churn
                .as_ref()
                .is_some_and(|c| c.level == Level::High)
            {
                break;
            }
        }
        assert_eq!(
            levels,
            vec![Level::Medium, Level::High],
            "escalation through the sweeper alone"
        );
        assert!(
            now < day(35 + 120),
            "a weekly buyer is high risk within months of silence: {now}"
        );
    }
}

#[test]
fn recompute_keeps_what_pruned_events_left_and_rebuilds_the_rest() {
    use super::apply::recompute;
    let p = sample();
    let all: Vec<DomainEvent> = (0..4)
        .map(|i| purchase(&format!("e{i}"), "c", 20_000, day(i * 30)))
        .collect();
    let (state, m, _) = run(None, &all, &p, day(100));
    assert_eq!(m.lifetime_spend_minor, 80_000);
    // The ledger lost the two oldest events; the rest are replayed.
    let kept: Vec<&DomainEvent> = all[2..].iter().collect();
    let (rebuilt, m2, outputs) = recompute(&state, &kept, &[], &p, None, day(100));
    assert_eq!(
        m2.lifetime_spend_minor, 80_000,
        "history before the oldest kept event survives"
    );
    assert_eq!(rebuilt.facts, state.facts);
    assert!(outputs.is_empty(), "no difference, no output: {outputs:?}");
}
