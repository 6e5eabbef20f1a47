//! A batch of fresh input events applied to their customers: load and lock, apply in event-time
//! order, evaluate each customer once, write the rows back.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::apply::{Changes, apply};
use crate::domain::event::{DomainEvent, EventBody};
use crate::domain::ids::CustomerId;
use crate::metrics::Stages;
use crate::partitioner::partition_for;
use crate::store::customers;

use super::write::{self, Evaluated};
use super::{Contention, Core};

/// How many times a batch re-applies customers whose rows other writers created meanwhile
/// before it gives up (and is retried whole).
const MAX_WRITE_ROUNDS: usize = 5;

/// Applies fresh events (and the referral credits they carry) to their customers inside the
/// transaction, evaluating each customer once at `now`, and writes their rows. The outputs are
/// returned, not yet queued (see `write::write_outputs`).
///
/// A customer who has a row is locked while loaded, so concurrent batches touching them wait
/// for each other. A customer who has none yet cannot be locked: when another writer creates
/// the row between this batch's read and its write (one customer's events arriving on two
/// partitions owned by different writers or instances), the write is refused by the row's
/// version, and the customer's events are applied again on the row now stored. A new customer's
/// home partition is the one Kafka's default partitioner gives their id; it never changes after.
pub async fn apply_events(
    conn: &mut PgConnection,
    core: &Core,
    fresh: &[&DomainEvent],
    now: DateTime<Utc>,
    mut stages: Option<&mut Stages<'_>>,
) -> anyhow::Result<Vec<Evaluated>> {
    let by_customer = group_by_customer(fresh);
    let ids: Vec<&CustomerId> = by_customer.keys().copied().collect();
    let mut evaluated = evaluate(conn, core, &by_customer, &ids, now).await?;
    if let Some(s) = stages.as_deref_mut() {
        s.lap("load");
    }
    let mut pending: Vec<usize> = (0..evaluated.len()).collect();
    for _ in 0..MAX_WRITE_ROUNDS {
        let stale = write::write_states(conn, core, pending.iter().map(|&i| &evaluated[i])).await?;
        if stale.is_empty() {
            if let Some(s) = stages {
                s.lap("apply");
            }
            return Ok(evaluated);
        }
        core.metrics.write_conflicts(stale.len());
        pending = stale.into_iter().map(|s| pending[s]).collect();
        let ids: Vec<&CustomerId> = pending
            .iter()
            .map(|&i| &evaluated[i].state.customer_id)
            .collect();
        let again = evaluate(conn, core, &by_customer, &ids, now).await?;
        for (&i, e) in pending.iter().zip(again) {
            evaluated[i] = e;
        }
    }
    Err(Contention(format!(
        "{} customers' rows kept changing between read and write",
        pending.len()
    ))
    .into())
}

/// Each customer's events of the batch in event-time order, with the referrals they are
/// credited for.
fn group_by_customer<'a>(fresh: &[&'a DomainEvent]) -> BTreeMap<&'a CustomerId, Changes<'a>> {
    let mut by_customer: BTreeMap<&CustomerId, Changes<'_>> = BTreeMap::new();
    let mut sorted: Vec<&DomainEvent> = fresh.to_vec();
    sorted.sort_by(|a, b| {
        (a.meta.occurred_at, a.meta.event_id.as_str())
            .cmp(&(b.meta.occurred_at, b.meta.event_id.as_str()))
    });
    for e in sorted {
        by_customer
            .entry(&e.meta.customer_id)
            .or_default()
            .events
            .push(e);
        if let EventBody::Purchase(p) = &e.body
            && let Some(referrer) = &p.referred_by
        {
            by_customer
                .entry(referrer)
                .or_default()
                .referred
                .push((e.meta.customer_id.clone(), e));
        }
    }
    by_customer
}

/// Loads and locks the rows of `ids` and applies their changes.
async fn evaluate(
    conn: &mut PgConnection,
    core: &Core,
    by_customer: &BTreeMap<&CustomerId, Changes<'_>>,
    ids: &[&CustomerId],
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Evaluated>> {
    let model = core.model.get();
    let mut rows = customers::load_for_update(conn, ids).await?;
    let mut evaluated = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(changes) = by_customer.get(id) else {
            continue;
        };
        let (state, home, replaces) = match rows.remove(*id) {
            Some(row) => (Some(row.state), row.home_partition, row.version),
            None => (
                None,
                partition_for(id.as_str().as_bytes(), core.partitions),
                customers::NO_ROW,
            ),
        };
        let (state, metrics, outputs) =
            apply(id, state, changes, &core.programme, model.as_deref(), now);
        evaluated.push(Evaluated {
            state,
            home_partition: home,
            metrics,
            outputs,
            replaces,
        });
    }
    Ok(evaluated)
}
