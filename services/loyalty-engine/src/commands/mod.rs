//! Operator commands that run next to (or instead of) the engine: fitting the churn model,
//! backfilling history, exporting scores, recomputing after a rule change, registering the
//! output schemas.

pub mod backfill;
pub mod export_scores;
pub mod fit_model;
pub mod fit_weights;
pub mod recompute;
pub mod schemas;

use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Settings;
use crate::engine::Core;
use crate::metrics::Metrics;
use crate::store;

/// The engine's shared parts for a command: the database (migrated first when
/// `database.migrate_on_start` allows: a runtime role without DDL rights sets it to false), the
/// programme, the churn model in use and the clock.
pub async fn open(settings: &Settings) -> anyhow::Result<Core> {
    let programme = Arc::new(settings.load_programme()?);
    let pool = store::pool(settings.database_url(), 4)?;
    if settings.database.migrate_on_start {
        store::migrate(&pool).await?;
    }
    let metrics = Metrics::new();
    let core = Core::new(
        settings,
        pool,
        programme,
        metrics,
        settings.kafka.partitions,
    );
    core.model.refresh(&core.pool, &core.metrics).await?;
    Ok(core)
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
