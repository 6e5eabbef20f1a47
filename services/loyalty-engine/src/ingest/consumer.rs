//! The consume loop: gather a batch (N messages or T ms, whichever first), decode and
//! validate it, apply it in one transaction, mirror the offsets to Kafka for lag monitoring.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::batch::{Content, Incoming, Processor, touched};
use super::decode::{InputKind, WireHeaders, decode};
use super::rebalance::IngestContext;
use super::validate::{Limits, validate};
use crate::config::{IngestSettings, Topics};
use crate::health::Health;

pub type IngestConsumer = StreamConsumer<IngestContext>;

/// Everything the consume loop needs.
pub struct IngestLoop {
    pub consumer: Arc<IngestConsumer>,
    pub processor: Processor,
    pub settings: IngestSettings,
    pub limits: Limits,
    pub kinds: HashMap<String, InputKind>,
    pub health: Health,
}

impl std::fmt::Debug for IngestLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestLoop")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl IngestLoop {
    pub fn kinds(topics: &Topics) -> HashMap<String, InputKind> {
        HashMap::from([
            (topics.purchases.clone(), InputKind::Purchase),
            (topics.support_tickets.clone(), InputKind::SupportTicket),
            (topics.surveys.clone(), InputKind::Survey),
        ])
    }

    fn to_incoming(&self, msg: &BorrowedMessage<'_>, now: DateTime<Utc>) -> Incoming {
        let mut wire = WireHeaders::default();
        if let Some(headers) = msg.headers() {
            for h in headers.iter() {
                match h.key {
                    "content-type" | "content_type" => wire.content_type = h.value,
                    "ce_type" | "kizuna-schema" => wire.schema = h.value,
                    _ => {}
                }
            }
        }
        let kind = self
            .kinds
            .get(msg.topic())
            .copied()
            .unwrap_or(InputKind::Purchase);
        let result = decode(kind, msg.payload(), wire, self.settings.max_message_bytes)
            .and_then(|w| validate(&w, msg.key(), &self.limits, now));
        let content = match result {
            Ok(event) => Content::Event(Box::new(event)),
            Err(rejection) => {
                tracing::warn!(
                    topic = msg.topic(),
                    partition = msg.partition(),
                    offset = msg.offset(),
                    reason = %rejection.reason,
                    "input refused; sending it to the dead-letter topic"
                );
                Content::Rejected {
                    rejection,
                    key: msg.key().map(<[u8]>::to_vec),
                    payload: msg.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    content_type: wire.content_type.map(<[u8]>::to_vec),
                }
            }
        };
        Incoming {
            topic: msg.topic().to_owned(),
            partition: msg.partition(),
            offset: msg.offset(),
            content,
        }
    }

    /// Gathers one batch. Returns None when shutdown was requested before the first message.
    async fn next_batch(&self, shutdown: &CancellationToken) -> Option<Vec<Incoming>> {
        let mut batch = Vec::new();
        let linger = Duration::from_millis(self.settings.batch_linger_ms);
        let mut deadline: Option<tokio::time::Instant> = None;
        while batch.len() < self.settings.batch_max_events {
            let received = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = sleep_until_opt(deadline) => break,
                m = self.consumer.recv() => m,
            };
            match received {
                Ok(msg) => {
                    batch.push(self.to_incoming(&msg, Utc::now()));
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + linger);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Kafka consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        if batch.is_empty() && shutdown.is_cancelled() {
            None
        } else {
            Some(batch)
        }
    }

    /// Runs until `shutdown` is cancelled, as a pipeline: this task receives and decodes the
    /// next batch while `ingest.writers` tasks commit the previous ones, each for its own share
    /// of the partitions (partition number modulo the writer count), so customers never meet
    /// in two writers. Batches already received when shutdown comes are committed if the
    /// database answers; a batch whose commit is still failing is abandoned: its offsets were
    /// not stored, so it is consumed again after a restart.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let this = Arc::new(self);
        let writers = this.settings.writers.max(1);
        let mut queues = Vec::with_capacity(writers);
        let mut committers = Vec::with_capacity(writers);
        for _ in 0..writers {
            let (to_commit, mut queue) = tokio::sync::mpsc::channel::<Vec<Incoming>>(1);
            queues.push(to_commit);
            let this = this.clone();
            let shutdown = shutdown.clone();
            committers.push(tokio::spawn(async move {
                while let Some(batch) = queue.recv().await {
                    if !this.commit(batch, &shutdown).await {
                        break;
                    }
                }
            }));
        }
        'receive: while let Some(batch) = this.next_batch(&shutdown).await {
            let mut shares: Vec<Vec<Incoming>> = (0..writers).map(|_| Vec::new()).collect();
            for m in batch {
                let w = usize::try_from(m.partition).unwrap_or(0) % writers;
                shares[w].push(m);
            }
            for (queue, share) in queues.iter().zip(shares) {
                if !share.is_empty() && queue.send(share).await.is_err() {
                    break 'receive;
                }
            }
        }
        drop(queues);
        for c in committers {
            c.await.ok();
        }
        tracing::info!("ingest stopped");
        Ok(())
    }

    /// Commits one batch, retrying with backoff while the database fails. Returns false when
    /// shutdown interrupted the retries.
    async fn commit(&self, mut batch: Vec<Incoming>, shutdown: &CancellationToken) -> bool {
        let ownership = &self.consumer.context().ownership;
        let in_flight = &self.consumer.context().in_flight;
        let generation = ownership.generation();
        let mut backoff = Duration::from_millis(100);
        loop {
            if ownership.generation() != generation {
                // Partitions were revoked while the batch waited: abandon their messages, the
                // new owner starts from the stored offsets.
                batch.retain(|m| ownership.owns(&m.topic, m.partition));
                if batch.is_empty() {
                    return true;
                }
            }
            let started = Instant::now();
            in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let result = self.processor.process(&batch, Utc::now()).await;
            in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            match result {
                Ok(report) => {
                    self.health.set_ingest_ok(true);
                    self.processor
                        .metrics
                        .batch_committed(batch.len(), started.elapsed().as_secs_f64());
                    tracing::debug!(
                        events = batch.len(),
                        applied = report.applied,
                        duplicates = report.duplicates,
                        dead_lettered = report.dead_lettered,
                        replayed = report.replayed,
                        outputs = report.outputs.len(),
                        "batch committed"
                    );
                    self.commit_to_kafka(&touched(&report.positions, &batch));
                    return true;
                }
                Err(e) => {
                    self.health.set_ingest_ok(false);
                    self.processor.metrics.batch_failed();
                    tracing::warn!(
                        error = format!("{e:#}"),
                        retry_in_ms = backoff.as_millis() as u64,
                        "batch failed; retrying"
                    );
                    tokio::select! {
                        _ = shutdown.cancelled() => {
                            tracing::info!(events = batch.len(), "shutdown during retry; batch abandoned, it will be consumed again");
                            return false;
                        }
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Mirrors stored offsets to Kafka, for lag monitoring only.
    fn commit_to_kafka(&self, positions: &HashMap<(String, i32), i64>) {
        let ownership = &self.consumer.context().ownership;
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in positions {
            if ownership.owns(topic, *partition) {
                tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                    .ok();
            }
        }
        if tpl.count() > 0
            && let Err(e) = self.consumer.commit(&tpl, CommitMode::Async)
        {
            tracing::debug!(error = %e, "offset mirror to Kafka failed (lag monitoring only)");
        }
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
