//! Re-evaluating customers because time passed: grace periods expire, windows slide, customers
//! go overdue. Each customer row has a `next_check_at`; one sweep re-evaluates the due
//! customers of the given home partitions in one transaction, with their outputs.

use crate::domain::apply::sweep;
use crate::store::customers;

use super::Core;
use super::write::{self, Evaluated};

/// What one sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepOutcome {
    /// Nothing was due (or no partition is owned).
    NothingDue,
    /// This many customers were re-evaluated, with this many outputs; `full` when the batch
    /// limit was reached, so more are probably due.
    Swept {
        customers: usize,
        outputs: usize,
        full: bool,
    },
}

/// Re-evaluates up to `limit` due customers of `partitions` (rows locked by another
/// transaction are skipped, not waited for).
pub async fn sweep_due(
    core: &Core,
    partitions: &[i32],
    limit: i64,
) -> anyhow::Result<SweepOutcome> {
    if partitions.is_empty() {
        return Ok(SweepOutcome::NothingDue);
    }
    let mut tx = core.pool.begin().await?;
    let now = core.clock.now(&mut *tx).await?;
    let due = customers::lock_due(&mut tx, partitions, now, limit).await?;
    if due.is_empty() {
        return Ok(SweepOutcome::NothingDue);
    }
    let model = core.model.get();
    let evaluated: Vec<Evaluated> = due
        .into_iter()
        .map(|row| {
            let (state, metrics, outputs) =
                sweep(row.state, &core.programme, model.as_deref(), now);
            Evaluated {
                state,
                home_partition: row.home_partition,
                metrics,
                outputs,
                replaces: row.version,
            }
        })
        .collect();
    write::write(&mut tx, core, &evaluated, Vec::new()).await?;
    tx.commit().await?;
    let mut outputs = 0;
    for e in &evaluated {
        for out in &e.outputs {
            core.metrics.output(out);
            outputs += 1;
        }
    }
    core.metrics.swept(evaluated.len());
    Ok(SweepOutcome::Swept {
        customers: evaluated.len(),
        outputs,
        full: i64::try_from(evaluated.len()).unwrap_or(i64::MAX) >= limit,
    })
}
