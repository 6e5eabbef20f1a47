//! `webhook_subscriptions`: who gets what, with which secret, and how their receiver fares.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::signing::Secret;
use crate::subscription::{EventType, Filter, Status};

/// A stored subscription.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: Uuid,
    pub url: String,
    pub description: String,
    pub event_types: Vec<EventType>,
    pub filter: Filter,
    pub secret: Secret,
    pub previous_secret: Option<Secret>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub status: Status,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<DateTime<Utc>>,
    pub consecutive_failures: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Subscription {
    /// Whether it wants this event: its type is chosen and the filter passes it.
    pub fn wants(&self, event: &crate::event::OutputEvent) -> bool {
        self.event_types.contains(&event.event_type) && self.filter.matches(event)
    }

    /// The secrets to sign with now: the current one, and the previous one during the grace
    /// period after a rotation.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<Secret> {
        let mut secrets = vec![self.secret.clone()];
        if let (Some(previous), Some(until)) = (&self.previous_secret, self.previous_secret_until)
            && until > now
        {
            secrets.push(previous.clone());
        }
        secrets
    }
}

type Row = (
    Uuid,
    String,
    String,
    Vec<String>,
    serde_json::Value,
    String,
    Option<String>,
    Option<DateTime<Utc>>,
    String,
    Option<String>,
    Option<DateTime<Utc>>,
    i32,
    DateTime<Utc>,
    DateTime<Utc>,
);

const COLUMNS: &str = "id, url, description, event_types, filter, secret, previous_secret, previous_secret_until, status, disabled_reason, failing_since, consecutive_failures, created_at, updated_at";

/// Rows are written only through this module, so a row that does not parse is corruption:
/// it is reported as an error rather than skipped.
fn parse(row: Row) -> sqlx::Result<Subscription> {
    let corrupt = |what: &str| sqlx::Error::Decode(format!("webhook_subscriptions.{what}").into());
    let (
        id,
        url,
        description,
        types,
        filter,
        secret,
        previous_secret,
        previous_secret_until,
        status,
        disabled_reason,
        failing_since,
        consecutive_failures,
        created_at,
        updated_at,
    ) = row;
    Ok(Subscription {
        id,
        url,
        description,
        event_types: types
            .iter()
            .map(|t| EventType::parse(t).ok_or_else(|| corrupt("event_types")))
            .collect::<sqlx::Result<_>>()?,
        filter: serde_json::from_value(filter).map_err(|_| corrupt("filter"))?,
        secret: Secret::parse(&secret).map_err(|_| corrupt("secret"))?,
        previous_secret: previous_secret
            .map(|s| Secret::parse(&s).map_err(|_| corrupt("previous_secret")))
            .transpose()?,
        previous_secret_until,
        status: Status::parse(&status).ok_or_else(|| corrupt("status"))?,
        disabled_reason,
        failing_since,
        consecutive_failures,
        created_at,
        updated_at,
    })
}

/// What a new subscription is made of (already parsed).
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub url: reqwest::Url,
    pub description: String,
    pub event_types: Vec<EventType>,
    pub filter: Filter,
    pub secret: Secret,
}

pub async fn insert<'e>(
    db: impl PgExecutor<'e>,
    new: &NewSubscription,
) -> sqlx::Result<Subscription> {
    let types: Vec<&str> = new.event_types.iter().map(|t| t.as_str()).collect();
    let filter = serde_json::to_value(&new.filter).unwrap_or_default();
    let row: Row = sqlx::query_as(&format!(
        "INSERT INTO webhook_subscriptions (id, url, description, event_types, filter, secret, status)
         VALUES ($1, $2, $3, $4, $5, $6, 'active') RETURNING {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(new.url.as_str())
    .bind(&new.description)
    .bind(&types)
    .bind(filter)
    .bind(new.secret.expose())
    .fetch_one(db)
    .await?;
    parse(row)
}

pub async fn get<'e>(db: impl PgExecutor<'e>, id: Uuid) -> sqlx::Result<Option<Subscription>> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhook_subscriptions WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await?;
    row.map(parse).transpose()
}

/// Every subscription, oldest first.
pub async fn list<'e>(db: impl PgExecutor<'e>) -> sqlx::Result<Vec<Subscription>> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhook_subscriptions ORDER BY created_at, id"
    ))
    .fetch_all(db)
    .await?;
    rows.into_iter().map(parse).collect()
}

/// The subscriptions new events are queued for: active and paused ones.
pub async fn receiving(conn: &mut PgConnection) -> sqlx::Result<Vec<Subscription>> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhook_subscriptions WHERE status <> 'disabled'"
    ))
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(parse).collect()
}

/// Active subscriptions by id, for the dispatcher.
pub async fn active<'e>(db: impl PgExecutor<'e>, ids: &[Uuid]) -> sqlx::Result<Vec<Subscription>> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhook_subscriptions WHERE id = ANY($1) AND status = 'active'"
    ))
    .bind(ids)
    .fetch_all(db)
    .await?;
    rows.into_iter().map(parse).collect()
}

pub async fn delete<'e>(db: impl PgExecutor<'e>, id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM webhook_subscriptions WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Pauses an active subscription (a paused or disabled one stays as it is).
pub async fn pause<'e>(db: impl PgExecutor<'e>, id: Uuid) -> sqlx::Result<Option<Subscription>> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "UPDATE webhook_subscriptions SET status = CASE WHEN status = 'active' THEN 'paused' ELSE status END,
                updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(db)
    .await?;
    row.map(parse).transpose()
}

/// Resumes a paused or disabled subscription: its failure run is forgotten, and the events
/// waiting for it get a fresh retry period from now.
pub async fn resume(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Subscription>> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "UPDATE webhook_subscriptions SET status = 'active', disabled_reason = NULL,
                failing_since = NULL, consecutive_failures = 0, updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    if row.is_some() {
        sqlx::query(
            "UPDATE webhook_deliveries SET first_attempt_at = NULL, next_attempt_at = now()
             WHERE subscription_id = $1 AND next_attempt_at IS NOT NULL",
        )
        .bind(id)
        .execute(&mut *conn)
        .await?;
    }
    row.map(parse).transpose()
}

/// A new secret; the current one keeps signing until `previous_until`.
pub async fn rotate<'e>(
    db: impl PgExecutor<'e>,
    id: Uuid,
    secret: &Secret,
    previous_until: DateTime<Utc>,
) -> sqlx::Result<Option<Subscription>> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "UPDATE webhook_subscriptions SET previous_secret = secret, previous_secret_until = $3,
                secret = $2, updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(secret.expose())
    .bind(previous_until)
    .fetch_optional(db)
    .await?;
    row.map(parse).transpose()
}

/// A delivery succeeded: the failure run, if any, is over.
pub async fn record_success(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE webhook_subscriptions SET failing_since = NULL, consecutive_failures = 0
         WHERE id = $1 AND consecutive_failures > 0",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The failure run after one more failed attempt.
#[derive(Debug, Clone, Copy)]
pub struct FailureRun {
    pub since: DateTime<Utc>,
    pub failures: i32,
}

pub async fn record_failure(
    conn: &mut PgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<FailureRun>> {
    let row: Option<(DateTime<Utc>, i32)> = sqlx::query_as(
        "UPDATE webhook_subscriptions SET failing_since = COALESCE(failing_since, $2),
                consecutive_failures = consecutive_failures + 1
         WHERE id = $1 RETURNING failing_since, consecutive_failures",
    )
    .bind(id)
    .bind(now)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(since, failures)| FailureRun { since, failures }))
}

/// Disables an active or paused subscription; false when it was disabled (or deleted)
/// already, so only one instance announces it.
pub async fn disable(conn: &mut PgConnection, id: Uuid, reason: &str) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE webhook_subscriptions SET status = 'disabled', disabled_reason = $2, updated_at = now()
         WHERE id = $1 AND status <> 'disabled'",
    )
    .bind(id)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Subscriptions by status, for the gauges.
pub async fn count_by_status<'e>(db: impl PgExecutor<'e>) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as("SELECT status, count(*) FROM webhook_subscriptions GROUP BY status")
        .fetch_all(db)
        .await
}
