//! `dead_letter_counts`: dead letters per hour (engine time) and reason, counted in the batch
//! transaction that queues them, for the console's "last 24 hours".

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sqlx::{PgConnection, PgPool};

use crate::store::sql;

/// Adds the batch's dead letters (one reason per letter) to the hour of `now`.
pub async fn count(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    reasons: &[&str],
) -> sqlx::Result<()> {
    if reasons.is_empty() {
        return Ok(());
    }
    let mut per: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    for r in reasons {
        *per.entry(r).or_default() += 1;
    }
    let hour = now.duration_trunc(TimeDelta::hours(1)).unwrap_or(now);
    let keys: Vec<&str> = per.keys().copied().collect();
    let ns: Vec<i64> = per.values().copied().collect();
    // Sorted keys: concurrent batches lock the rows in the same order.
    sqlx::query(sql::DEAD_LETTERS_COUNT)
        .bind(hour)
        .bind(&keys)
        .bind(&ns)
        .execute(conn)
        .await?;
    Ok(())
}

/// Dead letters per reason since `from` (whole hours: the hour containing `from` counts).
pub async fn since(pool: &PgPool, from: DateTime<Utc>) -> sqlx::Result<Vec<(String, i64)>> {
    let hour = from.duration_trunc(TimeDelta::hours(1)).unwrap_or(from);
    sqlx::query_as(
        "SELECT reason, sum(n)::bigint FROM dead_letter_counts WHERE hour >= $1
         GROUP BY reason ORDER BY 2 DESC, 1",
    )
    .bind(hour)
    .fetch_all(pool)
    .await
}
