//! `kizuna recompute`: rebuilds every customer's state and tier from the event ledger under the
//! current programme, downgrades included, in batches (one transaction each, with the outbox),
//! publishing output events only for real differences. Shows progress.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::config::Topics;
use crate::domain::apply::recompute;
use crate::domain::churn::Model;
use crate::domain::event::DomainEvent;
use crate::domain::ids::CustomerId;
use crate::domain::programme::Programme;
use crate::store::changes::{self, Evaluated};
use crate::store::{customers, ledger};

/// What a recompute changed.
#[derive(Debug, Default)]
pub struct RecomputeReport {
    pub customers: u64,
    pub changed_tiers: u64,
    pub outputs: u64,
}

pub async fn run(
    pool: &PgPool,
    programme: &Programme,
    model: Option<&Model>,
    topics: &Topics,
    now: DateTime<Utc>,
    batch: i64,
) -> anyhow::Result<RecomputeReport> {
    let total = customers::count(pool).await?;
    let bar = super::progress(u64::try_from(total).unwrap_or(0), "recomputing");
    let mut report = RecomputeReport::default();
    let mut after: Option<String> = None;
    loop {
        let mut tx = pool.begin().await?;
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
            let old = &row.state;
            let mine: Vec<&DomainEvent> = events
                .iter()
                .filter(|e| &e.meta.customer_id == id)
                .collect();
            let referred: Vec<CustomerId> = referrals
                .iter()
                .filter(|(r, _)| r == id.as_str())
                .map(|(_, e)| e.meta.customer_id.clone())
                .collect();
            let (state, metrics, outputs) = recompute(old, &mine, &referred, programme, model, now);
            if state.tier() != old.tier() {
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
        changes::write(&mut tx, &evaluated, Vec::new(), topics, programme).await?;
        tx.commit().await?;
        report.customers += evaluated.len() as u64;
        bar.inc(evaluated.len() as u64);
    }
    bar.finish_and_clear();
    Ok(report)
}
