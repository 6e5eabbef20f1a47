//! `event_ledger`: every applied input event, once. Inserting into it is the event-id
//! deduplication; it is also the customer's audit trail and the source for `recompute`.
//! Bodies are stored as MessagePack (with field names): written once per event, read rarely.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::event::{DomainEvent, EventBody};
use crate::store::sql;

/// One event to record.
#[derive(Debug)]
pub struct LedgerRow<'a> {
    pub event: &'a DomainEvent,
    /// `topic/partition/offset` or `backfill:FILE/partition/line`.
    pub source: String,
}

pub fn encode(event: &DomainEvent) -> anyhow::Result<Vec<u8>> {
    Ok(rmp_serde::to_vec_named(event)?)
}

pub fn decode(bytes: &[u8]) -> anyhow::Result<DomainEvent> {
    Ok(rmp_serde::from_slice(bytes)?)
}

/// Inserts the rows and returns, for each, whether it was new (false: its event id was
/// already recorded, or appears earlier in `rows`).
pub async fn insert_new(
    conn: &mut PgConnection,
    rows: &[LedgerRow<'_>],
) -> anyhow::Result<Vec<bool>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let customers: Vec<&str> = rows
        .iter()
        .map(|r| r.event.meta.customer_id.as_str())
        .collect();
    let events: Vec<&str> = rows
        .iter()
        .map(|r| r.event.meta.event_id.as_str())
        .collect();
    let times: Vec<DateTime<Utc>> = rows.iter().map(|r| r.event.meta.occurred_at).collect();
    let kinds: Vec<&str> = rows.iter().map(|r| r.event.body.kind()).collect();
    let referrers: Vec<Option<&str>> = rows
        .iter()
        .map(|r| match &r.event.body {
            EventBody::Purchase(p) => p.referred_by.as_ref().map(|c| c.as_str()),
            _ => None,
        })
        .collect();
    let bodies: Vec<Vec<u8>> = rows
        .iter()
        .map(|r| encode(r.event))
        .collect::<anyhow::Result<_>>()?;
    let sources: Vec<&str> = rows.iter().map(|r| r.source.as_str()).collect();
    let inserted: Vec<(String, String)> = sqlx::query_as(sql::LEDGER_INSERT)
        .bind(&customers)
        .bind(&events)
        .bind(&times)
        .bind(&kinds)
        .bind(&referrers)
        .bind(&bodies)
        .bind(&sources)
        .fetch_all(&mut *conn)
        .await?;
    let mut new: HashSet<(String, String)> = inserted.into_iter().collect();
    Ok(rows
        .iter()
        // `remove` marks only the first occurrence of an id inside the batch as new.
        .map(|r| {
            new.remove(&(
                r.event.meta.customer_id.as_str().to_owned(),
                r.event.meta.event_id.as_str().to_owned(),
            ))
        })
        .collect())
}

/// Every recorded event of the given customers.
pub async fn events_of(
    conn: &mut PgConnection,
    customers: &[&str],
) -> anyhow::Result<Vec<DomainEvent>> {
    let rows: Vec<(Vec<u8>,)> = sqlx::query_as(
        "SELECT body FROM event_ledger WHERE customer_id = ANY($1) ORDER BY occurred_at, event_id",
    )
    .persistent(false)
    .bind(customers)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter().map(|(b,)| decode(&b)).collect()
}

/// Purchases that name one of `referrers` as their referrer: (referrer, the purchase).
pub async fn referrals_of(
    conn: &mut PgConnection,
    referrers: &[&str],
) -> anyhow::Result<Vec<(String, DomainEvent)>> {
    let rows: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT referred_by, body FROM event_ledger WHERE referred_by = ANY($1)")
            .persistent(false)
            .bind(referrers)
            .fetch_all(&mut *conn)
            .await?;
    rows.into_iter()
        .map(|(r, b)| Ok((r, decode(&b)?)))
        .collect()
}

/// What may cancel a referral bonus: the purchases of `customers` that name a referrer and,
/// for the customers who have one, all their refunds (decoded only for those customers). One
/// round trip, through the primary key's `customer_id` prefix.
pub async fn referred_orders(
    conn: &mut PgConnection,
    customers: &[&str],
) -> anyhow::Result<Vec<DomainEvent>> {
    let rows: Vec<(Vec<u8>,)> = sqlx::query_as(
        "WITH referred AS (
             SELECT customer_id, body FROM event_ledger
             WHERE customer_id = ANY($1) AND referred_by IS NOT NULL)
         SELECT body FROM referred
         UNION ALL
         SELECT body FROM event_ledger
         WHERE customer_id = ANY(ARRAY(SELECT DISTINCT customer_id FROM referred))
           AND kind = 'refund'",
    )
    .bind(customers)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter().map(|(b,)| decode(&b)).collect()
}

/// Deletes up to `limit` events that occurred before `horizon`; returns how many. When it
/// deleted any, it records the horizon (`ledger_pruned`) in the same transaction.
pub async fn prune(
    conn: &mut PgConnection,
    horizon: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "DELETE FROM event_ledger WHERE ctid IN (
             SELECT ctid FROM event_ledger WHERE occurred_at < $1 LIMIT $2)",
    )
    .bind(horizon)
    .bind(limit)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() > 0 {
        sqlx::query(
            "INSERT INTO ledger_pruned (id, before) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET before = GREATEST(ledger_pruned.before, EXCLUDED.before)",
        )
        .bind(horizon)
        .execute(conn)
        .await?;
    }
    Ok(done.rows_affected())
}

/// The horizon before which the pruning job has deleted events (None: it never deleted any).
/// An event older than this may have been applied and pruned: it could not be deduplicated.
pub async fn pruned_before<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar("SELECT before FROM ledger_pruned WHERE id = 1")
        .fetch_optional(executor)
        .await
}
