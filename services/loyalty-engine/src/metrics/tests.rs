use super::*;

#[test]
fn facts_show_up_under_their_names() {
    let m = Metrics::new();
    m.consumed("purchases", Outcome::Applied, 3);
    m.dead_lettered("purchases", RejectReason::Unparseable);
    m.tier_transitions
        .with_label_values(&["member", "silver"])
        .inc();
    let text = m.render();
    assert!(
        text.contains(r#"kizuna_events_consumed_total{outcome="applied",topic="purchases"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"kizuna_dead_letters_total{reason="unparseable",topic="purchases"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"kizuna_tier_transitions_total{from="member",to="silver"} 1"#),
        "{text}"
    );
    assert!(text.contains("kizuna_build_info{version="), "{text}");
}
