//! `consumer_offsets`: where each input partition stands, stored with the state it produced.

use std::collections::HashMap;

use sqlx::PgConnection;

use crate::store::sql;

/// (topic, partition) → next offset to consume.
pub type Positions = HashMap<(String, i32), i64>;

/// Locks the rows of the given partitions for this transaction (creating them at 0 when new)
/// and returns their next offsets, in one statement: the no-op update of an existing row takes
/// its row lock. Everything below a partition's next offset was applied by an earlier
/// transaction, possibly by another instance, and must be skipped. Rows are locked in
/// (topic, partition) order, so two transactions cannot deadlock on them.
pub async fn lock(
    conn: &mut PgConnection,
    group_id: &str,
    partitions: &[(String, i32)],
) -> sqlx::Result<Positions> {
    let mut sorted: Vec<&(String, i32)> = partitions.iter().collect();
    sorted.sort();
    sorted.dedup();
    let topics: Vec<&str> = sorted.iter().map(|(t, _)| t.as_str()).collect();
    let parts: Vec<i32> = sorted.iter().map(|(_, p)| *p).collect();
    let rows: Vec<(String, i32, i64)> = sqlx::query_as(sql::OFFSETS_LOCK)
        .bind(group_id)
        .bind(&topics)
        .bind(&parts)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect())
}

/// Stores new next offsets (only ever forwards).
pub async fn advance(
    conn: &mut PgConnection,
    group_id: &str,
    positions: &Positions,
) -> sqlx::Result<()> {
    let mut topics = Vec::with_capacity(positions.len());
    let mut parts = Vec::with_capacity(positions.len());
    let mut offsets = Vec::with_capacity(positions.len());
    for ((t, p), o) in positions {
        topics.push(t.as_str());
        parts.push(*p);
        offsets.push(*o);
    }
    sqlx::query(sql::OFFSETS_ADVANCE)
        .bind(group_id)
        .bind(&topics)
        .bind(&parts)
        .bind(&offsets)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The stored next offsets of a consumer group, for the topics given.
pub async fn load<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    group_id: &str,
    topics: &[String],
) -> sqlx::Result<Positions> {
    let rows: Vec<(String, i32, i64)> = sqlx::query_as(
        "SELECT topic, partition, next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = ANY($2)",
    )
    .bind(group_id)
    .bind(topics)
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect())
}
