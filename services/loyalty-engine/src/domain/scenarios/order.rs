//! Order independence and idempotence of event application.

use super::*;

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
