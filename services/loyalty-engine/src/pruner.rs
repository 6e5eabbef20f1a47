//! The ledger pruning job: deletes events older than `ledger.retention_days`, in small
//! transactions, on one instance at a time (a session advisory lock), every
//! `ledger.prune_interval_secs`.

use std::time::Duration;

use chrono::Utc;
use sqlx::{Connection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::ledger;

/// Advisory lock key of the job.
const LOCK_KEY: i64 = 0x6b69_7a75_6e61_0001;

#[derive(Debug)]
pub struct Pruner {
    pub pool: PgPool,
    pub retention: chrono::Duration,
    pub every: Duration,
    pub metrics: Metrics,
}

impl Pruner {
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        loop {
            match self.prune_once().await {
                Ok(Some(n)) if n > 0 => tracing::info!(events = n, "pruned the event ledger"),
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "ledger pruning failed; retrying later"
                ),
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(self.every) => {}
            }
        }
    }

    /// Prunes everything past the retention, unless another instance is at it (None).
    pub async fn prune_once(&self) -> anyhow::Result<Option<u64>> {
        let mut conn = self.pool.acquire().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut *conn)
            .await?;
        if !locked {
            return Ok(None);
        }
        let horizon = Utc::now() - self.retention;
        let mut total = 0;
        let result = async {
            loop {
                let mut tx = conn.begin().await?;
                let n = ledger::prune(&mut tx, horizon, 10_000).await?;
                tx.commit().await?;
                total += n;
                self.metrics.ledger_pruned(n);
                if n < 10_000 {
                    return anyhow::Ok(());
                }
            }
        }
        .await;
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(LOCK_KEY)
            .execute(&mut *conn)
            .await?;
        result.map(|()| Some(total))
    }
}
