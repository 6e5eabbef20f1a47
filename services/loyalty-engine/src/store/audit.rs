//! `output_log` and `tier_overrides`: what was published and what operators did, for the
//! customer timeline and the audit trail.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

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
    sqlx::query(
        "INSERT INTO output_log (customer_id, ce_id, ce_type, caused_by, effective_at, payload)
         SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[])
         ON CONFLICT DO NOTHING",
    )
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
