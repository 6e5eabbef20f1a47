//! Operator commands that run next to (or instead of) the engine: fitting the churn model,
//! backfilling history, exporting scores, recomputing after a rule change.

pub mod backfill;
pub mod export_scores;
pub mod fit_model;
pub mod recompute;

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use sqlx::PgPool;

use crate::ingest::clock::Clock;

/// "Now" for a command: the time asked, else the engine's clock.
pub async fn now(
    pool: &PgPool,
    clock: Clock,
    group_id: &str,
    as_of: Option<DateTime<Utc>>,
) -> anyhow::Result<DateTime<Utc>> {
    if let Some(t) = as_of {
        return Ok(t);
    }
    Ok(match clock {
        Clock::Wall => Utc::now(),
        Clock::EventTime => crate::store::clock::read(pool, group_id)
            .await?
            .unwrap_or_else(Utc::now),
    })
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(&format!(
        "{{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}} ({{per_sec}}, eta {{eta}})"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar
}
