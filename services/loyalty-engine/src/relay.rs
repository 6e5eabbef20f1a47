//! The outbox relay: publishes outbox rows of the partitions this instance owns, in order, with
//! an idempotent producer, and deletes them once Kafka acknowledged them, in the transaction
//! that locked them. New rows are announced with LISTEN/NOTIFY; a slow poll covers lost
//! notifications.
//!
//! Exactly once on the output topics, in order: a relay round holds a transaction-scoped
//! advisory lock per partition it publishes, so during a hand-over the new owner waits for the
//! old owner's round to end instead of overtaking it; and after a start or a new assignment,
//! the relay first reads the output topics back from the oldest pending row's time and drops
//! every pending message whose `ce_id` is already there (published before a crash, not yet
//! deleted), however many rounds the backlog takes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::future::join_all;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::{KafkaSettings, RelaySettings, Topics};
use crate::engine::outputs::{OUTPUT_MESSAGES, output_protobuf};
use crate::engine::ownership::Ownership;
use crate::inputs::frame::{self, ProtoSchema};
use crate::kafka::base_config;
use crate::metrics::Metrics;
use crate::registry::{SchemaRegistry, value_subject};
use crate::store::outbox::{self, NOTIFY_CHANNEL, OutboxMessage};
use crate::telemetry::traceparent::HEADER as TRACEPARENT;
use crate::telemetry::{TraceParent, spans, traces_on};

/// `content-type` of outputs in Schema Registry framing.
pub const CONTENT_TYPE_FRAMED: &str = "application/x-protobuf";

/// `outputs.format = "confluent-protobuf"`: the outputs leave as binary protobuf in Schema
/// Registry framing, with the id `outputs.proto` has under their topic's subject
/// (`<topic>-value`, registered by `kizuna topics create`) and the index of their message in
/// it. The outbox keeps the JSON; the relay converts at publish time, so the ids are looked up
/// (once) by the instance that publishes. Dead letters are published as they came.
pub struct OutputFraming {
    registry: Arc<SchemaRegistry>,
    /// The framed topics: every output topic but the dead letters (`Topics::events`).
    topics: Vec<String>,
    /// Schema id per topic, once looked up.
    ids: HashMap<String, u32>,
    /// Message indexes in `outputs.proto` per `ce_type`.
    indexes: HashMap<&'static str, Vec<i32>>,
}

impl std::fmt::Debug for OutputFraming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputFraming")
            .field("ids", &self.ids)
            .finish_non_exhaustive()
    }
}

impl OutputFraming {
    pub fn new(registry: Arc<SchemaRegistry>, topics: &Topics) -> anyhow::Result<Self> {
        let schema = ProtoSchema::parse(kizuna_proto::OUTPUTS_PROTO)
            .map_err(|e| anyhow::anyhow!("outputs.proto: {e}"))?;
        let mut indexes = HashMap::new();
        for (ce_type, message) in OUTPUT_MESSAGES {
            let at = schema
                .index_of(message)
                .with_context(|| format!("outputs.proto has no message {message}"))?;
            indexes.insert(ce_type, at);
        }
        Ok(Self {
            registry,
            topics: topics.events().map(str::to_owned).to_vec(),
            ids: HashMap::new(),
            indexes,
        })
    }

    async fn id(&mut self, topic: &str) -> anyhow::Result<u32> {
        if let Some(id) = self.ids.get(topic) {
            return Ok(*id);
        }
        let subject = value_subject(topic);
        let id = self
            .registry
            .lookup(&subject, kizuna_proto::OUTPUTS_PROTO)
            .await?
            .with_context(|| {
                format!(
                    "kizuna.v1 outputs.proto is not registered under subject {subject} in {}; run `kizuna topics create`",
                    self.registry.base_url()
                )
            })?;
        tracing::info!(subject, id, "output schema id");
        self.ids.insert(topic.to_owned(), id);
        Ok(id)
    }

    /// The framed payload of `m`, or None to publish it as it is (not a framed topic).
    pub async fn payload(&mut self, m: &OutboxMessage) -> anyhow::Result<Option<Vec<u8>>> {
        if !self.topics.contains(&m.topic) {
            return Ok(None);
        }
        let ce_type = m
            .headers
            .iter()
            .find(|(k, _)| k == "ce_type")
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .unwrap_or_default();
        let Some(indexes) = self.indexes.get(ce_type).cloned() else {
            anyhow::bail!(
                "output {} on {} has ce_type {ce_type:?}, which outputs.proto does not define",
                m.ce_id,
                m.topic
            );
        };
        let body = output_protobuf(ce_type, &m.payload)
            .with_context(|| format!("encoding output {} as protobuf", m.ce_id))?
            .with_context(|| format!("no protobuf message for ce_type {ce_type:?}"))?;
        let id = self.id(&m.topic).await?;
        Ok(Some(frame::write(id, &indexes, &body)))
    }
}

/// How far before the oldest pending row's creation the recovery scan starts (clock skew
/// between the database and the brokers, producer retries).
const SCAN_MARGIN: chrono::Duration = chrono::Duration::seconds(60);

/// The result of a recovery scan, valid while ownership stays the same.
#[derive(Debug)]
struct Recovered {
    generation: u64,
    partitions: Vec<i32>,
    /// `ce_id`s found on the output topics.
    published: HashSet<String>,
    /// Rows up to this id were pending at the scan; later rows were written after it.
    up_to_id: i64,
}

pub struct Relay {
    pool: PgPool,
    producer: FutureProducer,
    kafka: KafkaSettings,
    ownership: Ownership,
    settings: RelaySettings,
    metrics: Metrics,
    /// What the last recovery scan found; None forces a scan.
    recovered: Option<Recovered>,
    /// The last round was full: a backlog (see `outbox::lock_batch`).
    backlog: bool,
    /// Registry framing of the outputs; None: JSON as the outbox holds it.
    framing: Option<OutputFraming>,
}

/// What one relay round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// This instance owns no partition.
    NoPartitions,
    /// Nothing was pending in the owned partitions.
    Empty,
    /// Messages were published and their rows deleted; `full` when the round took as many as
    /// it may, so more are probably waiting.
    Published { messages: usize, full: bool },
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Relay {
    pub fn new(
        kafka: &KafkaSettings,
        pool: PgPool,
        ownership: Ownership,
        settings: RelaySettings,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            pool,
            producer: crate::kafka::producer(kafka)?,
            kafka: kafka.clone(),
            ownership,
            settings,
            metrics,
            recovered: None,
            backlog: false,
            framing: None,
        })
    }

    /// Publishes the outputs in Schema Registry framing.
    pub fn with_framing(mut self, framing: Option<OutputFraming>) -> Self {
        self.framing = framing;
        self
    }

    /// Publishes rows until `shutdown`; then drains what the owned partitions still hold.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        let mut listener: Option<PgListener> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            if listener.is_none() {
                listener = self.listen().await;
            }
            match self.publish_once().await {
                // A full round: more rows are probably waiting.
                Ok(Round::Published { full: true, .. }) => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                // Otherwise wait for the next notification instead of running an empty round:
                // one that came during this round is buffered and wakes the wait at once.
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
            match self.publish_once().await {
                Ok(Round::Published { .. }) => {}
                Ok(_) => break,
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

    /// Publishes one batch of rows of the owned partitions, in order, and deletes them.
    pub async fn publish_once(&mut self) -> anyhow::Result<Round> {
        let generation = self.ownership.generation();
        let partitions = self.ownership.partition_numbers();
        if partitions.is_empty() {
            return Ok(Round::NoPartitions);
        }
        let mut tx = self.pool.begin().await?;
        outbox::lock_partitions(&mut tx, &partitions).await?;
        let (mut rows, full) =
            outbox::lock_batch(&mut tx, &partitions, self.settings.batch_size, self.backlog)
                .await?;
        self.backlog = full;
        if rows.is_empty() {
            tx.commit().await?;
            self.recovered = self
                .recovered
                .take()
                .filter(|r| r.generation == generation && r.partitions == partitions);
            return Ok(Round::Empty);
        }
        if self
            .recovered
            .as_ref()
            .is_none_or(|r| r.generation != generation || r.partitions != partitions)
        {
            let (oldest, last_id) = outbox::pending_span(&mut tx, &partitions).await?;
            let published = match oldest {
                Some(oldest) => self.published_since(oldest, &partitions, &mut tx).await?,
                None => HashSet::new(),
            };
            self.recovered = Some(Recovered {
                generation,
                partitions: partitions.clone(),
                published,
                up_to_id: last_id.unwrap_or(0),
            });
        }
        if let Some(r) = self.recovered.as_ref() {
            // Messages already on their topics (a bundle may have been published in part).
            let mut dropped = 0;
            for row in rows.iter_mut().filter(|row| row.id <= r.up_to_id) {
                let before = row.messages.len();
                row.messages.retain(|m| !r.published.contains(&m.ce_id));
                dropped += before - row.messages.len();
            }
            if dropped > 0 {
                tracing::info!(
                    messages = dropped,
                    "outbox messages were published before a restart; dropping them"
                );
            }
        }
        // Framing needs the registry's ids: if it does not answer, nothing is published and
        // the round is retried (the transaction is rolled back, the rows stay).
        let mut framed = Vec::with_capacity(rows.iter().map(|r| r.messages.len()).sum());
        for m in rows.iter().flat_map(|row| &row.messages) {
            framed.push(match self.framing.as_mut() {
                Some(f) => f.payload(m).await?,
                None => None,
            });
        }
        let messages = rows.iter().flat_map(|row| &row.messages);
        let span = spans::relay(
            messages.clone().count(),
            messages.clone().filter_map(stored_traceparent),
        );
        let deliveries = join_all(
            messages
                .zip(&framed)
                .map(|(m, framed)| self.send(m, framed.as_deref())),
        )
        .instrument(span.clone())
        .await;
        let mut deliveries = deliveries.into_iter();
        let mut done = Vec::with_capacity(rows.len());
        let mut published = 0;
        let mut failed = None;
        for row in &rows {
            let age = (Utc::now() - row.created_at).num_milliseconds() as f64 / 1000.0;
            let mut all = true;
            for (m, result) in row.messages.iter().zip(deliveries.by_ref()) {
                match result {
                    Ok(()) => {
                        published += 1;
                        self.metrics.published(&m.topic, age);
                    }
                    Err(e) => {
                        all = false;
                        failed = Some(e);
                    }
                }
            }
            // A row goes only once all its messages are on their topics.
            if all {
                done.push(row.id);
            }
        }
        // From here on, messages may be on their topics without their rows being deleted (the
        // delete or the commit fails, e.g. the database goes away; a send reported a failure
        // for a message the broker did write; a bundle went in part): whatever fails, the next
        // round scans the topics first.
        let deleted = async {
            outbox::delete(&mut tx, &done, self.backlog).await?;
            tx.commit().instrument(spans::commit()).await
        }
        .instrument(span)
        .await;
        if let Err(e) = deleted {
            self.recovered = None;
            anyhow::bail!("could not delete published outbox rows: {e}");
        }
        if let Some(e) = failed {
            self.recovered = None;
            anyhow::bail!("publishing outbox messages failed: {e}");
        }
        Ok(Round::Published {
            messages: published,
            full,
        })
    }

    /// The `ce_id`s on the topics of the pending rows, from `oldest` (less a margin) on.
    async fn published_since(
        &self,
        oldest: DateTime<Utc>,
        partitions: &[i32],
        tx: &mut sqlx::PgConnection,
    ) -> anyhow::Result<HashSet<String>> {
        let topics = outbox::pending_topics(tx, partitions).await?;
        let kafka = self.kafka.clone();
        tokio::task::spawn_blocking(move || published_ids(&kafka, &topics, oldest - SCAN_MARGIN))
            .await
            .context("recovery scan panicked")?
    }

    /// Publishes `m`; with `framed`, that payload in place of the JSON (and its
    /// `content-type`).
    /// While traces are on, a message that carries a `traceparent` is published in a
    /// `kizuna.publish` span (a child of it), whose own context it goes out with.
    async fn send(&self, m: &OutboxMessage, framed: Option<&[u8]>) -> Result<(), String> {
        // While traces are off, a stored traceparent goes out as it is.
        let (span, traceparent) = match traces_on().then(|| stored_traceparent(m)).flatten() {
            Some(tp) => {
                let (span, own) = spans::publish(tp, &m.topic);
                (span, Some(own.to_header()))
            }
            None => (tracing::Span::none(), None),
        };
        let mut headers = OwnedHeaders::new_with_capacity(m.headers.len());
        for (k, v) in &m.headers {
            let value: &[u8] = match (framed, &traceparent) {
                (Some(_), _) if k == "content-type" => CONTENT_TYPE_FRAMED.as_bytes(),
                (_, Some(tp)) if k == TRACEPARENT => tp.as_bytes(),
                _ => v,
            };
            headers = headers.insert(Header {
                key: k,
                value: Some(value),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&m.topic)
            .payload(framed.unwrap_or(&m.payload))
            .headers(headers);
        if let Some(key) = &m.key {
            record = record.key(key);
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .instrument(span)
            .await
            .map(|_| ())
            .map_err(|(e, _)| e.to_string())
    }
}

/// The `traceparent` stored with an outbox message (the input's that caused it).
fn stored_traceparent(m: &OutboxMessage) -> Option<TraceParent> {
    m.headers
        .iter()
        .find(|(k, _)| k == TRACEPARENT)
        .and_then(|(_, v)| TraceParent::parse(v))
}

/// Reads `topics` from the first message at or after `since` to their current end and returns
/// the `ce_id` headers found. Blocking.
///
/// The end of a partition is where the consumer reports end-of-partition, not the high
/// watermark that ListOffsets returns: tansu 0.6 can report a watermark below a partition's
/// last offset, and a scan that stopped there would miss outputs published before a crash and
/// publish them twice.
pub fn published_ids(
    settings: &KafkaSettings,
    topics: &[String],
    since: DateTime<Utc>,
) -> anyhow::Result<HashSet<String>> {
    let mut found = HashSet::new();
    // One consumer a topic: an end-of-partition event names the partition, not the topic.
    for topic in topics {
        scan_topic(settings, topic, since, &mut found)?;
    }
    Ok(found)
}

fn scan_topic(
    settings: &KafkaSettings,
    topic: &str,
    since: DateTime<Utc>,
    found: &mut HashSet<String>,
) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(30);
    let consumer: BaseConsumer = base_config(settings)
        .set(
            "group.id",
            format!("kizuna-relay-recovery-{}", uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .context("creating the recovery consumer")?;
    let mut query = TopicPartitionList::new();
    let md = consumer.fetch_metadata(Some(topic), timeout)?;
    for t in md.topics() {
        for p in t.partitions() {
            query.add_partition_offset(topic, p.id(), Offset::Offset(since.timestamp_millis()))?;
        }
    }
    let starts = consumer
        .offsets_for_times(query, timeout)
        .context("looking up offsets by time")?;
    let mut assignment = TopicPartitionList::new();
    let mut open: HashSet<i32> = HashSet::new();
    for elem in starts.elements() {
        // `End`: no message at or after `since` in this partition.
        if let Offset::Offset(start) = elem.offset() {
            assignment.add_partition_offset(topic, elem.partition(), Offset::Offset(start))?;
            open.insert(elem.partition());
        }
    }
    if open.is_empty() {
        return Ok(());
    }
    consumer.assign(&assignment)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !open.is_empty() {
        if std::time::Instant::now() > deadline {
            anyhow::bail!("recovery scan did not reach the end of {topic} in time");
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
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                open.remove(&partition);
            }
            Some(Err(e)) => anyhow::bail!("recovery scan of {topic}: {e}"),
            None => {}
        }
    }
    Ok(())
}
