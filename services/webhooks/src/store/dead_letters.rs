//! `webhook_dead_letters`: per subscription, the events still failing at the end of the retry
//! period.

use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeadLetter {
    pub id: i64,
    pub ce_id: Uuid,
    pub ce_type: String,
    pub customer_id: String,
    /// The CloudEvent that was sent.
    pub body: Vec<u8>,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub first_attempt_at: Option<DateTime<Utc>>,
    pub dead_at: DateTime<Utc>,
}

/// A subscription's dead letters, newest first, a page at a time.
impl super::LogRow for DeadLetter {
    const PAGE: &'static str = "SELECT id, ce_id, ce_type, customer_id, body, attempts, last_status, last_error, first_attempt_at, dead_at
         FROM webhook_dead_letters WHERE subscription_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3";
}
