//! The sweeper: silence matters as much as events. Grace periods expire, windows slide,
//! customers go overdue. Every customer row has a `next_check_at`; the sweeper re-evaluates
//! the due customers of the partitions this instance owns (`engine::sweep`), one transaction
//! per batch, with the outbox, and publishes what changed (caused by "sweep").

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::SweepSettings;
use crate::engine::Core;
use crate::engine::ownership::Ownership;
use crate::engine::sweep::{SweepOutcome, sweep_due};

#[derive(Debug)]
pub struct Sweeper {
    pub core: Core,
    pub ownership: Ownership,
    pub settings: SweepSettings,
}

impl Sweeper {
    pub fn new(core: Core, ownership: Ownership, settings: SweepSettings) -> Self {
        Self {
            core,
            ownership,
            settings,
        }
    }

    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let interval = Duration::from_millis(self.settings.interval_ms);
        loop {
            let more = match self.sweep_once().await {
                Ok(SweepOutcome::Swept { full, .. }) => full,
                Ok(SweepOutcome::NothingDue) => false,
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "sweep failed; retrying");
                    false
                }
            };
            if !more {
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

    /// Re-evaluates one batch of due customers of the partitions this instance owns.
    pub async fn sweep_once(&self) -> anyhow::Result<SweepOutcome> {
        let partitions = self.ownership.partition_numbers();
        let outcome = sweep_due(&self.core, &partitions, self.settings.batch_size).await?;
        if let SweepOutcome::Swept {
            customers, outputs, ..
        } = outcome
        {
            tracing::debug!(customers, outputs, "sweep committed");
        }
        Ok(outcome)
    }
}
