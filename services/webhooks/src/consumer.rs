//! The consume loop: read the engine's output topics in this service's own consumer group, and
//! queue each event for the subscriptions that want it, in ONE transaction with the consumer
//! offsets (stored in the engine's `consumer_offsets` table under this group). A message is so
//! queued exactly once, across restarts and rebalances; delivery is then at least once.
//!
//! A subscription receives the events published after it was created (by the message's
//! timestamp); earlier ones only through a replay.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kizuna::store::offsets::{self, Positions};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::event::OutputEvent;
use crate::metrics::Metrics;
use crate::store::{queue, subscriptions};

/// How long an assignment waits for PostgreSQL before falling back to Kafka's committed
/// offsets (which never run ahead of the stored ones).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Seeks every assigned partition to the offset stored in PostgreSQL.
#[derive(Debug)]
pub struct SeekToStored {
    pub database_url: SecretString,
    pub group_id: String,
    pub topics: Vec<String>,
}

impl ClientContext for SeekToStored {}

impl SeekToStored {
    /// Reads the stored offsets on a connection of its own. The rebalance callback runs on
    /// librdkafka's thread, synchronously, so the lookup runs on a scoped thread with a small
    /// runtime of its own (as the engine's ingest does).
    fn stored_positions(&self) -> anyhow::Result<Positions> {
        let url = self.database_url.expose_secret().to_owned();
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    rt.block_on(async {
                        tokio::time::timeout(LOOKUP_TIMEOUT, async {
                            let mut conn = sqlx::PgConnection::connect(&url).await?;
                            let positions =
                                offsets::load(&mut conn, &self.group_id, &self.topics).await?;
                            conn.close().await.ok();
                            anyhow::Ok(positions)
                        })
                        .await?
                    })
                })
                .join()
                .map_err(|_| anyhow::anyhow!("offset lookup thread panicked"))?
        })
    }
}

impl ConsumerContext for SeekToStored {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => match self.stored_positions() {
                Ok(positions) => {
                    for mut elem in tpl.elements() {
                        let key = (elem.topic().to_owned(), elem.partition());
                        let offset = positions
                            .get(&key)
                            .map_or(Offset::Beginning, |o| Offset::Offset(*o));
                        if let Err(e) = elem.set_offset(offset) {
                            tracing::warn!(topic = %key.0, partition = key.1, error = %e, "could not set the start offset");
                        }
                    }
                    tracing::info!(
                        partitions = tpl.count(),
                        "output partitions assigned; seeking to stored offsets"
                    );
                }
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "stored offsets unavailable; starting from Kafka's committed offsets"
                    );
                    for mut elem in tpl.elements() {
                        elem.set_offset(Offset::Stored).ok();
                    }
                }
            },
            Rebalance::Revoke(tpl) => {
                // Nothing to drain: a batch committed after the revocation is harmless, since
                // offsets are locked and checked inside its transaction.
                tracing::info!(partitions = tpl.count(), "output partitions revoked");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

pub type OutputConsumer = StreamConsumer<SeekToStored>;

/// One consumed message, read at the edge.
#[derive(Debug)]
struct Incoming {
    topic: String,
    partition: i32,
    offset: i64,
    /// The Kafka timestamp (when the engine published it).
    published_at: Option<DateTime<Utc>>,
    event: Result<OutputEvent, crate::event::Malformed>,
}

fn incoming(msg: &BorrowedMessage<'_>) -> Incoming {
    let headers: Vec<(&str, &[u8])> = msg
        .headers()
        .map(|hs| {
            hs.iter()
                .filter_map(|h| h.value.map(|v| (h.key, v)))
                .collect()
        })
        .unwrap_or_default();
    Incoming {
        topic: msg.topic().to_owned(),
        partition: msg.partition(),
        offset: msg.offset(),
        published_at: msg
            .timestamp()
            .to_millis()
            .and_then(DateTime::from_timestamp_millis),
        event: OutputEvent::from_kafka(headers, msg.payload().unwrap_or_default()),
    }
}

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchReport {
    /// Deliveries queued.
    pub queued: u64,
    /// Messages at or below a stored offset (queued by an earlier transaction).
    pub skipped: usize,
    pub positions: HashMap<(String, i32), i64>,
}

/// The consume loop.
pub struct ConsumeLoop {
    pub consumer: Arc<OutputConsumer>,
    pub pool: PgPool,
    pub group_id: String,
    pub metrics: Metrics,
    pub batch_max: usize,
    pub linger: Duration,
    /// Woken when deliveries were queued.
    pub queued: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for ConsumeLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumeLoop")
            .field("group_id", &self.group_id)
            .finish_non_exhaustive()
    }
}

impl ConsumeLoop {
    /// Runs until `stop`: gathers a batch (N messages or T ms after the first), queues it in
    /// one transaction, retrying with backoff while the database fails. A batch interrupted by
    /// `stop` is abandoned: its offsets were not stored, so it is read again after a restart.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        loop {
            let mut batch = Vec::new();
            let first = tokio::select! {
                _ = stop.cancelled() => break,
                m = self.consumer.recv() => m,
            };
            match first {
                Ok(msg) => batch.push(incoming(&msg)),
                Err(e) => {
                    tracing::warn!(error = %e, "Kafka consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
            let deadline = tokio::time::Instant::now() + self.linger;
            while batch.len() < self.batch_max {
                match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                    Ok(Ok(msg)) => batch.push(incoming(&msg)),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "Kafka consumer error");
                        break;
                    }
                    Err(_) => break,
                }
            }
            let mut backoff = Duration::from_millis(100);
            loop {
                match self.process(&batch).await {
                    Ok(report) => {
                        if report.queued > 0 {
                            self.queued.notify_one();
                        }
                        self.mirror(&report.positions);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            retry_in_ms = backoff.as_millis() as u64,
                            "queueing a batch failed; retrying"
                        );
                        tokio::select! {
                            _ = stop.cancelled() => {
                                tracing::info!("stopping during a retry; the batch will be read again");
                                return Ok(());
                            }
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
        tracing::info!("consume loop stopped");
        Ok(())
    }

    /// Queues one batch: offsets locked, subscriptions read, matching events queued, offsets
    /// advanced, all in one transaction.
    async fn process(&self, batch: &[Incoming]) -> anyhow::Result<BatchReport> {
        let mut tx = self.pool.begin().await?;
        let partitions: Vec<(String, i32)> = batch
            .iter()
            .map(|m| (m.topic.clone(), m.partition))
            .collect();
        let stored = offsets::lock(&mut tx, &self.group_id, &partitions).await?;
        let subs = subscriptions::receiving(&mut tx).await?;
        let mut report = BatchReport::default();
        let mut rows = Vec::new();
        // Outcomes are counted after the commit, once.
        let mut outcomes: Vec<Result<u64, &'static str>> = Vec::new();
        for m in batch {
            let key = (m.topic.clone(), m.partition);
            if stored.get(&key).is_some_and(|next| m.offset < *next) {
                report.skipped += 1;
                continue;
            }
            let next = report.positions.entry(key).or_insert(m.offset + 1);
            *next = (*next).max(m.offset + 1);
            let event = match &m.event {
                Ok(e) => e,
                Err(why) => {
                    tracing::warn!(topic = %m.topic, partition = m.partition, offset = m.offset, reason = %why, "output message skipped: it cannot be delivered");
                    outcomes.push(Err(why.as_str()));
                    continue;
                }
            };
            let before = rows.len();
            for sub in &subs {
                let after_creation = m.published_at.is_none_or(|t| t >= sub.created_at);
                if after_creation && sub.wants(event) {
                    rows.push(queue::NewDelivery {
                        subscription_id: sub.id,
                        customer_id: event.subject.clone(),
                        ce_id: event.id,
                        ce_type: event.event_type.as_str(),
                        body: event.body(),
                    });
                }
            }
            outcomes.push(Ok((rows.len() - before) as u64));
        }
        report.queued = queue::enqueue(&mut tx, &rows).await?;
        offsets::advance(&mut tx, &self.group_id, &report.positions).await?;
        tx.commit().await?;
        for outcome in outcomes {
            match outcome {
                Ok(0) => self.metrics.message_unmatched(),
                Ok(n) => self.metrics.message_queued(n),
                Err(reason) => self.metrics.message_malformed(reason),
            }
        }
        Ok(report)
    }

    /// Mirrors the stored offsets to Kafka, for lag monitoring only.
    fn mirror(&self, positions: &HashMap<(String, i32), i64>) {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in positions {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .ok();
        }
        if tpl.count() > 0
            && let Err(e) = self.consumer.commit(&tpl, CommitMode::Async)
        {
            tracing::debug!(error = %e, "offset mirror to Kafka failed (lag monitoring only)");
        }
    }
}
