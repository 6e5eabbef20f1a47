//! Customer service: support-ticket lifecycles, good and bad, and survey answers.
//!
//! A bad experience, as the engine counts it, is a ticket that was reopened, resolved past its
//! SLA, escalated, rated CSAT ≤ 2 or had sentiment ≤ -0.5. Smooth tickets have none of these,
//! and close within a week, so they never age into one either.

use kizuna_proto::v1;
use rand::Rng;

use crate::calendar::{DAY, HOUR, Secs, timestamp};
use crate::persona::{Mood, pick_weighted, round2};
use crate::rng::SimRng;

/// How a ticket goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Resolved within SLA, no escalation, a decent rating.
    Smooth,
    /// At least one bad-experience marker.
    Bad,
    /// Escalated, SLA breached, mostly reopened, rated 1–2, negative sentiment.
    Severe,
}

/// Everything a ticket produces: its changes in time order, and perhaps a CES answer.
#[derive(Debug, Clone)]
pub struct TicketLife {
    pub changes: Vec<(Secs, v1::SupportTicket)>,
    pub ces: Option<(Secs, v1::SurveyResponse)>,
}

impl TicketLife {
    /// When the last change happens.
    pub fn last_at(&self) -> Secs {
        let ces = self.ces.as_ref().map_or(Secs::MIN, |(t, _)| *t);
        self.changes.last().map_or(Secs::MIN, |(t, _)| *t).max(ces)
    }

    /// When the ticket was (finally) resolved.
    pub fn resolved_at(&self) -> Secs {
        self.changes
            .iter()
            .rev()
            .find(|(_, c)| c.status == v1::TicketStatus::Resolved as i32)
            .map_or(Secs::MIN, |(t, _)| *t)
    }
}

fn between(rng: &mut SimRng, lo: Secs, hi: Secs) -> Secs {
    rng.random_range(lo..hi)
}

fn negative(rng: &mut SimRng) -> f64 {
    round2(rng.random_range(-0.95..-0.55))
}

/// The ticket `ticket_id` of `customer_id`, opened at `opened_at`.
pub fn ticket(
    customer_id: &str,
    ticket_id: String,
    opened_at: Secs,
    severity: Severity,
    mood: Mood,
    rng: &mut SimRng,
) -> TicketLife {
    use v1::TicketPriority as P;
    use v1::TicketStatus as S;

    let channel =
        pick_weighted(&[("email", 0.4), ("chat", 0.35), ("phone", 0.25)], rng).unwrap_or("email");
    let category = pick_weighted(
        &[
            ("delivery", 0.3),
            ("product", 0.25),
            ("billing", 0.15),
            ("returns", 0.15),
            ("account", 0.1),
            ("points", 0.05),
        ],
        rng,
    )
    .unwrap_or("delivery");
    let priority = match severity {
        Severity::Smooth => pick_weighted(&[(P::Low, 0.3), (P::Normal, 0.7)], rng),
        Severity::Bad => pick_weighted(&[(P::Normal, 0.5), (P::High, 0.5)], rng),
        Severity::Severe => pick_weighted(&[(P::High, 0.6), (P::Urgent, 0.4)], rng),
    }
    .unwrap_or(P::Normal);
    let mut changes = Vec::new();
    let mut escalated = false;
    let mut sla_breached = false;
    let mut change = |at: Secs,
                      status: S,
                      escalated: bool,
                      sla_breached: bool,
                      csat: Option<u32>,
                      sentiment: Option<f64>| {
        changes.push((
            at,
            v1::SupportTicket {
                event_id: String::new(),
                customer_id: customer_id.to_owned(),
                occurred_at: Some(timestamp(at)),
                ticket_id: ticket_id.clone(),
                status: status as i32,
                priority: priority as i32,
                channel: channel.to_owned(),
                category: category.to_owned(),
                escalated,
                sla_breached,
                csat,
                sentiment,
            },
        ));
    };
    let mut t = opened_at;
    let ces_score;
    match severity {
        Severity::Smooth => {
            let opening = rng
                .random_bool(0.3)
                .then(|| mood.calm_sentiment(rng).max(-0.3));
            change(t, S::Opened, false, false, None, opening);
            if rng.random_bool(0.5) {
                t += between(rng, HOUR, 20 * HOUR);
                change(t, S::Updated, false, false, None, None);
            }
            t += between(rng, 2 * HOUR, 36 * HOUR);
            let csat = rng.random_bool(0.5).then(|| mood.csat(rng).max(3));
            let sentiment = rng.random_bool(0.7).then(|| mood.calm_sentiment(rng));
            change(t, S::Resolved, false, false, csat, sentiment);
            ces_score = (rng.random_range(1..=3), 0.25);
        }
        Severity::Bad | Severity::Severe => {
            let severe = severity == Severity::Severe;
            let opening = rng
                .random_bool(0.5)
                .then(|| round2(rng.random_range(-0.8..-0.3)));
            change(t, S::Opened, false, false, None, opening);
            if severe || rng.random_bool(0.6) {
                t += between(rng, 6 * HOUR, 2 * DAY);
                escalated = true;
                change(t, S::Updated, escalated, false, None, None);
            }
            t += between(rng, 2 * DAY, 6 * DAY);
            sla_breached = severe || rng.random_bool(0.6);
            let reopened = rng.random_bool(if severe { 0.8 } else { 0.5 });
            if reopened {
                change(t, S::Resolved, escalated, sla_breached, None, None);
                t += between(rng, DAY, 3 * DAY);
                change(
                    t,
                    S::Reopened,
                    escalated,
                    sla_breached,
                    None,
                    Some(negative(rng)),
                );
                t += between(rng, DAY, 3 * DAY);
            }
            let mut csat = (severe || rng.random_bool(0.8)).then(|| rng.random_range(1..=2));
            let sentiment = (severe || rng.random_bool(0.8)).then(|| negative(rng));
            if !(escalated || sla_breached || reopened || csat.is_some() || sentiment.is_some()) {
                csat = Some(1);
            }
            change(t, S::Resolved, escalated, sla_breached, csat, sentiment);
            ces_score = (rng.random_range(5..=7), if severe { 0.6 } else { 0.4 });
        }
    }
    let resolved = t;
    t += between(rng, DAY, 3 * DAY);
    change(t, S::Closed, escalated, sla_breached, None, None);
    let (score, chance) = ces_score;
    let ces = rng.random_bool(chance).then(|| {
        let at = resolved + between(rng, HOUR, 2 * DAY);
        let answer = survey(
            customer_id,
            at,
            "ces-support",
            v1::SurveyKind::Ces,
            score,
            None,
        );
        (at, answer)
    });
    TicketLife { changes, ces }
}

/// A survey answer; the event id is filled in when it is emitted.
pub fn survey(
    customer_id: &str,
    at: Secs,
    survey_id: &str,
    kind: v1::SurveyKind,
    score: u32,
    comment: Option<String>,
) -> v1::SurveyResponse {
    v1::SurveyResponse {
        event_id: String::new(),
        customer_id: customer_id.to_owned(),
        occurred_at: Some(timestamp(at)),
        survey_id: survey_id.to_owned(),
        kind: kind as i32,
        score,
        comment,
    }
}

const PRAISE: [&str; 5] = [
    "いつも迅速な配送ありがとうございます。",
    "品揃えが良く、友人にも勧めています。",
    "アプリが使いやすくて助かります。",
    "スタッフの対応がとても丁寧でした。",
    "Great quality, I keep coming back.",
];
const SHRUG: [&str; 4] = [
    "普通です。",
    "価格がもう少し安ければ。",
    "特に不満はありません。",
    "Fine, nothing special.",
];
const COMPLAINTS: [&str; 5] = [
    "問い合わせの返事が遅すぎます。",
    "同じ問題で何度も連絡しました。",
    "対応にがっかりしました。",
    "返品手続きが面倒でした。",
    "Support never solved my problem.",
];

/// Free text to go with a score, sometimes (`chance`).
pub fn comment(nps_like: u32, max: u32, chance: f64, rng: &mut SimRng) -> Option<String> {
    if !rng.random_bool(chance) {
        return None;
    }
    let share = f64::from(nps_like) / f64::from(max.max(1));
    let pool: &[&str] = if share >= 0.85 {
        &PRAISE
    } else if share >= 0.6 {
        &SHRUG
    } else {
        &COMPLAINTS
    };
    Some(pool[rng.random_range(0..pool.len())].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The markers the engine counts as a bad experience.
    pub fn is_bad(change: &v1::SupportTicket) -> bool {
        change.status == v1::TicketStatus::Reopened as i32
            || change.escalated
            || change.sla_breached
            || change.csat.is_some_and(|c| c <= 2)
            || change.sentiment.is_some_and(|s| s <= -0.5)
    }

    fn lives(severity: Severity, mood: Mood) -> Vec<TicketLife> {
        let mut rng = SimRng::new(8);
        (0..2_000)
            .map(|i| {
                ticket(
                    "c1",
                    format!("t{i}"),
                    1_750_000_000,
                    severity,
                    mood,
                    &mut rng,
                )
            })
            .collect()
    }

    #[test]
    fn smooth_tickets_are_never_bad_and_close_within_a_week() {
        for mood in [
            Mood::Delighted,
            Mood::Content,
            Mood::Indifferent,
            Mood::Unhappy,
        ] {
            for life in lives(Severity::Smooth, mood) {
                assert!(life.changes.iter().all(|(_, c)| !is_bad(c)), "{life:?}");
                let (first, _) = life.changes[0];
                assert!(life.last_at() - first < 7 * DAY);
                let statuses: Vec<_> = life.changes.iter().map(|(_, c)| c.status).collect();
                assert_eq!(statuses[0], v1::TicketStatus::Opened as i32);
                assert_eq!(statuses.last(), Some(&(v1::TicketStatus::Closed as i32)));
            }
        }
    }

    #[test]
    fn bad_tickets_always_show_it_and_severe_ones_show_everything() {
        for life in lives(Severity::Bad, Mood::Unhappy) {
            assert!(life.changes.iter().any(|(_, c)| is_bad(c)));
        }
        for life in lives(Severity::Severe, Mood::Content) {
            let c = &life.changes;
            assert!(c.iter().any(|(_, c)| c.escalated));
            assert!(c.iter().any(|(_, c)| c.sla_breached));
            assert!(
                c.iter()
                    .any(|(_, c)| c.csat.is_some_and(|v| (1..=2).contains(&v)))
            );
            assert!(
                c.iter()
                    .any(|(_, c)| c.sentiment.is_some_and(|s| s <= -0.5))
            );
        }
    }

    #[test]
    fn changes_are_in_time_order_and_values_in_range() {
        for severity in [Severity::Smooth, Severity::Bad, Severity::Severe] {
            for life in lives(severity, Mood::Content) {
                assert!(life.changes.windows(2).all(|w| w[0].0 < w[1].0));
                for (at, c) in &life.changes {
                    assert_eq!(c.occurred_at.as_ref().map(|t| t.seconds), Some(*at));
                    assert!(c.csat.is_none_or(|v| (1..=5).contains(&v)));
                    assert!(c.sentiment.is_none_or(|s| (-1.0..=1.0).contains(&s)));
                }
                if let Some((at, ces)) = &life.ces {
                    assert!(*at > life.changes[0].0);
                    assert!((1..=7).contains(&ces.score));
                }
            }
        }
    }
}
