//! Tiers: qualification, upgrades, downgrades with notice, overrides.

use super::*;

#[test]
fn upgrade_is_immediate_then_grace_then_soft_landing() {
    let p = sample(); // silver 30k/2, gold 100k/3, platinum 300k/5 (not detractor); grace 30d
    let buys = daily_purchases(3, 40_000);
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
    let buys = daily_purchases(2, 20_000);
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
    let buys = daily_purchases(3, 40_000);
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
    let buys = daily_purchases(2, 20_000);
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
    let buys = daily_purchases(5, 70_000);
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
