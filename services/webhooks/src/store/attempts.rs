//! `webhook_attempts`: the delivery log, every attempt with its answer and latency.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// One attempt as the log keeps it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Attempt {
    pub id: i64,
    pub subscription_id: Uuid,
    pub ce_id: Uuid,
    pub ce_type: String,
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub latency_ms: f64,
    pub attempted_at: DateTime<Utc>,
}

/// What an attempt is recorded with.
#[derive(Debug, Clone)]
pub struct NewAttempt<'a> {
    pub subscription_id: Uuid,
    pub customer_id: &'a str,
    pub ce_id: Uuid,
    pub ce_type: &'a str,
    pub attempt: i32,
    pub status_code: Option<u16>,
    pub error: Option<&'a str>,
    pub latency_ms: f64,
}

pub async fn record(conn: &mut PgConnection, a: &NewAttempt<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO webhook_attempts (subscription_id, customer_id, ce_id, ce_type, attempt, status_code, error, latency_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(a.subscription_id)
    .bind(a.customer_id)
    .bind(a.ce_id)
    .bind(a.ce_type)
    .bind(a.attempt)
    .bind(a.status_code.map(i32::from))
    .bind(a.error)
    .bind(a.latency_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// A subscription's latest attempts, newest first, a page at a time.
impl super::LogRow for Attempt {
    const PAGE: &'static str = "SELECT id, subscription_id, ce_id, ce_type, attempt, status_code, error, latency_ms, attempted_at
         FROM webhook_attempts WHERE subscription_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3";
}

/// Deletes attempts older than `before`; returns how many.
pub async fn prune<'e>(db: impl PgExecutor<'e>, before: DateTime<Utc>) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM webhook_attempts WHERE attempted_at < $1")
        .bind(before)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}
