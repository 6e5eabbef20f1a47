//! Gauges refreshed periodically: customers by tier, segment and churn level, and the points
//! liability when the programme has points (population figures, the same on every instance:
//! aggregate them with max, not sum), consumer lag of the
//! partitions this instance owns, the outbox backlog, and the database pool.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::engine::clock::EngineClock;
use crate::engine::ownership::Ownership;
use crate::metrics::Metrics;
use crate::store::customers::{self, Projection};
use crate::store::{offsets, outbox, points};

#[derive(Debug)]
pub struct Gauges {
    pub pool: PgPool,
    pub metrics: Metrics,
    pub group_id: String,
    pub ownership: Ownership,
    pub every: Duration,
    pub populations_every: Duration,
    /// The programme's `points.cost_per_point_minor`; None: no points, no liability gauges.
    pub points_cost_per_point_minor: Option<f64>,
    /// The engine's "now", for the expiry windows.
    pub clock: EngineClock,
}

impl Gauges {
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let mut populations_due = tokio::time::Instant::now();
        loop {
            self.metrics.db_pool(
                self.pool.size(),
                self.pool.num_idle(),
                self.pool.options().get_max_connections(),
            );
            if tokio::time::Instant::now() >= populations_due {
                if let Err(e) = self.populations().await {
                    tracing::debug!(error = format!("{e:#}"), "population gauges not refreshed");
                }
                populations_due = tokio::time::Instant::now() + self.populations_every;
            }
            if let Err(e) = self.lag().await {
                tracing::debug!(error = format!("{e:#}"), "consumer lag not refreshed");
            }
            // Counted here, not by the relay after each idle round: the count reads the whole
            // table, dead rows included, and at 10k events/s the relay idles ~100 times a second.
            match outbox::backlog(&self.pool).await {
                Ok((n, age)) => self.metrics.outbox_backlog(n, age),
                Err(e) => tracing::debug!(error = %e, "outbox backlog not refreshed"),
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(self.every) => {}
            }
        }
    }

    async fn populations(&self) -> anyhow::Result<()> {
        for projection in [
            Projection::Tier,
            Projection::Segment,
            Projection::ChurnLevel,
        ] {
            let counts = customers::counts_by(&self.pool, projection).await?;
            match projection {
                Projection::Tier => self.metrics.customers_by_tier(&counts),
                Projection::Segment => self.metrics.customers_by_segment(&counts),
                Projection::ChurnLevel => self.metrics.customers_by_churn_level(&counts),
            }
        }
        if let Some(cost) = self.points_cost_per_point_minor {
            let o = points::outstanding(
                &self.pool,
                self.clock.now(&self.pool).await?,
                &points::EXPIRY_WINDOWS,
            )
            .await?;
            self.metrics
                .points_liability(o.available, o.pending, o.debt, cost, &o.expiring);
        }
        Ok(())
    }

    /// Lag from librdkafka's statistics (high watermarks) and the stored offsets. Querying
    /// watermarks through the group consumer crashed librdkafka 2.12 against tansu, and the
    /// statistics cost no request at all.
    async fn lag(&self) -> anyhow::Result<()> {
        let mut topics: Vec<String> = self.ownership.owned().into_iter().map(|(t, _)| t).collect();
        topics.dedup();
        let stored = offsets::load(&self.pool, &self.group_id, &topics).await?;
        self.metrics.consumer_lag(&self.ownership.lag(&stored));
        Ok(())
    }
}
