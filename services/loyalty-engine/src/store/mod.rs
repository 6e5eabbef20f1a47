//! PostgreSQL: the system of record. Each submodule owns one table and its queries.
//!
//! A note on plans. sqlx prepares every statement once per connection, and after five
//! executions PostgreSQL may switch a prepared statement to a generic plan that it keeps for the
//! connection's life. A generic plan made while a table was small (a new deployment, the first
//! seconds of a backfill) is a sequential scan; when the table has grown, `customer_id =
//! ANY($1)` over it compares every row with every key, and a 3,000-customer batch took 7 s on a
//! 100,000-row table. So statements that look rows up by key in a table that grows without
//! bound (customers, event_ledger, output_log) are `persistent(false)`: planned at each
//! execution with the real parameters and the table's current size, for one more round trip.
//! The outbox is small in steady state and large only with a backlog (after a broker outage),
//! so the relay's statements are prepared while it keeps up and planned afresh while its rounds
//! come back full. Inserts and upserts (`ON CONFLICT` always goes through the unique index) and
//! lookups in small tables stay prepared. Forcing custom plans for every statement instead
//! (`plan_cache_mode`) cost a third more latency at 10k events/s here.

pub mod audit;
pub mod churn_weights;
pub mod clock;
pub mod comments;
pub mod customers;
pub mod dead_letters;
pub mod erasure;
pub mod export;
pub mod ledger;
pub mod models;
pub mod offsets;
pub mod outbox;
pub mod points;
pub mod sql;
pub mod timeline;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The migrations compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens a pool. Connections are made lazily, so the engine starts (not ready) while
/// PostgreSQL is still down.
/// TLS follows the URL's `sslmode` (`require`, `verify-ca`, `verify-full` with `sslrootcert`).
/// Connections identify themselves as `application_name = kizuna`.
pub fn pool(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = sqlx::postgres::PgConnectOptions::from_str(url)
        .context("invalid database url")?
        .application_name("kizuna");
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options))
}

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("applying database migrations")
}

/// A round trip to the database, for readiness.
pub async fn ping(pool: &PgPool) -> bool {
    sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(pool)
        .await
        .is_ok()
}
