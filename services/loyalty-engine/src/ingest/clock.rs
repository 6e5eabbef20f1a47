//! Which "now" the engine evaluates at.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::store::clock;

/// Wall time in production; for backfills and simulations, the largest event time seen, so a
/// replay of last year behaves as it did then.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Clock {
    Wall,
    EventTime,
}

impl Clock {
    /// The time to evaluate at, inside the batch transaction. `seen` is the batch's largest
    /// event time.
    pub async fn now(
        self,
        conn: &mut PgConnection,
        group_id: &str,
        seen: Option<DateTime<Utc>>,
    ) -> sqlx::Result<DateTime<Utc>> {
        match self {
            Clock::Wall => Ok(Utc::now()),
            Clock::EventTime => Ok(clock::advance(conn, group_id, seen)
                .await?
                .unwrap_or_else(Utc::now)),
        }
    }
}
