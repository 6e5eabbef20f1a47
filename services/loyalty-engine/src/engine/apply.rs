//! A batch of fresh input events applied to their customers: load and lock, apply in event-time
//! order, evaluate each customer once, write the rows back.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::apply::{Changes, apply_with_referred};
use crate::domain::event::{DomainEvent, EventBody};
use crate::domain::ids::CustomerId;
use crate::metrics::Stages;
use crate::partitioner::partition_for;
use crate::store::{customers, ledger};

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
///
/// A referrer whose referral bonus an event of the batch may cancel (a refund of the referred
/// order, or the referred purchase itself after its refund) is loaded, locked and evaluated
/// like the batch's own customers, given the referred customer's purchases and refunds from the
/// ledger ([`referred_events`]). `fresh` must be recorded in the ledger already.
pub async fn apply_events(
    conn: &mut PgConnection,
    core: &Core,
    fresh: &[&DomainEvent],
    now: DateTime<Utc>,
    mut stages: Option<&mut Stages<'_>>,
) -> anyhow::Result<Vec<Evaluated>> {
    let ledger_events = referred_events(conn, core, fresh).await?;
    let referrers = concerned_referrers(fresh, &ledger_events);
    let mut by_customer = group_by_customer(fresh);
    for referrer in referrers.keys() {
        by_customer.entry(*referrer).or_default();
    }
    let batch = Batch {
        changes: by_customer,
        referrers,
    };
    let ids: Vec<&CustomerId> = batch.changes.keys().copied().collect();
    let mut evaluated = evaluate(conn, core, &batch, &ids, now).await?;
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
        let again = evaluate(conn, core, &batch, &ids, now).await?;
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

/// A batch's changes by customer, and for the referrers it concerns, the referred customers'
/// events to judge their referral bonuses by.
struct Batch<'a> {
    changes: BTreeMap<&'a CustomerId, Changes<'a>>,
    referrers: BTreeMap<&'a CustomerId, Vec<&'a DomainEvent>>,
}

/// The ledger's events that may cancel referral bonuses in this batch
/// ([`ledger::referred_orders`]): read for the customers with a refund or a referred purchase
/// in the batch, once, and only when the programme has points and the batch has such an event
/// (a batch without refunds or referrals reads nothing). The batch's own events are in the
/// ledger already (recorded before they are applied, in the same transaction).
async fn referred_events(
    conn: &mut PgConnection,
    core: &Core,
    fresh: &[&DomainEvent],
) -> anyhow::Result<Vec<DomainEvent>> {
    if core.programme.points_rules().is_none() {
        return Ok(Vec::new());
    }
    let customers: BTreeSet<&str> = fresh
        .iter()
        .filter(|e| match &e.body {
            EventBody::Refund(_) => true,
            EventBody::Purchase(p) => p.referred_by.is_some(),
            _ => false,
        })
        .map(|e| e.meta.customer_id.as_str())
        .collect();
    if customers.is_empty() {
        return Ok(Vec::new());
    }
    let customers: Vec<&str> = customers.into_iter().collect();
    ledger::referred_orders(conn, &customers).await
}

/// The referrers this batch concerns, each with the referred customers' events to judge their
/// bonus by (purchases naming that referrer, and those customers' refunds). A referrer is
/// concerned by a referred customer's purchase naming them in the batch (a refund may have
/// come before it), or by a refund in the batch of an order whose purchase named them.
fn concerned_referrers<'a>(
    fresh: &[&DomainEvent],
    ledger_events: &'a [DomainEvent],
) -> BTreeMap<&'a CustomerId, Vec<&'a DomainEvent>> {
    // (referred customer, order) → referrer, from the purchases naming one.
    let mut named: BTreeMap<(&str, &str), &'a CustomerId> = BTreeMap::new();
    for e in ledger_events {
        if let EventBody::Purchase(p) = &e.body
            && let Some(referrer) = &p.referred_by
        {
            named.insert((e.meta.customer_id.as_str(), p.order_id.as_str()), referrer);
        }
    }
    // (referrer, referred customer)
    let mut concerned: BTreeSet<(&'a CustomerId, &str)> = BTreeSet::new();
    for e in fresh {
        let order = match &e.body {
            EventBody::Purchase(p) if p.referred_by.is_some() => p.order_id.as_str(),
            EventBody::Refund(r) => r.order_id.as_str(),
            _ => continue,
        };
        let who = e.meta.customer_id.as_str();
        if let Some(referrer) = named.get(&(who, order)) {
            concerned.insert((referrer, who));
        }
    }
    let mut out: BTreeMap<&'a CustomerId, Vec<&'a DomainEvent>> = BTreeMap::new();
    for &(referrer, who) in &concerned {
        let events = ledger_events.iter().filter(|e| {
            e.meta.customer_id.as_str() == who
                && match &e.body {
                    EventBody::Purchase(p) => p.referred_by.as_ref() == Some(referrer),
                    _ => true,
                }
        });
        out.entry(referrer).or_default().extend(events);
    }
    out
}

/// Loads and locks the rows of `ids` and applies their changes.
async fn evaluate(
    conn: &mut PgConnection,
    core: &Core,
    batch: &Batch<'_>,
    ids: &[&CustomerId],
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Evaluated>> {
    let model = core.model.get();
    let mut rows = customers::load_for_update(conn, ids).await?;
    let mut evaluated = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(changes) = batch.changes.get(id) else {
            continue;
        };
        let referred = batch.referrers.get(id).map_or(&[][..], Vec::as_slice);
        let (state, home, replaces) = match rows.remove(*id) {
            Some(row) => (Some(row.state), row.home_partition, row.version),
            None => (
                None,
                partition_for(id.as_str().as_bytes(), core.partitions),
                customers::NO_ROW,
            ),
        };
        let (state, metrics, outputs) = apply_with_referred(
            id,
            state,
            changes,
            referred,
            &core.programme,
            model.as_deref(),
            now,
        );
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
