//! The customer grid (attitude × profitability) and loyalty motives.

use super::*;

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
