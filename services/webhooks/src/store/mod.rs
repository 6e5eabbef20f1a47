//! PostgreSQL (the engine's database; the schema is in the engine's migrations,
//! `0003_webhooks.sql`). Each submodule owns one table and its queries.

pub mod attempts;
pub mod dead_letters;
pub mod queue;
pub mod replay;
pub mod subscriptions;

use sqlx::PgExecutor;
use sqlx::postgres::PgRow;
use uuid::Uuid;

/// A page of a subscription's log rows, newest first: `sql` selects by `subscription_id = $1`
/// and `id < $2` (`before`, or from the newest), ordered by id descending, `LIMIT $3`.
async fn subscription_page<'e, T>(
    db: impl PgExecutor<'e>,
    sql: &'static str,
    subscription: Uuid,
    limit: i64,
    before: Option<i64>,
) -> sqlx::Result<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
{
    sqlx::query_as(sql)
        .bind(subscription)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(db)
        .await
}
