//! Replays read the engine's `output_log` (every output it published, with its `ce_id` and
//! payload; see `kizuna::store::audit`) by the time the engine recorded it.
//!
//! `output_log` has no index on `created_at` (adding one would block the engine's writes while
//! it is built), so each page is a scan of the table: a replay is a rare operator action.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// One logged output.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Logged {
    pub customer_id: String,
    pub ce_id: Uuid,
    pub ce_type: String,
    pub effective_at: DateTime<Utc>,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// Where a page ends, to start the next one after it.
pub type Cursor = (DateTime<Utc>, String, DateTime<Utc>, Uuid);

/// Outputs of the given types recorded in `[since, until)`, in the engine's commit order
/// (`created_at`; outputs of one batch in their effective time), after `after`.
pub async fn page<'e>(
    db: impl PgExecutor<'e>,
    types: &[&str],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    after: Option<&Cursor>,
    limit: i64,
) -> sqlx::Result<Vec<Logged>> {
    let (after_time, after_customer, after_effective, after_id) = match after {
        Some((t, c, e, i)) => (Some(*t), Some(c.as_str()), Some(*e), Some(*i)),
        None => (None, None, None, None),
    };
    sqlx::query_as(
        "SELECT customer_id, ce_id, ce_type, effective_at, payload, created_at FROM output_log
         WHERE created_at >= $1 AND created_at < $2 AND ce_type = ANY($3)
           AND ($4::timestamptz IS NULL
                OR (created_at, customer_id, effective_at, ce_id) > ($4, $5, $6, $7))
         ORDER BY created_at, customer_id, effective_at, ce_id
         LIMIT $8",
    )
    .persistent(false)
    .bind(since)
    .bind(until)
    .bind(types)
    .bind(after_time)
    .bind(after_customer)
    .bind(after_effective)
    .bind(after_id)
    .bind(limit)
    .fetch_all(db)
    .await
}
