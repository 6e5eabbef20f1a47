//! `outbox`: output events and dead letters waiting for the relay, written in the same
//! transaction as the state change that caused them. A transaction writes one row per input
//! partition, a bundle of that partition's messages in order (migration 0006 says why).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use prost::Message as _;
use sqlx::{PgConnection, PgPool};

use crate::store::sql;

/// Channel notified when rows are added, so the relay wakes at once.
pub const NOTIFY_CHANNEL: &str = "kizuna_outbox";

/// A message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Deterministic id (the `ce_id` header, also on dead letters): the same output of the
    /// same cause always has the same id, which is how the relay recognises what it already
    /// published before a crash.
    pub ce_id: String,
    /// Input partition that produced it: its owner publishes it.
    pub partition: i32,
    pub customer_id: Option<String>,
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A stored row, ready to publish: one message (a row of the old form) or a bundle.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    /// In the order they were queued.
    pub messages: Vec<OutboxMessage>,
}

/// A bundle as stored in `outbox.messages`: protobuf, so the payloads are copied, not parsed.
#[derive(Clone, PartialEq, prost::Message)]
struct Bundle {
    #[prost(message, repeated, tag = "1")]
    messages: Vec<BundledMessage>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct BundledMessage {
    #[prost(string, tag = "1")]
    ce_id: String,
    #[prost(string, optional, tag = "2")]
    customer_id: Option<String>,
    #[prost(string, tag = "3")]
    topic: String,
    #[prost(bytes = "vec", optional, tag = "4")]
    key: Option<Vec<u8>>,
    #[prost(bytes = "vec", tag = "5")]
    payload: Vec<u8>,
    #[prost(message, repeated, tag = "6")]
    headers: Vec<BundledHeader>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct BundledHeader {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// Rows ready to insert, one per partition: the columns of `sql::OUTBOX_INSERT`.
#[derive(Debug, Clone, Default)]
pub struct Bundles {
    pub partitions: Vec<i32>,
    pub counts: Vec<i32>,
    /// The topics of each bundle, separated by spaces (topic names have none).
    pub topics: Vec<String>,
    pub bundles: Vec<Vec<u8>>,
}

impl Bundles {
    /// One bundle per partition, each with that partition's messages in their order.
    pub fn of<'a>(messages: impl IntoIterator<Item = &'a OutboxMessage>) -> Self {
        let mut by_partition: BTreeMap<i32, Vec<&OutboxMessage>> = BTreeMap::new();
        for m in messages {
            by_partition.entry(m.partition).or_default().push(m);
        }
        let mut out = Self::default();
        for (partition, messages) in by_partition {
            let mut topics: Vec<&str> = messages.iter().map(|m| m.topic.as_str()).collect();
            topics.sort_unstable();
            topics.dedup();
            let bundle = Bundle {
                messages: messages.iter().map(|m| bundled(m)).collect(),
            };
            out.partitions.push(partition);
            out.counts
                .push(i32::try_from(messages.len()).unwrap_or(i32::MAX));
            out.topics.push(topics.join(" "));
            out.bundles.push(bundle.encode_to_vec());
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.bundles.is_empty()
    }

    /// Messages in all the bundles.
    pub fn messages(&self) -> usize {
        self.counts
            .iter()
            .map(|&n| usize::try_from(n).unwrap_or(0))
            .sum()
    }

    /// Appends the rows and notifies `channel` (delivered when the transaction commits).
    pub async fn insert(&self, conn: &mut PgConnection, channel: &str) -> sqlx::Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        sqlx::query(sql::OUTBOX_INSERT)
            .bind(&self.partitions)
            .bind(&self.counts)
            .bind(&self.topics)
            .bind(&self.bundles)
            .bind(channel)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

fn bundled(m: &OutboxMessage) -> BundledMessage {
    BundledMessage {
        ce_id: m.ce_id.clone(),
        customer_id: m.customer_id.clone(),
        topic: m.topic.clone(),
        key: m.key.clone(),
        payload: m.payload.clone(),
        headers: m
            .headers
            .iter()
            .map(|(k, v)| BundledHeader {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
    }
}

/// The messages of a stored bundle of `partition`.
fn unbundle(bytes: &[u8], partition: i32) -> Result<Vec<OutboxMessage>, prost::DecodeError> {
    Ok(Bundle::decode(bytes)?
        .messages
        .into_iter()
        .map(|m| OutboxMessage {
            ce_id: m.ce_id,
            partition,
            customer_id: m.customer_id,
            topic: m.topic,
            key: m.key,
            payload: m.payload,
            headers: m.headers.into_iter().map(|h| (h.key, h.value)).collect(),
        })
        .collect())
}

/// Headers of a row of the old form: [[name, value], ...].
fn decode_headers(value: &serde_json::Value) -> Vec<(String, Vec<u8>)> {
    value
        .as_array()
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|pair| {
                    let k = pair.get(0)?.as_str()?;
                    let v = pair.get(1)?.as_str()?;
                    Some((k.to_owned(), v.as_bytes().to_vec()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the not yet published messages of an erased customer (keyed by, or about, them) from
/// the outbox: rows of the old form are deleted, bundles are rewritten without them (or deleted
/// when nothing is left). Locks the rows it changes, so a relay publishing one of them finishes
/// first. Returns how many messages went.
pub async fn remove_customer(conn: &mut PgConnection, customer_id: &str) -> anyhow::Result<i64> {
    let old_form = sqlx::query(
        "DELETE FROM outbox WHERE messages IS NULL
           AND (customer_id = $1 OR key = convert_to($1, 'UTF8'))",
    )
    .bind(customer_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let mut removed = i64::try_from(old_form).unwrap_or(i64::MAX);
    // Only bundles whose bytes hold the id at all are decoded.
    let rows: Vec<(i64, i32, Vec<u8>)> = sqlx::query_as(
        "SELECT id, partition, messages FROM outbox
          WHERE messages IS NOT NULL AND position(convert_to($1, 'UTF8') IN messages) > 0
          ORDER BY id FOR UPDATE",
    )
    .bind(customer_id)
    .fetch_all(&mut *conn)
    .await?;
    let id_bytes = customer_id.as_bytes();
    for (row_id, partition, bytes) in rows {
        let messages = unbundle(&bytes, partition)?;
        let before = messages.len();
        let kept: Vec<OutboxMessage> = messages
            .into_iter()
            .filter(|m| {
                m.customer_id.as_deref() != Some(customer_id) && m.key.as_deref() != Some(id_bytes)
            })
            .collect();
        if kept.len() == before {
            continue;
        }
        removed += i64::try_from(before - kept.len()).unwrap_or(i64::MAX);
        if kept.is_empty() {
            sqlx::query("DELETE FROM outbox WHERE id = $1")
                .bind(row_id)
                .execute(&mut *conn)
                .await?;
            continue;
        }
        let again = Bundles::of(&kept);
        sqlx::query(
            "UPDATE outbox SET messages = $2, message_count = $3, topics = string_to_array($4, ' ')
              WHERE id = $1",
        )
        .bind(row_id)
        .bind(&again.bundles[0])
        .bind(again.counts[0])
        .bind(&again.topics[0])
        .execute(&mut *conn)
        .await?;
    }
    Ok(removed)
}

/// Appends messages, one row per partition, and notifies the relay (delivered when the
/// transaction commits).
pub async fn insert<'a>(
    conn: &mut PgConnection,
    messages: impl IntoIterator<Item = &'a OutboxMessage>,
) -> sqlx::Result<()> {
    Bundles::of(messages).insert(conn, NOTIFY_CHANNEL).await
}

/// Locks the oldest rows of the given partitions, in insertion order, for this transaction:
/// at most `limit` rows, and no further row once those taken hold `limit` messages (the
/// first row is taken whatever it holds). Rows another relay holds are skipped, so two relays
/// never publish the same row at once. Returns the rows and whether the limit was reached
/// (more are probably waiting).
///
/// `backlog`: the outbox may be large (the last round was full), so the statement is planned
/// for the table as it is now, not with a plan cached while it was small (see the store
/// module's note on plans).
pub async fn lock_batch(
    conn: &mut PgConnection,
    partitions: &[i32],
    limit: i64,
    backlog: bool,
) -> anyhow::Result<(Vec<OutboxRow>, bool)> {
    type Row = (
        i64,
        DateTime<Utc>,
        i32,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Option<serde_json::Value>,
        Option<Vec<u8>>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, created_at, partition, ce_id, customer_id, topic, key, payload, headers, messages
         FROM outbox WHERE id IN (
             SELECT id FROM (
                 SELECT id, sum(message_count) OVER (ORDER BY id) - message_count AS before
                 FROM (SELECT id, message_count FROM outbox
                       WHERE partition = ANY($1) ORDER BY id LIMIT $2) oldest) w
             WHERE before < $2)
         ORDER BY id
         FOR UPDATE SKIP LOCKED",
    )
    .persistent(!backlog)
    .bind(partitions)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    let mut messages = 0usize;
    for (id, created_at, partition, ce_id, customer_id, topic, key, payload, headers, bundle) in
        rows
    {
        let of_row = match (bundle, ce_id, topic, payload) {
            (Some(bundle), ..) => unbundle(&bundle, partition)
                .map_err(|e| anyhow::anyhow!("outbox row {id}: an unreadable bundle: {e}"))?,
            (None, Some(ce_id), Some(topic), Some(payload)) => vec![OutboxMessage {
                ce_id,
                partition,
                customer_id,
                topic,
                key,
                payload,
                headers: headers.as_ref().map(decode_headers).unwrap_or_default(),
            }],
            _ => anyhow::bail!("outbox row {id} holds neither a bundle nor a message"),
        };
        messages += of_row.len();
        out.push(OutboxRow {
            id,
            created_at,
            messages: of_row,
        });
    }
    let full = i64::try_from(out.len().max(messages)).is_ok_and(|n| n >= limit);
    Ok((out, full))
}

/// Serialises relay rounds per partition: a transaction-scoped advisory lock for each, taken
/// in partition order (so two relays cannot deadlock).
pub async fn lock_partitions(conn: &mut PgConnection, partitions: &[i32]) -> sqlx::Result<()> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(7317, p) FROM (SELECT unnest($1::int[]) AS p ORDER BY 1) s",
    )
    .bind(partitions)
    .execute(conn)
    .await?;
    Ok(())
}

/// The oldest pending row's creation time and the highest pending id, for the partitions.
pub async fn pending_span(
    conn: &mut PgConnection,
    partitions: &[i32],
) -> sqlx::Result<(Option<DateTime<Utc>>, Option<i64>)> {
    sqlx::query_as("SELECT min(created_at), max(id) FROM outbox WHERE partition = ANY($1)")
        .bind(partitions)
        .fetch_one(conn)
        .await
}

/// The topics pending rows of the partitions go to.
pub async fn pending_topics(
    conn: &mut PgConnection,
    partitions: &[i32],
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT DISTINCT t FROM outbox, unnest(COALESCE(topics, ARRAY[topic])) AS t
         WHERE partition = ANY($1) ORDER BY 1",
    )
    .bind(partitions)
    .fetch_all(conn)
    .await
}

/// Removes published rows. `backlog` as for [`lock_batch`].
pub async fn delete(conn: &mut PgConnection, ids: &[i64], backlog: bool) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
        .persistent(!backlog)
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// Messages waiting and the age of the oldest, in seconds.
pub async fn backlog(pool: &PgPool) -> sqlx::Result<(i64, f64)> {
    sqlx::query_as(
        "SELECT COALESCE(sum(message_count), 0)::bigint,
                COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0)
         FROM outbox",
    )
    .fetch_one(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(ce_id: &str, partition: i32, topic: &str) -> OutboxMessage {
        OutboxMessage {
            ce_id: ce_id.to_owned(),
            partition,
            customer_id: (partition != 2).then(|| format!("c-{ce_id}")),
            topic: topic.to_owned(),
            key: (partition != 2).then(|| vec![0, 159, 255]),
            payload: format!("{{\"id\":\"{ce_id}\"}}").into_bytes(),
            headers: vec![
                ("ce_id".to_owned(), ce_id.as_bytes().to_vec()),
                ("bin".to_owned(), vec![0, 200, 7]),
            ],
        }
    }

    #[test]
    fn a_bundle_per_partition_gives_back_its_messages_in_order() {
        let messages = vec![
            message("a", 1, "loyalty.points"),
            message("b", 2, "loyalty.dead-letters"),
            message("c", 1, "loyalty.tier-changed"),
            message("d", 1, "loyalty.points"),
        ];
        let bundles = Bundles::of(&messages);
        assert_eq!(bundles.partitions, vec![1, 2]);
        assert_eq!(bundles.counts, vec![3, 1]);
        assert_eq!(bundles.messages(), 4);
        assert_eq!(
            bundles.topics,
            vec![
                "loyalty.points loyalty.tier-changed",
                "loyalty.dead-letters"
            ]
        );
        let first = unbundle(&bundles.bundles[0], 1).expect("decodes");
        assert_eq!(
            first,
            vec![
                messages[0].clone(),
                messages[2].clone(),
                messages[3].clone()
            ]
        );
        let second = unbundle(&bundles.bundles[1], 2).expect("decodes");
        assert_eq!(second, vec![messages[1].clone()]);
    }

    #[test]
    fn nothing_to_queue_makes_no_row() {
        assert!(Bundles::of(&[]).is_empty());
    }

    #[test]
    fn a_damaged_bundle_is_an_error_not_an_empty_row() {
        let bundles = Bundles::of(&[message("a", 1, "loyalty.points")]);
        let cut = &bundles.bundles[0][..bundles.bundles[0].len() - 3];
        assert!(unbundle(cut, 1).is_err());
    }
}
