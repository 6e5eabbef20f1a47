//! Query plans: key lookups in tables that grow never run on a plan made for a small table.

use kizuna::domain::ids::CustomerId;
use kizuna::store::{customers, outbox};
use kizuna_e2e::TestEnv;
use sqlx::PgConnection;

/// The connection's prepared statements that look keys up in customers or the outbox:
/// (statement, generic plans, custom plans).
async fn prepared_lookups(conn: &mut PgConnection) -> anyhow::Result<Vec<(String, i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements
         WHERE statement NOT LIKE '%pg_prepared_statements%'
           AND (statement LIKE '%FROM customers WHERE customer_id = ANY%'
                OR statement LIKE '%FROM outbox%')",
    )
    .fetch_all(&mut *conn)
    .await?)
}

/// Sequential and index scans of the customers table so far, with `conn`'s own counts in
/// (a backend flushes its counts when it goes idle, before it answers: forced here).
async fn customer_scans(
    pool: &sqlx::PgPool,
    conn: &mut PgConnection,
) -> anyhow::Result<(i64, i64)> {
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&mut *conn)
        .await?;
    Ok(sqlx::query_as(
        "SELECT seq_scan, COALESCE(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'customers'",
    )
    .fetch_one(pool)
    .await?)
}

/// Key lookups in tables that grow (customers; the outbox with a backlog) are planned with the
/// table as it is. A generic plan cached while the table was small is a sequential scan that
/// compares every row with every key: a 3,000-customer batch took 7 s that way on 100,000
/// customers, in the first minute of a fresh database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_lookups_never_keep_a_plan_made_for_a_small_table() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let pool = env.pool().await?;
    kizuna::store::migrate(&pool).await?;
    let mut conn = pool.acquire().await?;
    // A small, analyzed table: the planner's best plan for it is a sequential scan.
    sqlx::query(
        "INSERT INTO customers (customer_id, tier, lifetime_spend_minor, orders, home_partition, state)
         SELECT 'small-' || g, 'member', 0, 0, 0, '\\x00'::bytea FROM generate_series(1, 20) g",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query("ANALYZE customers, outbox")
        .execute(&mut *conn)
        .await?;
    let ids: Vec<CustomerId> = (0..50)
        .map(|i| CustomerId::parse(&format!("absent-{i}"), 128))
        .collect::<Result<_, _>>()?;
    let refs: Vec<&CustomerId> = ids.iter().collect();
    // PostgreSQL considers a generic plan from a prepared statement's sixth execution on.
    for _ in 0..12 {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        assert!(customers::load_for_update(&mut tx, &refs).await?.is_empty());
        assert!(
            outbox::lock_batch(&mut tx, &[0, 1, 2], 100, true)
                .await?
                .is_empty()
        );
        outbox::delete(&mut tx, &[1, 2, 3], true).await?;
        tx.commit().await?;
    }
    let generic: Vec<_> = prepared_lookups(&mut conn)
        .await?
        .into_iter()
        .filter(|(_, generic_plans, _)| *generic_plans > 0)
        .collect();
    assert!(
        generic.is_empty(),
        "statements running on a cached generic plan: {generic:?}"
    );

    // The table grows: the next lookup on this connection must use the key, not a plan that
    // scans every row. (Counted by PostgreSQL itself: a kept small-table plan is a seq scan.)
    sqlx::query(
        "INSERT INTO customers (customer_id, tier, lifetime_spend_minor, orders, home_partition, state)
         SELECT 'big-' || g, 'member', 0, 0, 0, '\\x00'::bytea FROM generate_series(1, 50000) g",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query("ANALYZE customers").execute(&mut *conn).await?;
    let before = customer_scans(&pool, &mut conn).await?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    assert!(customers::load_for_update(&mut tx, &refs).await?.is_empty());
    tx.commit().await?;
    let after = customer_scans(&pool, &mut conn).await?;
    assert_eq!(
        after.0, before.0,
        "the lookup on the grown table scanned every row (seq, idx before {before:?}, after {after:?})"
    );
    assert!(
        after.1 > before.1,
        "the lookup used an index: {before:?} → {after:?}"
    );

    // The check above sees what it looks for: the relay's steady-state statements (no
    // backlog) are the same text, prepared, and this connection's view finds them.
    for _ in 0..12 {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        outbox::lock_batch(&mut tx, &[0, 1, 2], 100, false).await?;
        outbox::delete(&mut tx, &[1, 2, 3], false).await?;
        tx.commit().await?;
    }
    let seen = prepared_lookups(&mut conn).await?;
    assert_eq!(
        seen.iter()
            .filter(|(_, generic, custom)| generic + custom >= 12)
            .count(),
        2,
        "the relay's two outbox statements, found by the check's patterns: {seen:?}"
    );
    drop(conn);
    pool.close().await;
    env.cleanup().await
}
