//! The overview's figures, counted in the background every `console.refresh_secs` and kept in
//! memory: customers by tier, grid cell and churn level, the moves between grid cells over the
//! last 30 days, churn alerts of the last 7 days by play, dead letters of the last 24 hours
//! and the churn model in use. A page view reads the snapshot; it never counts the population.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::engine::Core;
use crate::store::customers::{self, Projection};
use crate::store::{audit, dead_letters, models};

/// The churn model in use, as the overview shows it.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub version: i64,
    pub fitted_at: DateTime<Utc>,
    /// Only converged fits are stored (`kizuna fit-model`), so a stored model converged.
    pub converged: bool,
    pub customers: f64,
    pub gamma_gamma: bool,
}

/// One set of figures.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The engine's "now" when the figures were counted (the windows end there).
    pub as_of: DateTime<Utc>,
    pub tiers: Vec<(String, i64)>,
    pub segments: Vec<(String, i64)>,
    pub churn_levels: Vec<(String, i64)>,
    /// (from, to, count), grid cells as `Segment::as_str` ("none" for no previous cell).
    pub moves: Vec<(String, String, i64)>,
    /// (play, count) of rises to medium or high.
    pub alerts: Vec<(String, i64)>,
    pub dead_letters: Vec<(String, i64)>,
    pub model: Option<ModelInfo>,
}

impl Snapshot {
    pub fn count(list: &[(String, i64)], key: &str) -> i64 {
        list.iter().find(|(k, _)| k == key).map_or(0, |(_, n)| *n)
    }

    pub fn total(&self) -> i64 {
        self.tiers.iter().map(|(_, n)| n).sum()
    }
}

/// The latest snapshot, shared by the refresher and the pages.
#[derive(Debug, Clone, Default)]
pub struct Snapshots {
    current: Arc<RwLock<Option<Arc<Snapshot>>>>,
}

/// `SEGMENT_HIGH_VALUE_NOT_LOYAL` → `high_value_not_loyal`.
fn enum_code(prefix: &str, name: Option<&str>) -> String {
    name.and_then(|n| n.strip_prefix(prefix))
        .map(str::to_ascii_lowercase)
        .filter(|n| n != "unspecified")
        .unwrap_or_else(|| "none".to_owned())
}

impl Snapshots {
    pub fn get(&self) -> Option<Arc<Snapshot>> {
        self.current.read().ok().and_then(|s| s.clone())
    }

    /// Counts everything once.
    pub async fn refresh(&self, core: &Core) -> anyhow::Result<()> {
        let pool = &core.pool;
        let as_of = core.clock.now(pool).await?;
        let tiers = customers::counts_by(pool, Projection::Tier).await?;
        let segments = customers::counts_by(pool, Projection::Segment).await?;
        let churn_levels = customers::counts_by(pool, Projection::ChurnLevel).await?;
        let moves = audit::segment_moves_since(pool, as_of - chrono::Duration::days(30))
            .await?
            .into_iter()
            .map(|(from, to, n)| {
                (
                    enum_code("SEGMENT_", from.as_deref()),
                    enum_code("SEGMENT_", to.as_deref()),
                    n,
                )
            })
            .collect();
        let mut alerts: Vec<(String, i64)> = Vec::new();
        for (play, _level, n) in
            audit::churn_alerts_since(pool, as_of - chrono::Duration::days(7)).await?
        {
            let play = enum_code("PLAY_", play.as_deref());
            match alerts.iter_mut().find(|(p, _)| *p == play) {
                Some((_, total)) => *total += n,
                None => alerts.push((play, n)),
            }
        }
        alerts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let dead_letters = dead_letters::since(pool, as_of - chrono::Duration::hours(24)).await?;
        let model = models::latest_info(pool).await?.map(|i| ModelInfo {
            version: i.version,
            fitted_at: i.fitted_at,
            converged: true,
            customers: i.customers,
            gamma_gamma: i.gamma_gamma,
        });
        let snapshot = Snapshot {
            as_of,
            tiers,
            segments,
            churn_levels,
            moves,
            alerts,
            dead_letters,
            model,
        };
        if let Ok(mut slot) = self.current.write() {
            *slot = Some(Arc::new(snapshot));
        }
        Ok(())
    }

    /// Refreshes every `every` until `stop`.
    pub async fn run(
        self,
        core: Core,
        every: Duration,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        loop {
            if let Err(e) = self.refresh(&core).await {
                tracing::debug!(error = format!("{e:#}"), "console figures not refreshed");
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}
