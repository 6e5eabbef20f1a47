//! `outbox`: output events and dead letters waiting for the relay, written in the same
//! transaction as the state change that caused them.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::store::sql;

/// Channel notified when rows are added, so the relay wakes at once.
pub const NOTIFY_CHANNEL: &str = "kizuna_outbox";

/// A message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Deterministic id (the `ce_id` header, also on dead letters): the same output of the
    /// same cause always has the same id, which is how the relay recognises what it already
    /// published before a crash.
    pub ce_id: String,
    /// Input partition that produced it: its owner publishes it.
    pub partition: i32,
    pub customer_id: Option<String>,
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A stored row, ready to publish.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub message: OutboxMessage,
}

fn encode_headers(headers: &[(String, Vec<u8>)]) -> serde_json::Value {
    serde_json::Value::Array(
        headers
            .iter()
            .map(|(k, v)| serde_json::json!([k, String::from_utf8_lossy(v)]))
            .collect(),
    )
}

fn decode_headers(value: &serde_json::Value) -> Vec<(String, Vec<u8>)> {
    value
        .as_array()
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|pair| {
                    let k = pair.get(0)?.as_str()?;
                    let v = pair.get(1)?.as_str()?;
                    Some((k.to_owned(), v.as_bytes().to_vec()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Appends messages and notifies the relay (delivered when the transaction commits).
pub async fn insert(conn: &mut PgConnection, messages: &[OutboxMessage]) -> sqlx::Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let ce_ids: Vec<&str> = messages.iter().map(|m| m.ce_id.as_str()).collect();
    let partitions: Vec<i32> = messages.iter().map(|m| m.partition).collect();
    let customers: Vec<Option<&str>> = messages.iter().map(|m| m.customer_id.as_deref()).collect();
    let topics: Vec<&str> = messages.iter().map(|m| m.topic.as_str()).collect();
    let keys: Vec<Option<&[u8]>> = messages.iter().map(|m| m.key.as_deref()).collect();
    let payloads: Vec<&[u8]> = messages.iter().map(|m| m.payload.as_slice()).collect();
    let headers: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| encode_headers(&m.headers))
        .collect();
    sqlx::query(sql::OUTBOX_INSERT)
        .bind(&ce_ids)
        .bind(&partitions)
        .bind(&customers)
        .bind(&topics)
        .bind(&keys)
        .bind(&payloads)
        .bind(&headers)
        .bind(NOTIFY_CHANNEL)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Locks the oldest rows of the given partitions, in insertion order, for this transaction.
/// Rows another relay holds are skipped, so two relays never publish the same row at once.
///
/// `backlog`: the outbox may be large (the last round was full), so the statement is planned
/// for the table as it is now, not with a plan cached while it was small (see the store
/// module's note on plans).
pub async fn lock_batch(
    conn: &mut PgConnection,
    partitions: &[i32],
    limit: i64,
    backlog: bool,
) -> sqlx::Result<Vec<OutboxRow>> {
    type Row = (
        i64,
        DateTime<Utc>,
        String,
        i32,
        Option<String>,
        String,
        Option<Vec<u8>>,
        Vec<u8>,
        serde_json::Value,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, created_at, ce_id, partition, customer_id, topic, key, payload, headers FROM outbox
         WHERE partition = ANY($1) ORDER BY id LIMIT $2
         FOR UPDATE SKIP LOCKED",
    )
    .persistent(!backlog)
    .bind(partitions)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, created_at, ce_id, partition, customer_id, topic, key, payload, headers)| {
                OutboxRow {
                    id,
                    created_at,
                    message: OutboxMessage {
                        ce_id,
                        partition,
                        customer_id,
                        topic,
                        key,
                        payload,
                        headers: decode_headers(&headers),
                    },
                }
            },
        )
        .collect())
}

/// Serialises relay rounds per partition: a transaction-scoped advisory lock for each, taken
/// in partition order (so two relays cannot deadlock).
pub async fn lock_partitions(conn: &mut PgConnection, partitions: &[i32]) -> sqlx::Result<()> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(7317, p) FROM (SELECT unnest($1::int[]) AS p ORDER BY 1) s",
    )
    .bind(partitions)
    .execute(conn)
    .await?;
    Ok(())
}

/// The oldest pending row's creation time and the highest pending id, for the partitions.
pub async fn pending_span(
    conn: &mut PgConnection,
    partitions: &[i32],
) -> sqlx::Result<(Option<DateTime<Utc>>, Option<i64>)> {
    sqlx::query_as("SELECT min(created_at), max(id) FROM outbox WHERE partition = ANY($1)")
        .bind(partitions)
        .fetch_one(conn)
        .await
}

/// The topics pending rows of the partitions go to.
pub async fn pending_topics(
    conn: &mut PgConnection,
    partitions: &[i32],
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT DISTINCT topic FROM outbox WHERE partition = ANY($1) ORDER BY 1")
        .bind(partitions)
        .fetch_all(conn)
        .await
}

/// Removes published rows. `backlog` as for [`lock_batch`].
pub async fn delete(conn: &mut PgConnection, ids: &[i64], backlog: bool) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
        .persistent(!backlog)
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// Rows waiting and the age of the oldest, in seconds.
pub async fn backlog(pool: &PgPool) -> sqlx::Result<(i64, f64)> {
    sqlx::query_as(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0) FROM outbox",
    )
    .fetch_one(pool)
    .await
}
