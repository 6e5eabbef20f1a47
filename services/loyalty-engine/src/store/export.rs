//! Everything kept about one customer, read for an access request
//! (`GET /v1/customers/{id}/export`): their row in every table that holds one, as JSON. The
//! erasure (`store::erasure::delete_rows`) deletes from the same tables; the e2e test checks the
//! export covers every table in which a search finds the id.

use serde_json::{Value, json};
use sqlx::PgPool;

use super::{comments, customers, ledger};

/// The customer's data, section by section; `None` when nothing is kept about them.
pub async fn customer_data(pool: &PgPool, customer_id: &str) -> anyhow::Result<Option<Value>> {
    let mut conn = pool.acquire().await?;
    // One snapshot of every table.
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let state = customers::get(&mut *tx, customer_id).await?;
    let ledger_rows: Vec<(Vec<u8>, String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT body, source, received_at FROM event_ledger WHERE customer_id = $1
          ORDER BY occurred_at, event_id",
    )
    .persistent(false)
    .bind(customer_id)
    .fetch_all(&mut *tx)
    .await?;
    let key = comments::existing_keys(&mut tx, &[customer_id]).await?;
    let key = key.get(customer_id).map(Vec::as_slice);
    let mut events = Vec::with_capacity(ledger_rows.len());
    for (body, source, received_at) in ledger_rows {
        let mut event = ledger::decode(&body)?;
        comments::open_event(&mut event, key);
        events.push(json!({
            "event": event,
            "source": source,
            "received_at": received_at,
        }));
    }
    let published: Vec<Value> = sqlx::query_scalar(
        "SELECT json_build_object('ce_id', ce_id, 'ce_type', ce_type, 'caused_by', caused_by,
                'effective_at', effective_at, 'payload', payload, 'logged_at', created_at)
           FROM output_log WHERE customer_id = $1 ORDER BY effective_at, ce_id",
    )
    .persistent(false)
    .bind(customer_id)
    .fetch_all(&mut *tx)
    .await?;
    let overrides = rows(
        &mut tx,
        "SELECT to_jsonb(t) - 'customer_id' FROM tier_overrides t WHERE customer_id = $1 ORDER BY id",
        customer_id,
    )
    .await?;
    let requests = rows(
        &mut tx,
        "SELECT to_jsonb(t) - 'customer_id' FROM points_redemptions t WHERE customer_id = $1
          ORDER BY created_at",
        customer_id,
    )
    .await?;
    let mut webhooks = serde_json::Map::new();
    // (table, the row as JSON): deliveries and dead letters hold the event's body as bytes.
    let with_body = "to_jsonb(t) - 'customer_id' - 'body'
                     || jsonb_build_object('body', convert_from(t.body, 'UTF8'))";
    for (table, row) in [
        ("webhook_deliveries", with_body),
        ("webhook_attempts", "to_jsonb(t) - 'customer_id'"),
        ("webhook_dead_letters", with_body),
    ] {
        let sql = format!("SELECT {row} FROM {table} t WHERE customer_id = $1 ORDER BY id");
        webhooks.insert(
            table.to_owned(),
            Value::Array(rows(&mut tx, &sql, customer_id).await?),
        );
    }
    tx.commit().await?;
    // The points movements with their field names (the state stores them positionally).
    let state = match state {
        Some(s) => {
            let mut v = serde_json::to_value(&s)?;
            if let Some(points) = v.get_mut("points") {
                points["movements"] = serde_json::to_value(&s.points.movements)?;
            }
            Some(v)
        }
        None => None,
    };
    let empty_webhooks = webhooks
        .values()
        .all(|v| v.as_array().is_some_and(Vec::is_empty));
    if state.is_none() && events.is_empty() && published.is_empty() && empty_webhooks {
        return Ok(None);
    }
    Ok(Some(json!({
        "customer_id": customer_id,
        "state": state,
        "events": events,
        "published": published,
        "tier_overrides": overrides,
        "points_requests": requests,
        "webhooks": webhooks,
    })))
}

async fn rows(
    conn: &mut sqlx::PgConnection,
    sql: &str,
    customer_id: &str,
) -> sqlx::Result<Vec<Value>> {
    sqlx::query_scalar(sql)
        .persistent(false)
        .bind(customer_id)
        .fetch_all(&mut *conn)
        .await
}
