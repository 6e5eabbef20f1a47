//! `output_log` and `tier_overrides`: what was published and what operators did, for the
//! customer timeline and the audit trail.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::store::sql;

/// One published output, as the timeline shows it.
#[derive(Debug, Clone)]
pub struct LoggedOutput<'a> {
    pub customer_id: &'a str,
    pub ce_id: uuid::Uuid,
    pub ce_type: &'a str,
    pub caused_by: &'a str,
    pub effective_at: DateTime<Utc>,
    pub payload: &'a serde_json::Value,
}

pub async fn log_outputs(conn: &mut PgConnection, rows: &[LoggedOutput<'_>]) -> sqlx::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let customers: Vec<&str> = rows.iter().map(|r| r.customer_id).collect();
    let ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.ce_id).collect();
    let types: Vec<&str> = rows.iter().map(|r| r.ce_type).collect();
    let causes: Vec<&str> = rows.iter().map(|r| r.caused_by).collect();
    let times: Vec<DateTime<Utc>> = rows.iter().map(|r| r.effective_at).collect();
    let payloads: Vec<&serde_json::Value> = rows.iter().map(|r| r.payload).collect();
    sqlx::query(sql::OUTPUT_LOG_INSERT)
        .bind(&customers)
        .bind(&ids)
        .bind(&types)
        .bind(&causes)
        .bind(&times)
        .bind(&payloads)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Records a manual override in the audit trail.
#[allow(clippy::too_many_arguments)]
pub async fn record_override(
    conn: &mut PgConnection,
    customer_id: &str,
    previous_tier: &str,
    tier: &str,
    reason: &str,
    set_by: &str,
    set_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO tier_overrides (customer_id, previous_tier, tier, reason, set_by, set_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(customer_id)
    .bind(previous_tier)
    .bind(tier)
    .bind(reason)
    .bind(set_by)
    .bind(set_at)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Counts of outputs by two of their payload's fields: (first, second, count).
pub type Tally = Vec<(Option<String>, Option<String>, i64)>;

/// Segment changes published since `from`: (previous, new, count), with the protobuf enum
/// names of the payload (`SEGMENT_LOYAL`; no previous segment is NULL).
pub async fn segment_moves_since(pool: &PgPool, from: DateTime<Utc>) -> sqlx::Result<Tally> {
    tally_since(
        pool,
        "SELECT payload->>'previousSegment', payload->>'newSegment', count(*) FROM output_log
         WHERE ce_type = 'kizuna.v1.SegmentChanged' AND effective_at >= $1
         GROUP BY 1, 2",
        from,
    )
    .await
}

/// Churn alerts (a rise to medium or high) published since `from`: (play, new level, count),
/// with the protobuf enum names of the payload.
pub async fn churn_alerts_since(pool: &PgPool, from: DateTime<Utc>) -> sqlx::Result<Tally> {
    tally_since(
        pool,
        "SELECT payload->>'play', payload->>'newLevel', count(*) FROM output_log
         WHERE ce_type = 'kizuna.v1.ChurnRiskChanged' AND effective_at >= $1
           AND payload->>'newLevel' IN ('CHURN_LEVEL_MEDIUM', 'CHURN_LEVEL_HIGH')
         GROUP BY 1, 2",
        from,
    )
    .await
}

async fn tally_since(pool: &PgPool, sql: &'static str, from: DateTime<Utc>) -> sqlx::Result<Tally> {
    sqlx::query_as(sql).bind(from).fetch_all(pool).await
}

/// The manual overrides of a customer, newest first.
pub async fn overrides_of(
    pool: &sqlx::PgPool,
    customer_id: &str,
    limit: i64,
) -> sqlx::Result<Vec<OverrideRecord>> {
    sqlx::query_as(
        "SELECT previous_tier, tier, reason, set_by, set_at, expires_at FROM tier_overrides
         WHERE customer_id = $1 ORDER BY set_at DESC, id DESC LIMIT $2",
    )
    .bind(customer_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// One row of the override audit trail.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OverrideRecord {
    pub previous_tier: String,
    pub tier: String,
    pub reason: String,
    pub set_by: String,
    pub set_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}
