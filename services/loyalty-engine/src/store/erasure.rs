//! `erased_customers` and `privacy_keys`, and the deletes of an erasure: every row about one
//! customer, in the engine's tables and in the webhook service's (same database, schema in
//! these migrations). Other customers' records that name the erased one are rewritten by the
//! caller (`engine::erasure`), which decides what stands for the id.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// The advisory lock an erasure holds exclusively and every ingest batch shares
/// ([`share_with_erasures`]): an event is either applied before the erasure (and erased with
/// the rest) or judged after it (refused, or a new customer). An arbitrary constant.
const ERASURE_LOCK: i64 = 0x6b69_7a75_6e61_4552; // "kizunaER"

/// Waits for running ingest batches to finish and keeps new ones waiting until this
/// transaction ends.
pub async fn lock_out_ingest(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ERASURE_LOCK)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// For an ingest batch: waits for a running erasure, then returns whether any erased id is
/// still refused at `now` (one round trip; when none is, the batch checks nothing else).
pub async fn share_with_erasures(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let (_, refusing): ((), bool) = sqlx::query_as(
        "SELECT pg_advisory_xact_lock_shared($1),
                EXISTS (SELECT 1 FROM erased_customers WHERE refuse_until > $2)",
    )
    .bind(ERASURE_LOCK)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    Ok(refusing)
}

/// Of these subject hashes, those still refused at `now`.
pub async fn refused(
    conn: &mut PgConnection,
    hashes: &[String],
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT subject_hash FROM erased_customers
          WHERE subject_hash = ANY($1) AND refuse_until > $2",
    )
    .bind(hashes)
    .bind(now)
    .fetch_all(&mut *conn)
    .await
}

/// The key kept in the database, made (random, 32 bytes) if there is none yet.
pub async fn stored_key(conn: &mut PgConnection) -> sqlx::Result<Vec<u8>> {
    let fresh: [u8; 32] = rand::random();
    sqlx::query("INSERT INTO privacy_keys (id, erasure_key) VALUES (1, $1) ON CONFLICT DO NOTHING")
        .bind(&fresh[..])
        .execute(&mut *conn)
        .await?;
    sqlx::query_scalar("SELECT erasure_key FROM privacy_keys WHERE id = 1")
        .fetch_one(&mut *conn)
        .await
}

/// The key kept in the database, if one was made.
pub async fn existing_key(pool: &sqlx::PgPool) -> sqlx::Result<Option<Vec<u8>>> {
    sqlx::query_scalar("SELECT erasure_key FROM privacy_keys WHERE id = 1")
        .fetch_optional(pool)
        .await
}

/// Records an erasure (again: the later one counts).
pub async fn record(
    conn: &mut PgConnection,
    subject_hash: &str,
    erased_at: DateTime<Utc>,
    refuse_until: Option<DateTime<Utc>>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO erased_customers (subject_hash, erased_at, refuse_until) VALUES ($1, $2, $3)
         ON CONFLICT (subject_hash) DO UPDATE SET erased_at = $2, refuse_until = $3",
    )
    .bind(subject_hash)
    .bind(erased_at)
    .bind(refuse_until)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The customers who referred `customer_id` (named by their purchases in the ledger).
pub async fn referrers_of(conn: &mut PgConnection, customer_id: &str) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT DISTINCT referred_by FROM event_ledger
          WHERE customer_id = $1 AND referred_by IS NOT NULL",
    )
    .bind(customer_id)
    .fetch_all(&mut *conn)
    .await
}

/// Other customers' ledger rows naming `referrer` (their purchases it referred), locked:
/// (customer, event id, body).
pub async fn referred_purchases(
    conn: &mut PgConnection,
    referrer: &str,
) -> sqlx::Result<Vec<(String, String, Vec<u8>)>> {
    sqlx::query_as(
        "SELECT customer_id, event_id, body FROM event_ledger
          WHERE referred_by = $1 AND customer_id <> $1 FOR UPDATE",
    )
    .bind(referrer)
    .fetch_all(&mut *conn)
    .await
}

/// Rewrites ledger rows' referrer and body.
pub async fn rewrite_referrer(
    conn: &mut PgConnection,
    rows: &[(String, String, Vec<u8>)],
    referrer: &str,
) -> sqlx::Result<()> {
    let customers: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let events: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    let bodies: Vec<&[u8]> = rows.iter().map(|r| r.2.as_slice()).collect();
    sqlx::query(
        "UPDATE event_ledger l SET referred_by = $4, body = u.body
           FROM unnest($1::text[], $2::text[], $3::bytea[]) AS u(customer_id, event_id, body)
          WHERE l.customer_id = u.customer_id AND l.event_id = u.event_id",
    )
    .bind(&customers)
    .bind(&events)
    .bind(&bodies)
    .bind(referrer)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Rows deleted by [`delete_rows`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    pub ledger_events: i64,
    pub output_log_entries: i64,
    /// The state, overrides, redemption requests, webhook deliveries, attempts, dead letters,
    /// the comment key.
    pub other_rows: i64,
}

/// Deletes every row about `customer_id` (the outbox aside: `outbox::remove_customer`).
pub async fn delete_rows(conn: &mut PgConnection, customer_id: &str) -> sqlx::Result<Deleted> {
    let mut other_rows = 0;
    for table in [
        "customers",
        "tier_overrides",
        "points_redemptions",
        "webhook_deliveries",
        "webhook_attempts",
        "webhook_dead_letters",
        // Crypto-shredding: sealed comments in copies of the ledger cannot be opened any more.
        "customer_keys",
    ] {
        other_rows += delete_from(conn, table, customer_id).await?;
    }
    Ok(Deleted {
        ledger_events: delete_from(conn, "event_ledger", customer_id).await?,
        output_log_entries: delete_from(conn, "output_log", customer_id).await?,
        other_rows,
    })
}

/// Deletes the rows of `customer_id` from `table` (one of the names above); returns how many.
async fn delete_from(conn: &mut PgConnection, table: &str, customer_id: &str) -> sqlx::Result<i64> {
    let n = sqlx::query(&format!("DELETE FROM {table} WHERE customer_id = $1"))
        .bind(customer_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Whether this subject hash was ever erased.
pub async fn was_erased(conn: &mut PgConnection, subject_hash: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM erased_customers WHERE subject_hash = $1)")
        .bind(subject_hash)
        .fetch_one(&mut *conn)
        .await
}
