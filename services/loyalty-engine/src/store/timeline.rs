//! The customer timeline: ledger events with the outputs and points movements they caused, and
//! outputs caused by the sweeper or an operator and points movements of no event of the
//! customer's (anniversary and referral bonuses, expiries), newest first.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;

use super::ledger;

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

/// Rows of one of the timeline's sources, newest first: `sql` reads the customer `$1`, before
/// the position (`$2` time, `$3` id; none for the first page), `LIMIT $4`.
async fn newest_first<T>(
    pool: &PgPool,
    sql: &'static str,
    (customer_id, at, id, limit): (&str, Option<DateTime<Utc>>, &str, i64),
) -> sqlx::Result<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    sqlx::query_as(sql)
        .persistent(false)
        .bind(customer_id)
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// A points movement for the timeline (from the customer's state, not a table).
#[derive(Debug, Clone)]
pub struct PointsItem {
    pub at: DateTime<Utc>,
    /// The movement's id (unique per customer).
    pub id: String,
    /// The input event that caused it, if any: the item is shown under that event when the
    /// event is in this customer's ledger, on its own otherwise (anniversary and referral
    /// bonuses, derived expiries).
    pub source_event: Option<String>,
    pub body: Value,
}

/// One page of the timeline and the cursor of the next page, if any (without points).
pub async fn page(
    pool: &PgPool,
    customer_id: &str,
    limit: i64,
    before: Option<&Cursor>,
) -> anyhow::Result<(Vec<Value>, Option<Cursor>)> {
    page_with_points(pool, customer_id, limit, before, Vec::new()).await
}

/// One page of the timeline and the cursor of the next page, if any. `points`: the customer's
/// points movements, each shown under its event with its reason, or on its own.
pub async fn page_with_points(
    pool: &PgPool,
    customer_id: &str,
    limit: i64,
    before: Option<&Cursor>,
    points: Vec<PointsItem>,
) -> anyhow::Result<(Vec<Value>, Option<Cursor>)> {
    let at = before.map(|c| c.at);
    let id = before.map(|c| c.id.clone()).unwrap_or_default();
    // Which movements belong to a recorded event of this customer.
    let sources: Vec<&str> = points
        .iter()
        .filter_map(|p| p.source_event.as_deref())
        .collect();
    let recorded: std::collections::HashSet<String> = if sources.is_empty() {
        Default::default()
    } else {
        sqlx::query_scalar::<_, String>(
            "SELECT event_id FROM event_ledger WHERE customer_id = $1 AND event_id = ANY($2)",
        )
        .persistent(false)
        .bind(customer_id)
        .bind(&sources)
        .fetch_all(pool)
        .await?
        .into_iter()
        .collect()
    };
    let mut points_by_event: HashMap<String, Vec<Value>> = HashMap::new();
    let mut points_alone: Vec<(DateTime<Utc>, String, Value)> = Vec::new();
    for p in points {
        match p.source_event {
            Some(e) if recorded.contains(&e) => points_by_event.entry(e).or_default().push(p.body),
            _ => {
                let key = (p.at, format!("p:{}", p.id));
                if before.is_none_or(|c| key < (c.at, c.id.clone())) {
                    points_alone.push((p.at, p.id, p.body));
                }
            }
        }
    }
    // Ledger events, newest first.
    let events: Vec<(DateTime<Utc>, String, String, Vec<u8>)> = newest_first(
        pool,
        "SELECT occurred_at, event_id, kind, body FROM event_ledger
         WHERE customer_id = $1 AND ($2::timestamptz IS NULL OR (occurred_at, 'e:' || event_id) < ($2, $3))
         ORDER BY occurred_at DESC, event_id DESC LIMIT $4",
        (customer_id, at, &id, limit + 1),
    )
    .await?;
    // Outputs not caused by a ledger event (the sweeper, operators, recompute), newest first.
    let standalone: Vec<(DateTime<Utc>, uuid::Uuid, String, String, Value)> = newest_first(
        pool,
        "SELECT o.effective_at, o.ce_id, o.caused_by, o.ce_type, o.payload FROM output_log o
         WHERE o.customer_id = $1
           AND NOT EXISTS (SELECT 1 FROM event_ledger l WHERE l.customer_id = $1 AND l.event_id = o.caused_by)
           AND ($2::timestamptz IS NULL OR (o.effective_at, 'o:' || o.ce_id::text) < ($2, $3))
         ORDER BY o.effective_at DESC, o.ce_id DESC LIMIT $4",
        (customer_id, at, &id, limit + 1),
    )
    .await?;

    enum Item {
        Event(DateTime<Utc>, String, String, Vec<u8>),
        Output(DateTime<Utc>, uuid::Uuid, String, String, Value),
        Points(DateTime<Utc>, String, Value),
    }
    let key = |item: &Item| match item {
        Item::Event(at, id, ..) => (*at, format!("e:{id}")),
        Item::Output(at, ce_id, ..) => (*at, format!("o:{ce_id}")),
        Item::Points(at, id, _) => (*at, format!("p:{id}")),
    };
    let mut items: Vec<Item> = events
        .into_iter()
        .map(|(a, e, k, b)| Item::Event(a, e, k, b))
        .chain(
            standalone
                .into_iter()
                .map(|(a, c, by, t, p)| Item::Output(a, c, by, t, p)),
        )
        .chain(
            points_alone
                .into_iter()
                .map(|(a, i, b)| Item::Points(a, i, b)),
        )
        .collect();
    items.sort_by_key(|item| std::cmp::Reverse(key(item)));
    let more = items.len() as i64 > limit;
    items.truncate(usize::try_from(limit).unwrap_or(0));
    let next = if more {
        items.last().map(|item| {
            let (at, id) = key(item);
            Cursor { at, id }
        })
    } else {
        None
    };

    let event_ids: Vec<&str> = items
        .iter()
        .filter_map(|i| match i {
            Item::Event(_, id, ..) => Some(id.as_str()),
            Item::Output(..) | Item::Points(..) => None,
        })
        .collect();
    let caused: Vec<(String, uuid::Uuid, String, DateTime<Utc>, Value)> = sqlx::query_as(
        "SELECT caused_by, ce_id, ce_type, effective_at, payload FROM output_log
         WHERE customer_id = $1 AND caused_by = ANY($2) ORDER BY effective_at, ce_id",
    )
    .persistent(false)
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
    // Survey comments are stored sealed: opened with the customer's key.
    let key = if items
        .iter()
        .any(|i| matches!(i, Item::Event(_, _, kind, _) if kind == "survey"))
    {
        let mut conn = pool.acquire().await?;
        super::comments::existing_keys(&mut conn, &[customer_id])
            .await?
            .remove(customer_id)
    } else {
        None
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(match item {
            Item::Event(at, event_id, kind, body) => json!({
                "type": "event",
                "at": at,
                "event_id": event_id,
                "kind": kind,
                "event": serde_json::to_value({
                    let mut event = ledger::decode(&body)?;
                    super::comments::open_event(&mut event, key.as_deref());
                    event
                })?,
                "outputs": by_event.remove(&event_id).unwrap_or_default(),
                "points": points_by_event.remove(&event_id).unwrap_or_default(),
            }),
            Item::Points(at, id, body) => json!({
                "type": "points", "at": at, "movement_id": id, "points": body
            }),
            Item::Output(at, ce_id, caused_by, ce_type, payload) => json!({
                "type": "output", "at": at, "ce_id": ce_id, "caused_by": caused_by, "ce_type": ce_type, "data": payload
            }),
        });
    }
    Ok((out, next))
}
