//! `webhook_deliveries`: the delivery queue, one stream per (subscription, customer).
//!
//! Only a stream's head (its oldest row) has a `next_attempt_at`; the rows behind it wait with
//! NULL and the next one is promoted when the head leaves the queue (delivered or
//! dead-lettered). So a customer's events go out in order, a failing customer only holds up
//! their own stream, and the dispatcher's scan of due rows only ever meets heads.
//!
//! The race between queueing behind a head and the head leaving is closed by a row lock: the
//! enqueue takes `FOR KEY SHARE` on the heads of its streams, which a head's `DELETE` waits
//! for, so the promotion always sees the rows queued behind it. The claim also checks that no
//! older row exists, so two heads of one stream (two instances queueing for the same new stream
//! at once) still go out one after the other.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// An event to queue for a subscription.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub subscription_id: Uuid,
    pub customer_id: String,
    pub ce_id: Uuid,
    pub ce_type: &'static str,
    pub body: Vec<u8>,
}

/// Queues deliveries in the given order (the order of each stream); an event already waiting
/// for the same subscription is not queued twice. Returns how many rows were added.
pub async fn enqueue(conn: &mut PgConnection, rows: &[NewDelivery]) -> sqlx::Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let subs: Vec<Uuid> = rows.iter().map(|r| r.subscription_id).collect();
    let customers: Vec<&str> = rows.iter().map(|r| r.customer_id.as_str()).collect();
    let ids: Vec<Uuid> = rows.iter().map(|r| r.ce_id).collect();
    let types: Vec<&str> = rows.iter().map(|r| r.ce_type).collect();
    let bodies: Vec<&[u8]> = rows.iter().map(|r| r.body.as_slice()).collect();
    // Hold the heads of these streams until commit (see the module note).
    sqlx::query(
        "SELECT 1 FROM webhook_deliveries d
         WHERE (d.subscription_id, d.customer_id) IN (SELECT * FROM unnest($1::uuid[], $2::text[]))
           AND d.next_attempt_at IS NOT NULL
         ORDER BY d.id
         FOR KEY SHARE",
    )
    .bind(&subs)
    .bind(&customers)
    .execute(&mut *conn)
    .await?;
    let done = sqlx::query(
        "INSERT INTO webhook_deliveries (subscription_id, customer_id, ce_id, ce_type, body, next_attempt_at)
         SELECT s, c, i, t, b,
                CASE WHEN row_number() OVER (PARTITION BY s, c ORDER BY n) = 1
                      AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                                      WHERE d.subscription_id = s AND d.customer_id = c)
                     THEN now() END
         FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::bytea[])
              WITH ORDINALITY AS x(s, c, i, t, b, n)
         ORDER BY n
         ON CONFLICT (subscription_id, ce_id) DO NOTHING",
    )
    .bind(&subs)
    .bind(&customers)
    .bind(&ids)
    .bind(&types)
    .bind(&bodies)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// A delivery claimed for one attempt.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub subscription_id: Uuid,
    pub customer_id: String,
    pub ce_id: Uuid,
    pub ce_type: String,
    pub body: Vec<u8>,
    /// This attempt's number, from 1.
    pub attempt: i32,
    pub first_attempt_at: DateTime<Utc>,
}

/// Claims up to `limit` due stream heads of active subscriptions, at most `per_subscription`
/// in flight per subscription (counting claims already out), for `lease`.
pub async fn claim<'e>(
    db: impl PgExecutor<'e>,
    limit: i64,
    per_subscription: i64,
    lease: std::time::Duration,
) -> sqlx::Result<Vec<Claimed>> {
    type Row = (i64, Uuid, String, Uuid, String, Vec<u8>, i32, DateTime<Utc>);
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    // Per active subscription with a free share of the slots, its earliest due heads (up to
    // its free share); then the earliest of those overall. A subscription at its share is not
    // even scanned, so however many customers a hanging receiver has waiting, the others'
    // events are still picked.
    let rows: Vec<Row> = sqlx::query_as(
        "WITH busy AS (
             SELECT subscription_id, count(*) AS n FROM webhook_deliveries
             WHERE lease_until IS NOT NULL AND lease_until >= now()
             GROUP BY subscription_id
         ), pick AS (
             SELECT x.id FROM webhook_subscriptions s
             LEFT JOIN busy b ON b.subscription_id = s.id
             CROSS JOIN LATERAL (
                 SELECT d.id, d.next_attempt_at FROM webhook_deliveries d
                 WHERE d.subscription_id = s.id
                   AND d.next_attempt_at <= now()
                   AND (d.lease_until IS NULL OR d.lease_until < now())
                   AND NOT EXISTS (SELECT 1 FROM webhook_deliveries o
                                   WHERE o.subscription_id = d.subscription_id
                                     AND o.customer_id = d.customer_id AND o.id < d.id)
                 ORDER BY d.next_attempt_at
                 LIMIT $2 - COALESCE(b.n, 0)
             ) x
             WHERE s.status = 'active' AND COALESCE(b.n, 0) < $2
             ORDER BY x.next_attempt_at, x.id
             LIMIT $1
         )
         UPDATE webhook_deliveries d
         SET lease_until = now() + make_interval(secs => $3::float8 / 1000),
             attempts = d.attempts + 1,
             first_attempt_at = COALESCE(d.first_attempt_at, now())
         FROM pick
         WHERE d.id = pick.id AND (d.lease_until IS NULL OR d.lease_until < now())
         RETURNING d.id, d.subscription_id, d.customer_id, d.ce_id, d.ce_type, d.body, d.attempts, d.first_attempt_at",
    )
    .bind(limit)
    .bind(per_subscription)
    .bind(lease_ms as f64)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, subscription_id, customer_id, ce_id, ce_type, body, attempt, first)| Claimed {
                id,
                subscription_id,
                customer_id,
                ce_id,
                ce_type,
                body,
                attempt,
                first_attempt_at: first,
            },
        )
        .collect())
}

/// Removes a head that left the queue (delivered or dead-lettered) and promotes the next row
/// of its stream. False if the row was gone already (its subscription was deleted).
pub async fn finish(conn: &mut PgConnection, id: i64) -> sqlx::Result<bool> {
    let stream: Option<(Uuid, String)> = sqlx::query_as(
        "DELETE FROM webhook_deliveries WHERE id = $1 RETURNING subscription_id, customer_id",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((subscription_id, customer_id)) = stream else {
        return Ok(false);
    };
    sqlx::query(
        "UPDATE webhook_deliveries SET next_attempt_at = COALESCE(next_attempt_at, now())
         WHERE id = (SELECT min(id) FROM webhook_deliveries
                     WHERE subscription_id = $1 AND customer_id = $2)",
    )
    .bind(subscription_id)
    .bind(&customer_id)
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

/// A failed attempt: try again at `next_at`.
pub async fn retry_later(
    conn: &mut PgConnection,
    id: i64,
    next_at: DateTime<Utc>,
    status: Option<u16>,
    error: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE webhook_deliveries SET next_attempt_at = $2, lease_until = NULL,
                last_status = $3, last_error = $4
         WHERE id = $1",
    )
    .bind(id)
    .bind(next_at)
    .bind(status.map(i32::from))
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves a head to its subscription's dead letters and promotes the next row of its stream.
pub async fn dead_letter(
    conn: &mut PgConnection,
    id: i64,
    status: Option<u16>,
    error: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO webhook_dead_letters (subscription_id, customer_id, ce_id, ce_type, body,
                                           attempts, last_status, last_error, first_attempt_at)
         SELECT subscription_id, customer_id, ce_id, ce_type, body, attempts, $2, $3, first_attempt_at
         FROM webhook_deliveries WHERE id = $1",
    )
    .bind(id)
    .bind(status.map(i32::from))
    .bind(error)
    .execute(&mut *conn)
    .await?;
    finish(conn, id).await?;
    Ok(())
}

/// Rows waiting (all subscriptions) and the age of the oldest, in seconds.
pub async fn depth<'e>(db: impl PgExecutor<'e>) -> sqlx::Result<(i64, f64)> {
    sqlx::query_as(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(enqueued_at))::float8, 0)
         FROM webhook_deliveries",
    )
    .fetch_one(db)
    .await
}

/// Rows waiting for one subscription.
pub async fn pending_for<'e>(db: impl PgExecutor<'e>, subscription: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE subscription_id = $1")
        .bind(subscription)
        .fetch_one(db)
        .await
}

/// Gives a claimed delivery back unsent (its subscription was paused or deleted meanwhile).
pub async fn release<'e>(db: impl PgExecutor<'e>, id: i64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE webhook_deliveries SET lease_until = NULL,
                first_attempt_at = CASE WHEN attempts <= 1 THEN NULL ELSE first_attempt_at END,
                attempts = GREATEST(attempts - 1, 0)
         WHERE id = $1",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}
