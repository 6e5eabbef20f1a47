//! PostgreSQL: the system of record. Each submodule owns one table and its queries.

pub mod audit;
pub mod changes;
pub mod clock;
pub mod customers;
pub mod ledger;
pub mod models;
pub mod offsets;
pub mod outbox;
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
