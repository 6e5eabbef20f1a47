//! Periodic work: the queue and subscription gauges, and pruning the delivery log.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::{attempts, queue, subscriptions};

/// How often old delivery-log rows are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub struct Housekeeping {
    pub pool: PgPool,
    pub metrics: Metrics,
    pub every: Duration,
    pub log_retention_days: u32,
}

impl Housekeeping {
    pub async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_prune: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            match queue::depth(&self.pool).await {
                Ok((depth, oldest)) => self.metrics.queue(depth, oldest),
                Err(e) => tracing::debug!(error = %e, "queue depth unavailable"),
            }
            if let Ok(by_status) = subscriptions::count_by_status(&self.pool).await {
                self.metrics.subscriptions(&by_status);
            }
            if self.log_retention_days > 0 && last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY)
            {
                last_prune = Some(tokio::time::Instant::now());
                let before =
                    Utc::now() - chrono::Duration::days(i64::from(self.log_retention_days));
                match attempts::prune(&self.pool, before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "delivery log pruned"),
                    Err(e) => tracing::warn!(error = %e, "pruning the delivery log failed"),
                }
            }
        }
    }
}
