//! `customers`: one row per customer with the full domain state.

use std::collections::HashMap;

use sqlx::PgConnection;

use crate::domain::ids::CustomerId;
use crate::domain::metrics::Metrics;
use crate::domain::state::CustomerState;
use crate::store::points::Columns;
use crate::store::sql;

/// The stored form of a state: MessagePack with field names.
pub fn encode(state: &CustomerState) -> anyhow::Result<Vec<u8>> {
    Ok(rmp_serde::to_vec_named(state)?)
}

pub fn decode(bytes: &[u8]) -> anyhow::Result<CustomerState> {
    Ok(rmp_serde::from_slice(bytes)?)
}

/// A stored customer, as loaded under a row lock.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub state: CustomerState,
    /// The input partition number whose owner relays this customer's outputs and sweeps them.
    /// Fixed when the row is created, so all of a customer's outputs queue in one partition of
    /// the outbox, in the order they were written, whichever partitions their events arrive on.
    pub home_partition: i32,
    /// The row's version: a write says which version it replaces.
    pub version: i64,
}

/// The version a write expects to replace when no row exists yet.
pub const NO_ROW: i64 = 0;

fn loaded((state, home_partition, version): (Vec<u8>, i32, i64)) -> anyhow::Result<Loaded> {
    Ok(Loaded {
        state: decode(&state)?,
        home_partition,
        version,
    })
}

/// Loads and locks the given customers' rows for this transaction. Ids are locked in sorted
/// order, so concurrent batches cannot deadlock. A customer without a row is absent from the
/// result: nothing is locked for them, which is why `upsert` checks versions.
pub async fn load_for_update(
    conn: &mut PgConnection,
    ids: &[&CustomerId],
) -> anyhow::Result<HashMap<CustomerId, Loaded>> {
    let mut keys: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    let rows: Vec<(Vec<u8>, i32, i64)> = sqlx::query_as(sql::CUSTOMERS_LOCK)
        .persistent(false) // planned per batch: see the store module's note on plans
        .bind(&keys)
        .fetch_all(&mut *conn)
        .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let row = loaded(row)?;
        out.insert(row.state.customer_id.clone(), row);
    }
    Ok(out)
}

/// Reads one customer's state.
pub async fn get<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    id: &str,
) -> anyhow::Result<Option<CustomerState>> {
    let row: Option<(Vec<u8>,)> =
        sqlx::query_as("SELECT state FROM customers WHERE customer_id = $1")
            .persistent(false)
            .bind(id)
            .fetch_optional(executor)
            .await?;
    row.map(|(s,)| decode(&s)).transpose()
}

/// A state to write, with the projections kept in columns for queries.
#[derive(Debug)]
pub struct Row<'a> {
    pub state: &'a CustomerState,
    pub home_partition: i32,
    pub metrics: &'a Metrics,
    /// The version of the row this write replaces, as loaded; `NO_ROW` for a customer whose
    /// row did not exist when the writer looked.
    pub replaces: i64,
    /// The points columns (`store::points::Columns::of` the state's book).
    pub points: Columns,
}

/// Writes states with one set-based statement, each only if the stored row is still the one it
/// replaces. Returns the indexes of the rows that were not written because their expectation
/// was stale: a customer another transaction created after this one looked (rows loaded with
/// `load_for_update` are locked, so they cannot change under the writer). Such a row is left
/// locked by this transaction: load it again and re-apply.
pub async fn upsert(conn: &mut PgConnection, states: &[Row<'_>]) -> anyhow::Result<Vec<usize>> {
    if states.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = Vec::with_capacity(states.len());
    let mut tiers = Vec::with_capacity(states.len());
    let mut spend = Vec::with_capacity(states.len());
    let mut orders = Vec::with_capacity(states.len());
    let mut partitions = Vec::with_capacity(states.len());
    let mut docs = Vec::with_capacity(states.len());
    let mut segments = Vec::with_capacity(states.len());
    let mut next_checks = Vec::with_capacity(states.len());
    let mut churn_levels = Vec::with_capacity(states.len());
    let mut versions = Vec::with_capacity(states.len());
    let mut plays = Vec::with_capacity(states.len());
    let mut at_risk = Vec::with_capacity(states.len());
    let mut available = Vec::with_capacity(states.len());
    let mut pending = Vec::with_capacity(states.len());
    let mut debt = Vec::with_capacity(states.len());
    let mut expiring = Vec::with_capacity(states.len());
    for row in states {
        let state = row.state;
        ids.push(state.customer_id.as_str());
        tiers.push(state.tier());
        spend.push(row.metrics.lifetime_spend_minor);
        orders.push(row.metrics.orders);
        partitions.push(row.home_partition);
        docs.push(encode(state)?);
        segments.push(state.status.segment.map(|s| s.as_str()));
        next_checks.push(state.status.next_check_at);
        churn_levels.push(state.status.churn.as_ref().map(|c| c.level.as_str()));
        versions.push(row.replaces + 1);
        plays.push(state.status.churn.as_ref().map(|c| c.play.as_str()));
        at_risk.push(
            state
                .status
                .churn
                .as_ref()
                .map(|c| c.value_at_risk(row.metrics.lifetime_spend_minor)),
        );
        available.push(row.points.available);
        pending.push(row.points.pending);
        debt.push(row.points.debt);
        expiring.push(row.points.expiring.as_deref());
    }
    // On a conflict the row is locked whether or not the WHERE clause lets it be updated.
    let written: Vec<(String,)> = sqlx::query_as(sql::CUSTOMERS_UPSERT)
        .bind(&ids)
        .bind(&tiers)
        .bind(&spend)
        .bind(&orders)
        .bind(&partitions)
        .bind(&docs)
        .bind(&segments)
        .bind(&next_checks)
        .bind(&churn_levels)
        .bind(&versions)
        .bind(&plays)
        .bind(&at_risk)
        .bind(&available)
        .bind(&pending)
        .bind(&debt)
        .bind(&expiring)
        .fetch_all(&mut *conn)
        .await?;
    if written.len() == states.len() {
        return Ok(Vec::new());
    }
    let written: std::collections::HashSet<&str> = written.iter().map(|(c,)| c.as_str()).collect();
    Ok(ids
        .iter()
        .enumerate()
        .filter(|(_, id)| !written.contains(**id))
        .map(|(i, _)| i)
        .collect())
}

/// Locks up to `limit` customers of the given partitions whose next check is due at `now`.
/// Rows locked by another transaction are skipped, not waited for.
pub async fn lock_due(
    conn: &mut PgConnection,
    partitions: &[i32],
    now: chrono::DateTime<chrono::Utc>,
    limit: i64,
) -> anyhow::Result<Vec<Loaded>> {
    let rows: Vec<(Vec<u8>, i32, i64)> = sqlx::query_as(
        "SELECT state, home_partition, version FROM customers
         WHERE home_partition = ANY($1) AND next_check_at <= $2
         ORDER BY next_check_at
         LIMIT $3
         FOR UPDATE SKIP LOCKED",
    )
    .persistent(false)
    .bind(partitions)
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter().map(loaded).collect()
}

/// Customers after `after` (by id), `limit` at a time, for whole-population jobs.
pub async fn page<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    after: Option<&str>,
    limit: i64,
) -> anyhow::Result<Vec<(CustomerState, i32)>> {
    let rows: Vec<(Vec<u8>, i32)> = sqlx::query_as(
        "SELECT state, home_partition FROM customers
         WHERE $1::text IS NULL OR customer_id > $1
         ORDER BY customer_id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(executor)
    .await?;
    rows.into_iter()
        .map(|(state, partition)| Ok((decode(&state)?, partition)))
        .collect()
}

/// Number of customers.
pub async fn count(pool: &sqlx::PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(pool)
        .await
}

/// Customers per value of a projected column (`tier`, `segment`, `churn_level`).
pub async fn counts_by(
    pool: &sqlx::PgPool,
    column: Projection,
) -> sqlx::Result<Vec<(String, i64)>> {
    let sql = match column {
        Projection::Tier => "SELECT tier, count(*) FROM customers GROUP BY 1",
        Projection::Segment => {
            "SELECT COALESCE(segment, 'none'), count(*) FROM customers GROUP BY 1"
        }
        Projection::ChurnLevel => {
            "SELECT COALESCE(churn_level, 'none'), count(*) FROM customers GROUP BY 1"
        }
    };
    sqlx::query_as(sql).fetch_all(pool).await
}

/// The projected columns that can be counted.
#[derive(Debug, Clone, Copy)]
pub enum Projection {
    Tier,
    Segment,
    ChurnLevel,
}

/// Calls `each` with every customer, `size` at a time, in id order (for whole-population jobs
/// that only read).
pub async fn for_each_page(
    pool: &sqlx::PgPool,
    size: i64,
    mut each: impl AsyncFnMut(&[(CustomerState, i32)]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut after: Option<String> = None;
    loop {
        let page = self::page(pool, after.as_deref(), size).await?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        after = Some(last.customer_id.as_str().to_owned());
        each(&page).await?;
    }
}

/// Filters of the churn queue; None passes everything.
#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    pub play: Option<String>,
    pub tier: Option<String>,
    pub segment: Option<String>,
    /// "medium" or "high"; None: both.
    pub level: Option<String>,
}

/// A position in the churn queue: rows after it come next.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueCursor {
    pub value_at_risk: f64,
    pub customer_id: String,
}

/// One row of the churn queue.
#[derive(Debug, Clone)]
pub struct QueueRow {
    pub state: CustomerState,
    pub value_at_risk: Option<f64>,
}

/// Customers at medium or high churn risk, by value at risk (highest first, then id), `limit`
/// after `after`. Reads the `customers_churn_queue` index in order.
pub async fn churn_queue(
    pool: &sqlx::PgPool,
    filter: &QueueFilter,
    after: Option<&QueueCursor>,
    limit: i64,
) -> anyhow::Result<Vec<QueueRow>> {
    let rows: Vec<(Vec<u8>, Option<f64>)> = sqlx::query_as(
        "SELECT state, value_at_risk FROM customers
         WHERE churn_level IN ('medium', 'high')
           AND ($1::text IS NULL OR churn_play = $1)
           AND ($2::text IS NULL OR tier = $2)
           AND ($3::text IS NULL OR segment = $3)
           AND ($4::text IS NULL OR churn_level = $4)
           AND ($5::float8 IS NULL
                OR value_at_risk < $5
                OR (value_at_risk = $5 AND customer_id > $6)
                OR value_at_risk IS NULL)
         ORDER BY value_at_risk DESC NULLS LAST, customer_id
         LIMIT $7",
    )
    .persistent(false)
    .bind(filter.play.as_deref())
    .bind(filter.tier.as_deref())
    .bind(filter.segment.as_deref())
    .bind(filter.level.as_deref())
    .bind(after.map(|c| c.value_at_risk))
    .bind(after.map(|c| c.customer_id.as_str()).unwrap_or(""))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(state, value_at_risk)| {
            Ok(QueueRow {
                state: decode(&state)?,
                value_at_risk,
            })
        })
        .collect()
}

/// Up to `limit` customer ids at or after `from` in id order (search suggestions).
pub async fn ids_from(pool: &sqlx::PgPool, from: &str, limit: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT customer_id FROM customers WHERE customer_id >= $1 ORDER BY customer_id LIMIT $2",
    )
    .persistent(false)
    .bind(from)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Rewrites one customer's state in place (its columns stay as they are): for changes that
/// touch no figure, such as replacing an erased customer's id in a referrer's records. The
/// caller holds the row's lock (`load_for_update`).
pub async fn replace_state(
    conn: &mut PgConnection,
    customer_id: &str,
    state: &CustomerState,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE customers SET state = $2, version = version + 1, updated_at = now()
          WHERE customer_id = $1",
    )
    .bind(customer_id)
    .bind(encode(state)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
