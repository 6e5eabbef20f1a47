//! The outbox relay: publishes outbox rows of the partitions this instance owns, in order, with
//! an idempotent producer, and deletes them once Kafka acknowledged them, in the transaction
//! that locked them. New rows are announced with LISTEN/NOTIFY; a slow poll covers lost
//! notifications.
//!
//! Exactly once on the output topics: rows are locked while they are published, so two relays
//! never publish the same row; and after a start or a new assignment, the relay first reads
//! the output topics back from the oldest pending row's time and drops the rows whose `ce_id`
//! is already there (published before a crash, not yet deleted).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::future::join_all;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::config::{KafkaSettings, RelaySettings};
use crate::ingest::ownership::Ownership;
use crate::kafka::base_config;
use crate::metrics::Metrics;
use crate::store::outbox::{self, NOTIFY_CHANNEL, OutboxRow};

/// How far before the oldest pending row's creation the recovery scan starts (clock skew
/// between the database and the brokers, producer retries).
const SCAN_MARGIN: chrono::Duration = chrono::Duration::seconds(60);

pub struct Relay {
    pub pool: PgPool,
    pub producer: FutureProducer,
    pub kafka: KafkaSettings,
    pub ownership: Ownership,
    pub settings: RelaySettings,
    pub metrics: Metrics,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Publishes rows until `shutdown`; then drains what the owned partitions still hold.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        let mut listener: Option<PgListener> = None;
        let mut backoff = Duration::from_millis(100);
        // The ownership generation last recovered for; None forces a recovery scan.
        let mut recovered: Option<(u64, Vec<i32>)> = None;
        loop {
            if listener.is_none() {
                listener = self.listen().await;
            }
            match self.publish_once(&mut recovered).await {
                Ok(n) if n > 0 => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Ok(_) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "relay round failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            if shutdown.is_cancelled() {
                break;
            }
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => {}
                r = notified => if r.is_err() { listener = None; },
                _ = tokio::time::sleep(poll) => {}
            }
        }
        // Flush what is left for the partitions still owned.
        for _ in 0..100 {
            match self.publish_once(&mut recovered).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "relay flush failed; rows stay in the outbox"
                    );
                    break;
                }
            }
        }
        tracing::info!("relay stopped");
        Ok(())
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut l = PgListener::connect_with(&self.pool).await.ok()?;
        l.listen(NOTIFY_CHANNEL).await.ok()?;
        Some(l)
    }

    /// Publishes one batch of rows; returns how many were published.
    async fn publish_once(&self, recovered: &mut Option<(u64, Vec<i32>)>) -> anyhow::Result<usize> {
        let generation = self.ownership.generation();
        let partitions = self.ownership.partition_numbers();
        if partitions.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        let mut rows = outbox::lock_batch(&mut tx, &partitions, self.settings.batch_size).await?;
        if rows.is_empty() {
            tx.commit().await?;
            if let Ok((n, age)) = outbox::backlog(&self.pool).await {
                self.metrics.outbox_backlog(n, age);
            }
            return Ok(0);
        }
        let current = (generation, partitions);
        if recovered.as_ref() != Some(&current) {
            let already = self.already_published(&rows).await?;
            if !already.is_empty() {
                let ids: Vec<i64> = rows
                    .iter()
                    .filter(|r| already.contains(&r.message.ce_id))
                    .map(|r| r.id)
                    .collect();
                tracing::info!(
                    rows = ids.len(),
                    "outbox rows were published before a restart; dropping them"
                );
                outbox::delete(&mut tx, &ids).await?;
                rows.retain(|r| !already.contains(&r.message.ce_id));
            }
            *recovered = Some(current);
        }
        let deliveries = join_all(rows.iter().map(|row| self.send(row))).await;
        let mut done = Vec::with_capacity(rows.len());
        let mut failed = None;
        for (row, result) in rows.iter().zip(deliveries) {
            match result {
                Ok(()) => {
                    done.push(row.id);
                    let age = (Utc::now() - row.created_at).num_milliseconds() as f64 / 1000.0;
                    self.metrics.published(&row.message.topic, age);
                }
                Err(e) => failed = Some(e),
            }
        }
        // From here on, rows may be on their topics without being deleted (the delete or the
        // commit fails, e.g. the database goes away; or a send reported a failure for a message
        // the broker did write): whatever fails, the next round scans the topics first.
        let deleted = match outbox::delete(&mut tx, &done).await {
            Ok(()) => tx.commit().await,
            Err(e) => Err(e),
        };
        if let Err(e) = deleted {
            *recovered = None;
            anyhow::bail!("could not delete published outbox rows: {e}");
        }
        if let Some(e) = failed {
            *recovered = None;
            anyhow::bail!("publishing outbox rows failed: {e}");
        }
        Ok(done.len())
    }

    /// The `ce_id`s among `rows` that are already on their topics.
    async fn already_published(&self, rows: &[OutboxRow]) -> anyhow::Result<HashSet<String>> {
        let Some(oldest) = rows.iter().map(|r| r.created_at).min() else {
            return Ok(HashSet::new());
        };
        let mut topics: Vec<String> = rows.iter().map(|r| r.message.topic.clone()).collect();
        topics.sort();
        topics.dedup();
        let kafka = self.kafka.clone();
        let found = tokio::task::spawn_blocking(move || {
            published_ids(&kafka, &topics, oldest - SCAN_MARGIN)
        })
        .await
        .context("recovery scan panicked")??;
        Ok(rows
            .iter()
            .filter(|r| found.contains(&r.message.ce_id))
            .map(|r| r.message.ce_id.clone())
            .collect())
    }

    async fn send(&self, row: &OutboxRow) -> Result<(), String> {
        let m = &row.message;
        let mut headers = OwnedHeaders::new_with_capacity(m.headers.len());
        for (k, v) in &m.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&m.topic)
            .payload(&m.payload)
            .headers(headers);
        if let Some(key) = &m.key {
            record = record.key(key);
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e.to_string())
    }
}

/// Reads `topics` from the first message at or after `since` to their current end and returns
/// the `ce_id` headers found. Blocking.
pub fn published_ids(
    settings: &KafkaSettings,
    topics: &[String],
    since: DateTime<Utc>,
) -> anyhow::Result<HashSet<String>> {
    let timeout = Duration::from_secs(30);
    let consumer: BaseConsumer = base_config(settings)
        .set(
            "group.id",
            format!("kizuna-relay-recovery-{}", uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the recovery consumer")?;
    let mut query = TopicPartitionList::new();
    for topic in topics {
        let md = consumer.fetch_metadata(Some(topic), timeout)?;
        for t in md.topics() {
            for p in t.partitions() {
                query.add_partition_offset(
                    topic,
                    p.id(),
                    Offset::Offset(since.timestamp_millis()),
                )?;
            }
        }
    }
    let starts = consumer
        .offsets_for_times(query, timeout)
        .context("looking up offsets by time")?;
    let mut assignment = TopicPartitionList::new();
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    for elem in starts.elements() {
        if let Offset::Offset(start) = elem.offset() {
            let (_, high) = consumer.fetch_watermarks(elem.topic(), elem.partition(), timeout)?;
            if start < high {
                assignment.add_partition_offset(
                    elem.topic(),
                    elem.partition(),
                    Offset::Offset(start),
                )?;
                ends.insert((elem.topic().to_owned(), elem.partition()), high);
            }
        }
    }
    let mut found = HashSet::new();
    if ends.is_empty() {
        return Ok(found);
    }
    consumer.assign(&assignment)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !ends.is_empty() {
        if std::time::Instant::now() > deadline {
            anyhow::bail!("recovery scan did not reach the end of the output topics in time");
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                if let Some(id) = m
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == "ce_id"))
                    .and_then(|h| h.value)
                    .and_then(|v| std::str::from_utf8(v).ok())
                {
                    found.insert(id.to_owned());
                }
                let key = (m.topic().to_owned(), m.partition());
                if ends.get(&key).is_some_and(|end| m.offset() + 1 >= *end) {
                    ends.remove(&key);
                }
            }
            Some(Err(e)) => anyhow::bail!("recovery scan: {e}"),
            None => {}
        }
    }
    Ok(found)
}
