//! The engine's "now", defined once: the wall clock in production; for backfills and
//! simulations (`clock = "event-time"`), the largest event time the consumer group has seen, so
//! a replay of last year behaves as it did then.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::config::Clock;
use crate::store::clock as stored;

/// Which clock, for which consumer group.
#[derive(Debug, Clone)]
pub struct EngineClock {
    pub kind: Clock,
    pub group_id: String,
}

impl EngineClock {
    pub fn new(kind: Clock, group_id: impl Into<String>) -> Self {
        Self {
            kind,
            group_id: group_id.into(),
        }
    }

    /// "Now" inside a batch transaction whose largest event time is `seen`: the event-time
    /// clock first moves forward to it (never back).
    pub async fn advance(
        &self,
        conn: &mut PgConnection,
        seen: Option<DateTime<Utc>>,
    ) -> sqlx::Result<DateTime<Utc>> {
        match self.kind {
            Clock::Wall => Ok(Utc::now()),
            Clock::EventTime => Ok(stored::advance(conn, &self.group_id, seen)
                .await?
                .unwrap_or_else(Utc::now)),
        }
    }

    /// "Now", read without moving the clock.
    pub async fn now<'e, E: sqlx::PgExecutor<'e>>(
        &self,
        executor: E,
    ) -> sqlx::Result<DateTime<Utc>> {
        match self.kind {
            Clock::Wall => Ok(Utc::now()),
            Clock::EventTime => Ok(stored::read(executor, &self.group_id)
                .await?
                .unwrap_or_else(Utc::now)),
        }
    }

    /// The time a query asks about (`as_of`), else "now".
    pub async fn as_of<'e, E: sqlx::PgExecutor<'e>>(
        &self,
        executor: E,
        as_of: Option<DateTime<Utc>>,
    ) -> sqlx::Result<DateTime<Utc>> {
        match as_of {
            Some(t) => Ok(t),
            None => self.now(executor).await,
        }
    }
}
