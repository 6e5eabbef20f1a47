//! The churn model in use: the latest version in `churn_models`, reloaded periodically so a new
//! fit is picked up without a restart.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::domain::churn::Model;
use crate::metrics::Metrics;
use crate::store::{churn_weights, models};

#[derive(Debug, Clone, Default)]
pub struct ModelCache {
    current: Arc<RwLock<Option<Arc<Model>>>>,
}

impl ModelCache {
    pub fn get(&self) -> Option<Arc<Model>> {
        self.current.read().ok().and_then(|m| m.clone())
    }

    fn set(&self, model: Option<Model>) {
        if let Ok(mut slot) = self.current.write() {
            *slot = model.map(Arc::new);
        }
    }

    /// Loads the latest model once.
    pub async fn refresh(&self, pool: &PgPool, metrics: &Metrics) -> anyhow::Result<()> {
        let mut latest = models::latest(pool).await?;
        if let Some((model, _)) = &mut latest {
            model.weights = churn_weights::for_version(pool, model.version).await?;
        }
        let before = self.get().map(|m| m.version);
        if let Some((model, fitted_at)) = &latest {
            metrics.model(model.version, *fitted_at);
            if before != Some(model.version) {
                tracing::info!(version = model.version, "churn model loaded");
            }
        }
        self.set(latest.map(|(m, _)| m));
        Ok(())
    }

    /// Reloads every `every` until `stop`.
    pub async fn run(
        self,
        pool: PgPool,
        metrics: Metrics,
        every: Duration,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        loop {
            if let Err(e) = self.refresh(&pool, &metrics).await {
                tracing::debug!(error = format!("{e:#}"), "churn model refresh failed");
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}
