//! Scenario and property tests of the pure domain, on a clock the test controls: one file per
//! section of the domain, sharing the helpers below.

mod churn;
mod grid;
mod order;
mod points;
mod recompute;
mod refunds;
mod service;
mod tiers;

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

/// `n` purchases of `amount` by customer `c`, one a day from day 0 (event ids `e0`, `e1`, …).
fn daily_purchases(n: i64, amount: i64) -> Vec<DomainEvent> {
    (0..n)
        .map(|i| purchase(&format!("e{i}"), "c", amount, day(i)))
        .collect()
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
