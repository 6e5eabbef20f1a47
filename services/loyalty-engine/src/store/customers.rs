//! `customers`: one row per customer with the full domain state.

use std::collections::HashMap;

use sqlx::PgConnection;

use crate::domain::ids::CustomerId;
use crate::domain::state::CustomerState;

/// Loads and locks the given customers' rows for this transaction. Ids are locked in sorted
/// order, so concurrent batches cannot deadlock.
pub async fn load_for_update(
    conn: &mut PgConnection,
    ids: &[&CustomerId],
) -> anyhow::Result<HashMap<CustomerId, CustomerState>> {
    let mut keys: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    let rows: Vec<(serde_json::Value,)> = sqlx::query_as(
        "SELECT state FROM customers WHERE customer_id = ANY($1) ORDER BY customer_id FOR UPDATE",
    )
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for (state,) in rows {
        let state: CustomerState = serde_json::from_value(state)?;
        out.insert(state.customer_id.clone(), state);
    }
    Ok(out)
}

/// Reads one customer's state.
pub async fn get<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    id: &str,
) -> anyhow::Result<Option<CustomerState>> {
    let row: Option<(serde_json::Value,)> =
        sqlx::query_as("SELECT state FROM customers WHERE customer_id = $1")
            .bind(id)
            .fetch_optional(executor)
            .await?;
    Ok(row.map(|(s,)| serde_json::from_value(s)).transpose()?)
}

/// Writes states with one set-based statement.
pub async fn upsert(
    conn: &mut PgConnection,
    states: &[(&CustomerState, i32)],
) -> anyhow::Result<()> {
    if states.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(states.len());
    let mut tiers = Vec::with_capacity(states.len());
    let mut spend = Vec::with_capacity(states.len());
    let mut orders = Vec::with_capacity(states.len());
    let mut partitions = Vec::with_capacity(states.len());
    let mut docs = Vec::with_capacity(states.len());
    for (state, partition) in states {
        ids.push(state.customer_id.as_str());
        tiers.push(state.tier.as_str());
        spend.push(state.lifetime_spend_minor);
        orders.push(state.orders);
        partitions.push(*partition);
        docs.push(serde_json::to_value(state)?);
    }
    sqlx::query(
        "INSERT INTO customers (customer_id, tier, lifetime_spend_minor, orders, home_partition, state, updated_at)
         SELECT *, now() FROM unnest($1::text[], $2::text[], $3::bigint[], $4::float8[], $5::int[], $6::jsonb[])
         ON CONFLICT (customer_id) DO UPDATE SET
             tier = EXCLUDED.tier,
             lifetime_spend_minor = EXCLUDED.lifetime_spend_minor,
             orders = EXCLUDED.orders,
             home_partition = EXCLUDED.home_partition,
             state = EXCLUDED.state,
             updated_at = now()",
    )
    .bind(&ids)
    .bind(&tiers)
    .bind(&spend)
    .bind(&orders)
    .bind(&partitions)
    .bind(&docs)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
