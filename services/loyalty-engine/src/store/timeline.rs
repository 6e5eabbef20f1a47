//! The customer timeline: ledger events with the outputs they caused, and outputs caused by
//! the sweeper or an operator, newest first.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;

/// Position in the timeline: items strictly older than this come next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: String,
}

impl Cursor {
    pub fn parse(raw: &str) -> Option<Self> {
        let (micros, id) = raw.split_once(':')?;
        let at = DateTime::<Utc>::from_timestamp_micros(micros.parse().ok()?)?;
        Some(Self {
            at,
            id: id.to_owned(),
        })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.at.timestamp_micros(), self.id)
    }
}

type ItemRow = (DateTime<Utc>, String, String, String, String, Value);

/// One page of the timeline and the cursor of the next page, if any.
pub async fn page(
    pool: &PgPool,
    customer_id: &str,
    limit: i64,
    before: Option<&Cursor>,
) -> sqlx::Result<(Vec<Value>, Option<Cursor>)> {
    let rows: Vec<ItemRow> = sqlx::query_as(
        "SELECT at, id, type, ref, kind, body FROM (
             SELECT occurred_at AS at, 'e:' || event_id AS id, 'event' AS type, event_id AS ref, kind, body
             FROM event_ledger WHERE customer_id = $1
             UNION ALL
             SELECT o.effective_at, 'o:' || o.ce_id::text, 'output', o.caused_by, o.ce_type, o.payload
             FROM output_log o
             WHERE o.customer_id = $1
               AND NOT EXISTS (SELECT 1 FROM event_ledger l WHERE l.customer_id = $1 AND l.event_id = o.caused_by)
         ) t
         WHERE $2::timestamptz IS NULL OR (at, id) < ($2, $3)
         ORDER BY at DESC, id DESC
         LIMIT $4",
    )
    .bind(customer_id)
    .bind(before.map(|c| c.at))
    .bind(before.map(|c| c.id.clone()).unwrap_or_default())
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    let more = rows.len() as i64 > limit;
    let rows: Vec<ItemRow> = rows
        .into_iter()
        .take(usize::try_from(limit).unwrap_or(0))
        .collect();

    let event_ids: Vec<&str> = rows
        .iter()
        .filter(|r| r.2 == "event")
        .map(|r| r.3.as_str())
        .collect();
    let caused: Vec<(String, uuid::Uuid, String, DateTime<Utc>, Value)> = sqlx::query_as(
        "SELECT caused_by, ce_id, ce_type, effective_at, payload FROM output_log
         WHERE customer_id = $1 AND caused_by = ANY($2) ORDER BY effective_at, ce_id",
    )
    .bind(customer_id)
    .bind(&event_ids)
    .fetch_all(pool)
    .await?;
    let mut by_event: HashMap<String, Vec<Value>> = HashMap::new();
    for (cause, ce_id, ce_type, at, payload) in caused {
        by_event.entry(cause).or_default().push(
            json!({ "ce_id": ce_id, "ce_type": ce_type, "effective_at": at, "data": payload }),
        );
    }

    let next = more
        .then(|| {
            rows.last().map(|r| Cursor {
                at: r.0,
                id: r.1.clone(),
            })
        })
        .flatten();
    let items = rows
        .into_iter()
        .map(|(at, _, ty, reference, kind, body)| {
            if ty == "event" {
                json!({
                    "type": "event",
                    "at": at,
                    "event_id": reference,
                    "kind": kind,
                    "event": body,
                    "outputs": by_event.remove(&reference).unwrap_or_default(),
                })
            } else {
                json!({ "type": "output", "at": at, "caused_by": reference, "ce_type": kind, "data": body })
            }
        })
        .collect();
    Ok((items, next))
}
