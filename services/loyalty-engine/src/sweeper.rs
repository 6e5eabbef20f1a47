//! The sweeper: silence matters as much as events. Grace periods expire, windows slide,
//! customers go overdue. Every customer row has a `next_check_at`; the sweeper re-evaluates
//! the due customers of the partitions this instance owns, one transaction per batch, with
//! the outbox, and publishes what changed (caused by "sweep").

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::{SweepSettings, Topics};
use crate::domain::apply::sweep;
use crate::domain::programme::Programme;
use crate::ingest::clock::Clock;
use crate::ingest::ownership::Ownership;
use crate::metrics::Metrics;
use crate::model_cache::ModelCache;
use crate::store::changes::{self, Evaluated};
use crate::store::customers;

#[derive(Debug)]
pub struct Sweeper {
    pub pool: PgPool,
    pub ownership: Ownership,
    pub programme: Arc<Programme>,
    pub topics: Topics,
    pub group_id: String,
    pub clock: Clock,
    pub metrics: Metrics,
    pub settings: SweepSettings,
    pub model: ModelCache,
}

impl Sweeper {
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let interval = Duration::from_millis(self.settings.interval_ms);
        loop {
            let swept = match self.sweep_once().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "sweep failed; retrying");
                    0
                }
            };
            if swept < self.settings.batch_size as usize {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(interval) => {}
                }
            } else if shutdown.is_cancelled() {
                break;
            }
        }
        tracing::info!("sweeper stopped");
        Ok(())
    }

    /// Re-evaluates one batch of due customers; returns how many.
    pub async fn sweep_once(&self) -> anyhow::Result<usize> {
        let partitions = self.ownership.partition_numbers();
        if partitions.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        let now = self.clock.now(&mut tx, &self.group_id, None).await?;
        let due = customers::lock_due(&mut tx, &partitions, now, self.settings.batch_size).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let model = self.model.get();
        let evaluated: Vec<Evaluated> = due
            .into_iter()
            .map(|row| {
                let (state, metrics, outputs) =
                    sweep(row.state, &self.programme, model.as_deref(), now);
                Evaluated {
                    state,
                    home_partition: row.home_partition,
                    metrics,
                    outputs,
                    replaces: row.version,
                }
            })
            .collect();
        changes::write(
            &mut tx,
            &evaluated,
            Vec::new(),
            &self.topics,
            &self.programme,
        )
        .await?;
        tx.commit().await?;
        let mut outputs = 0;
        for e in &evaluated {
            for out in &e.outputs {
                self.metrics.output(out);
                outputs += 1;
            }
        }
        self.metrics.swept(evaluated.len());
        tracing::debug!(customers = evaluated.len(), outputs, "sweep committed");
        Ok(evaluated.len())
    }
}
