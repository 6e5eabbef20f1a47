//! `engine_clock`: the event-time clock, the largest event time seen, for backfills and
//! simulations (`clock = "event-time"`).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::store::sql;

/// Moves the clock forward to `seen` (never back) and returns the clock.
pub async fn advance(
    conn: &mut PgConnection,
    group_id: &str,
    seen: Option<DateTime<Utc>>,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    if let Some(seen) = seen {
        sqlx::query(sql::CLOCK_ADVANCE)
            .bind(group_id)
            .bind(seen)
            .execute(&mut *conn)
            .await?;
    }
    read(conn, group_id).await
}

pub async fn read<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    group_id: &str,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    let row: Option<(DateTime<Utc>,)> =
        sqlx::query_as("SELECT max_event_time FROM engine_clock WHERE group_id = $1")
            .bind(group_id)
            .fetch_optional(executor)
            .await?;
    Ok(row.map(|(t,)| t))
}
