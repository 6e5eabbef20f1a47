//! Churn risk: drivers, levels, plays and the sweeper's schedule.

use super::*;
use crate::domain::churn::{self, ChurnRules, Level, Model, Play};
use crate::domain::model::BgNbdParams;

fn cdnow() -> Model {
    Model {
        version: 1,
        purchases: BgNbdParams::new(0.243, 4.414, 0.793, 2.426)
            .expect("valid params")
            .into(),
        spend: None,
        weights: None,
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
    let p_alive = model.purchases.p_alive(&s).expect("P(alive)");
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
