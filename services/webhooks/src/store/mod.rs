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

/// A row of a subscription's log (its attempts, its dead letters), read a page at a time.
pub trait LogRow: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin {
    /// Selects the rows with `subscription_id = $1` and `id < $2`, by id descending, `LIMIT $3`.
    const PAGE: &'static str;
}

/// A page of a subscription's log, newest first; `before` pages back by id.
pub async fn log_page<'e, T: LogRow>(
    db: impl PgExecutor<'e>,
    subscription: Uuid,
    limit: i64,
    before: Option<i64>,
) -> sqlx::Result<Vec<T>> {
    sqlx::query_as(T::PAGE)
        .bind(subscription)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(db)
        .await
}
