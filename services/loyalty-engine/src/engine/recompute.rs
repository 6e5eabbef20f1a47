//! Recompute: rebuilds every customer's state and tier from the event ledger under the current
//! programme, downgrades included, in batches (one transaction each, with the outbox),
//! publishing output events only for real differences. Used by `kizuna recompute` and the
//! admin API.
//!
//! [`what_if`] runs the same evaluation under another programme and writes nothing: the
//! console's what-if on the programme.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::apply::recompute;
use crate::domain::churn::Model;
use crate::domain::event::{DomainEvent, EventBody};
use crate::domain::ids::CustomerId;
use crate::domain::programme::Programme;
use crate::store::customers::{self, Loaded};
use crate::store::ledger;

use super::Core;
use super::write::{self, Evaluated};

/// What a recompute changed.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecomputeReport {
    pub customers: u64,
    pub changed_tiers: u64,
    /// Customers whose points movements came out different (added, changed or gone).
    pub changed_points: u64,
    pub outputs: u64,
}

/// Re-evaluates the given rows from their ledger events under `programme` (the one rule both
/// [`run`] and [`what_if`] apply).
async fn evaluate_rows(
    conn: &mut PgConnection,
    rows: &[&Loaded],
    programme: &Programme,
    model: Option<&Model>,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Evaluated>> {
    let keys: Vec<&str> = rows.iter().map(|r| r.state.customer_id.as_str()).collect();
    let events = ledger::events_of(conn, &keys).await?;
    let referrals = ledger::referrals_of(conn, &keys).await?;
    // The referred customers' refunds, which may cancel a referral bonus (read only when the
    // page has referrals).
    let referred_customers: BTreeSet<&str> = referrals
        .iter()
        .map(|(_, e)| e.meta.customer_id.as_str())
        .collect();
    let refunds: Vec<DomainEvent> = if referred_customers.is_empty() {
        Vec::new()
    } else {
        let customers: Vec<&str> = referred_customers.into_iter().collect();
        ledger::referred_orders(conn, &customers)
            .await?
            .into_iter()
            .filter(|e| matches!(e.body, EventBody::Refund(_)))
            .collect()
    };
    let mut evaluated = Vec::with_capacity(rows.len());
    for row in rows {
        let id = &row.state.customer_id;
        let mine: Vec<&DomainEvent> = events
            .iter()
            .filter(|e| &e.meta.customer_id == id)
            .collect();
        // Purchases naming this customer, and the refunds of the customers who made them.
        let purchases: Vec<&DomainEvent> = referrals
            .iter()
            .filter(|(r, _)| r == id.as_str())
            .map(|(_, e)| e)
            .collect();
        let who: BTreeSet<&CustomerId> = purchases.iter().map(|e| &e.meta.customer_id).collect();
        let referred: Vec<&DomainEvent> = purchases
            .iter()
            .copied()
            .chain(refunds.iter().filter(|e| who.contains(&e.meta.customer_id)))
            .collect();
        let (state, metrics, outputs) =
            recompute(&row.state, &mine, &referred, programme, model, now);
        evaluated.push(Evaluated {
            state,
            home_partition: row.home_partition,
            metrics,
            outputs,
            replaces: row.version,
        });
    }
    Ok(evaluated)
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
        let rows: Vec<&Loaded> = ids.iter().filter_map(|id| locked.get(*id)).collect();
        let evaluated =
            evaluate_rows(&mut tx, &rows, &core.programme, model.as_deref(), now).await?;
        for (row, e) in rows.iter().zip(&evaluated) {
            if e.state.tier() != row.state.tier() {
                report.changed_tiers += 1;
            }
            if e.state.points.differs_from(&row.state.points) {
                report.changed_points += 1;
            }
            report.outputs += e.outputs.len() as u64;
        }
        write::write(&mut tx, core, &evaluated, Vec::new()).await?;
        tx.commit().await?;
        report.customers += evaluated.len() as u64;
        progress(report.customers, total);
    }
    Ok(report)
}

/// A customer whose tier a what-if changes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Move {
    pub customer_id: String,
    pub from: String,
    pub to: String,
}

/// What a programme would change if `recompute` ran under it now.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct WhatIfReport {
    pub customers: u64,
    /// Customers moving from one tier to another: (from, to) → count.
    pub moves: BTreeMap<(String, String), u64>,
    /// The first `sample` movers, in id order.
    pub sample: Vec<Move>,
    pub now: DateTime<Utc>,
}

impl WhatIfReport {
    /// Customers moving up (or down) into / out of each tier: tier → (up into, down into).
    pub fn changed(&self) -> u64 {
        self.moves.values().sum()
    }
}

/// Evaluates every customer as [`run`] would under `programme`, at `now`, and writes nothing
/// (a read-only transaction per page, no locks). Tier changes are compared with the tier each
/// customer holds now.
pub async fn what_if(
    core: &Core,
    programme: &Programme,
    now: DateTime<Utc>,
    batch: i64,
    sample: usize,
    mut progress: impl FnMut(u64, u64),
) -> anyhow::Result<WhatIfReport> {
    let total = u64::try_from(customers::count(&core.pool).await?).unwrap_or(0);
    let model = core.model.get();
    let mut report = WhatIfReport {
        now,
        ..Default::default()
    };
    let mut after: Option<String> = None;
    loop {
        let mut tx = core.pool.begin().await?;
        sqlx::query("SET TRANSACTION READ ONLY")
            .execute(&mut *tx)
            .await?;
        let page = customers::page(&mut *tx, after.as_deref(), batch).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.customer_id.as_str().to_owned());
        let loaded: Vec<Loaded> = page
            .into_iter()
            .map(|(state, home_partition)| Loaded {
                state,
                home_partition,
                version: 0,
            })
            .collect();
        let rows: Vec<&Loaded> = loaded.iter().collect();
        let evaluated = evaluate_rows(&mut tx, &rows, programme, model.as_deref(), now).await?;
        tx.rollback().await?;
        for (row, e) in rows.iter().zip(&evaluated) {
            let (from, to) = (row.state.tier(), e.state.tier());
            if from != to {
                *report
                    .moves
                    .entry((from.to_owned(), to.to_owned()))
                    .or_default() += 1;
                if report.sample.len() < sample {
                    report.sample.push(Move {
                        customer_id: row.state.customer_id.as_str().to_owned(),
                        from: from.to_owned(),
                        to: to.to_owned(),
                    });
                }
            }
        }
        report.customers += evaluated.len() as u64;
        progress(report.customers, total);
    }
    Ok(report)
}
