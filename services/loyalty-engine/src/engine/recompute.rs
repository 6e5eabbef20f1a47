//! Recompute: rebuilds every customer's state and tier from the event ledger under the current
//! programme, downgrades included, in batches (one transaction each, with the outbox),
//! publishing output events only for real differences. Used by `kizuna recompute` and the
//! admin API.

use chrono::{DateTime, Utc};

use crate::domain::apply::recompute;
use crate::domain::event::DomainEvent;
use crate::domain::ids::CustomerId;
use crate::store::{customers, ledger};

use super::Core;
use super::write::{self, Evaluated};

/// What a recompute changed.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecomputeReport {
    pub customers: u64,
    pub changed_tiers: u64,
    pub outputs: u64,
}

/// Recomputes every customer at `now`, `batch` at a time; `progress` is told how many
/// customers are done after each batch, out of the total counted at the start.
pub async fn run(
    core: &Core,
    now: DateTime<Utc>,
    batch: i64,
    mut progress: impl FnMut(u64, u64),
) -> anyhow::Result<RecomputeReport> {
    let total = u64::try_from(customers::count(&core.pool).await?).unwrap_or(0);
    let model = core.model.get();
    let mut report = RecomputeReport::default();
    let mut after: Option<String> = None;
    loop {
        let mut tx = core.pool.begin().await?;
        let page = customers::page(&mut *tx, after.as_deref(), batch).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.customer_id.as_str().to_owned());
        let ids: Vec<&CustomerId> = page.iter().map(|(s, _)| &s.customer_id).collect();
        // Lock the rows, and read them again under the lock.
        let locked = customers::load_for_update(&mut tx, &ids).await?;
        let keys: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
        let events = ledger::events_of(&mut tx, &keys).await?;
        let referrals = ledger::referrals_of(&mut tx, &keys).await?;
        let mut evaluated = Vec::with_capacity(locked.len());
        for id in ids {
            let Some(row) = locked.get(id) else {
                continue;
            };
            let mine: Vec<&DomainEvent> = events
                .iter()
                .filter(|e| &e.meta.customer_id == id)
                .collect();
            let referred: Vec<CustomerId> = referrals
                .iter()
                .filter(|(r, _)| r == id.as_str())
                .map(|(_, e)| e.meta.customer_id.clone())
                .collect();
            let (state, metrics, outputs) = recompute(
                &row.state,
                &mine,
                &referred,
                &core.programme,
                model.as_deref(),
                now,
            );
            if state.tier() != row.state.tier() {
                report.changed_tiers += 1;
            }
            report.outputs += outputs.len() as u64;
            evaluated.push(Evaluated {
                state,
                home_partition: row.home_partition,
                metrics,
                outputs,
                replaces: row.version,
            });
        }
        write::write(&mut tx, core, &evaluated, Vec::new()).await?;
        tx.commit().await?;
        report.customers += evaluated.len() as u64;
        progress(report.customers, total);
    }
    Ok(report)
}
