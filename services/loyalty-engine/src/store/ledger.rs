//! `event_ledger`: every applied input event, once. Inserting into it is the event-id
//! deduplication; it is also the customer's audit trail and the source for `recompute`.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::event::DomainEvent;

/// One event to record.
#[derive(Debug)]
pub struct LedgerRow<'a> {
    pub customer_id: &'a str,
    pub event_id: &'a str,
    pub occurred_at: DateTime<Utc>,
    pub kind: &'a str,
    /// The event as JSON text.
    pub body: String,
    /// `topic/partition/offset` or `backfill:FILE:LINE`.
    pub source: String,
}

/// Inserts the rows and returns, for each, whether it was new (false: its event id was
/// already recorded, or appears earlier in `rows`).
pub async fn insert_new(
    conn: &mut PgConnection,
    rows: &[LedgerRow<'_>],
) -> sqlx::Result<Vec<bool>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let customers: Vec<&str> = rows.iter().map(|r| r.customer_id).collect();
    let events: Vec<&str> = rows.iter().map(|r| r.event_id).collect();
    let times: Vec<DateTime<Utc>> = rows.iter().map(|r| r.occurred_at).collect();
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind).collect();
    let bodies: Vec<&str> = rows.iter().map(|r| r.body.as_str()).collect();
    let sources: Vec<&str> = rows.iter().map(|r| r.source.as_str()).collect();
    let inserted: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO event_ledger (customer_id, event_id, occurred_at, kind, body, source)
         SELECT c, e, o, k, b::jsonb, s
         FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[]) AS x(c, e, o, k, b, s)
         ON CONFLICT (customer_id, event_id) DO NOTHING
         RETURNING customer_id, event_id",
    )
    .bind(&customers)
    .bind(&events)
    .bind(&times)
    .bind(&kinds)
    .bind(&bodies)
    .bind(&sources)
    .fetch_all(&mut *conn)
    .await?;
    let mut new: HashSet<(String, String)> = inserted.into_iter().collect();
    Ok(rows
        .iter()
        // `remove` marks only the first occurrence of an id inside the batch as new.
        .map(|r| new.remove(&(r.customer_id.to_owned(), r.event_id.to_owned())))
        .collect())
}

/// Every recorded event of the given customers.
pub async fn events_of(
    conn: &mut PgConnection,
    customers: &[&str],
) -> anyhow::Result<Vec<DomainEvent>> {
    let rows: Vec<(serde_json::Value,)> = sqlx::query_as(
        "SELECT body FROM event_ledger WHERE customer_id = ANY($1) ORDER BY occurred_at, event_id",
    )
    .bind(customers)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(b,)| Ok(serde_json::from_value(b)?))
        .collect()
}

/// Purchases that name one of `referrers` as their referrer: (referrer, the purchase).
pub async fn referrals_of(
    conn: &mut PgConnection,
    referrers: &[&str],
) -> anyhow::Result<Vec<(String, DomainEvent)>> {
    let rows: Vec<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT body->'body'->>'referred_by', body FROM event_ledger
         WHERE kind = 'purchase' AND body->'body'->>'referred_by' = ANY($1)",
    )
    .bind(referrers)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(r, b)| Ok((r, serde_json::from_value(b)?)))
        .collect()
}
