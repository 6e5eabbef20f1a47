//! Re-evaluating a customer at a moment: tier, segment, motive, and when to look again.

use chrono::{DateTime, Duration, Utc};

use super::churn::{self, ChurnStatus, Level, Model};

use super::metrics::Metrics;
use super::motive::motive;
use super::output::{Cause, Output, OutputKind};
use super::points::Notice;
use super::programme::Programme;
use super::segment::{Segment, segment};
use super::state::CustomerState;
use super::tier::{self, TierEvent};

/// Re-evaluates `state` at `now`; returns the metrics used and the outputs of the changes.
pub fn evaluate(
    state: &mut CustomerState,
    programme: &Programme,
    model: Option<&Model>,
    now: DateTime<Utc>,
    cause: &Cause,
) -> (Metrics, Vec<Output>) {
    state.facts.forget_old_tickets(now, &programme.retention);
    let m = Metrics::derive(&state.facts, programme, now);
    let mut kinds = Vec::new();

    for event in tier::evaluate(&mut state.status.tier, &m, programme) {
        kinds.push(match event {
            TierEvent::Changed {
                previous,
                new,
                kind,
                reason,
                at,
            } => (
                at,
                OutputKind::TierChanged {
                    previous,
                    new,
                    change: kind,
                    reason,
                },
            ),
            TierEvent::WillDowngrade {
                current,
                to,
                at,
                to_keep,
                reason,
            } => (
                now,
                OutputKind::TierWillDowngrade {
                    current,
                    to,
                    downgrade_at: at,
                    to_keep,
                    reason,
                },
            ),
        });
    }

    let (seg, reason) = segment(&m, &programme.segments);
    let previous = state.status.segment;
    if previous.unwrap_or(Segment::Neutral) != seg {
        kinds.push((
            now,
            OutputKind::SegmentChanged {
                previous,
                new: seg,
                reason: reason.clone(),
            },
        ));
    }
    state.status.segment = Some(seg);
    state.status.segment_reason = Some(reason);

    let assessment = churn::assess(&m, &programme.churn, model);
    let previous_level = state.status.churn.as_ref().map(|c| c.level);
    let level = churn::level(assessment.score, previous_level, &programme.churn);
    let play = churn::play(level, &assessment, state.status.segment, &m);
    if previous_level.unwrap_or(Level::Low) != level {
        kinds.push((
            now,
            OutputKind::ChurnRiskChanged {
                previous: previous_level,
                new: level,
                play,
                reason: churn::reason(previous_level, level, &assessment, play),
            },
        ));
    }
    let since = match &state.status.churn {
        Some(c) if c.level == level => c.since,
        _ => now,
    };
    state.status.churn = Some(ChurnStatus {
        level,
        score: assessment.score,
        play,
        since,
        clv_minor: assessment.clv_minor,
    });

    let (mot, signals) = motive(&m, &programme.motives);
    state.status.motive = Some(mot);
    state.status.motive_signals = signals;

    let (notices, points_check) = state.points.evaluate(&state.facts, programme, now);
    for notice in notices {
        kinds.push((
            now,
            match notice {
                Notice::Changed {
                    changes,
                    available,
                    pending,
                    debt,
                } => OutputKind::PointsChanged {
                    changes,
                    available,
                    pending,
                    debt,
                },
                Notice::WillExpire {
                    lot,
                    amount,
                    expires_at,
                } => OutputKind::PointsWillExpire {
                    lot,
                    amount,
                    expires_at,
                },
            },
        ));
    }

    let t = &state.status.tier;
    state.status.next_check_at = [
        points_check,
        t.pending.as_ref().map(|p| p.at),
        t.manual.as_ref().map(|o| o.expires_at),
        m.next_change(&state.facts, programme),
        // Silence raises churn risk: look again while it grows.
        (level != Level::High && m.last_purchase_at.is_some()).then(|| {
            now + Duration::seconds((m.expected_interval_days.clamp(1.0, 30.0) * 43_200.0) as i64)
        }),
    ]
    .into_iter()
    .flatten()
    .min();
    state.status.evaluated_at = Some(now);

    let outputs = kinds
        .into_iter()
        .map(|(at, kind)| Output {
            customer_id: state.customer_id.clone(),
            cause: cause.clone(),
            effective_at: at,
            metrics: Box::new(m.clone()),
            churn: Some(Box::new(assessment.clone())),
            kind,
        })
        .collect();
    (m, outputs)
}
