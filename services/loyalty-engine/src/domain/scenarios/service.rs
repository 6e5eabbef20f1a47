//! Service experience: tickets, surveys and bad experiences.

use super::*;

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
