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
    /// Offsets waiting to be mirrored to Kafka.
    pub mirror: std::sync::Mutex<OffsetMirror>,
}

/// Stored offsets not yet mirrored to Kafka, and when the last mirror went out.
#[derive(Debug, Default)]
pub struct OffsetMirror {
    pending: HashMap<(String, i32), i64>,
    last: Option<Instant>,
}

/// How often stored offsets are mirrored to Kafka at most.
const MIRROR_EVERY: Duration = Duration::from_secs(1);

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
        if let Some(ms) = msg.timestamp().to_millis() {
            let lag = now.timestamp_millis().saturating_sub(ms);
            self.processor.metrics.receive_lag(lag as f64 / 1000.0);
        }
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

    /// Runs until `shutdown` is cancelled, as a pipeline with adaptive batching: this task
    /// receives and decodes messages into one pending batch per writer (partition number modulo
    /// `ingest.writers`, so a customer is only ever written by one writer), while the writers
    /// commit. A pending batch goes to its writer when the writer is free and either
    /// `batch_linger_ms` has passed since its first message or it holds `batch_max_events`; while
    /// the writer is busy the batch keeps growing (up to that maximum). At light load batches
    /// are small and latency is one linger plus one transaction; at peak they are large and
    /// throughput is high. Messages received when shutdown comes are committed if the database
    /// answers; a batch whose commit is still failing is abandoned: its offsets were not stored,
    /// so it is consumed again after a restart.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let this = Arc::new(self);
        let writers = this.settings.writers.max(1);
        let max = this.settings.batch_max_events;
        let linger = Duration::from_millis(this.settings.batch_linger_ms);
        let freed = Arc::new(tokio::sync::Notify::new());
        let mut queues = Vec::with_capacity(writers);
        let mut committers = Vec::with_capacity(writers);
        for _ in 0..writers {
            let (to_commit, mut queue) = tokio::sync::mpsc::channel::<Vec<Incoming>>(1);
            queues.push(to_commit);
            let this = this.clone();
            let shutdown = shutdown.clone();
            let freed = freed.clone();
            committers.push(tokio::spawn(async move {
                while let Some(batch) = queue.recv().await {
                    let ok = this.commit(batch, &shutdown).await;
                    freed.notify_one();
                    if !ok {
                        break;
                    }
                }
            }));
        }
        let mut mirror_tick = tokio::time::interval(MIRROR_EVERY);
        mirror_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending: Vec<Vec<Incoming>> = (0..writers).map(|_| Vec::new()).collect();
        let mut since: Vec<Option<tokio::time::Instant>> = vec![None; writers];
        loop {
            // Hand over what is due to the writers that are free.
            let now = tokio::time::Instant::now();
            let mut next_deadline: Option<tokio::time::Instant> = None;
            for w in 0..writers {
                let Some(first) = since[w] else { continue };
                let due = pending[w].len() >= max || first + linger <= now;
                if !due {
                    let deadline = first + linger;
                    next_deadline = Some(next_deadline.map_or(deadline, |d| d.min(deadline)));
                    continue;
                }
                match queues[w].try_reserve() {
                    Ok(permit) => {
                        permit.send(std::mem::take(&mut pending[w]));
                        since[w] = None;
                    }
                    Err(tokio::sync::mpsc::error::TrySendError::Full(())) => {}
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(())) => {
                        return this.finish(committers).await;
                    }
                }
            }
            let room = pending.iter().all(|p| p.len() < max);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = freed.notified() => {}
                _ = sleep_until_opt(next_deadline) => {}
                _ = mirror_tick.tick() => this.flush_mirror(),
                received = this.consumer.recv(), if room => match received {
                    Ok(msg) => {
                        let incoming = this.to_incoming(&msg, Utc::now());
                        let w = usize::try_from(incoming.partition).unwrap_or(0) % writers;
                        if pending[w].is_empty() {
                            since[w] = Some(tokio::time::Instant::now());
                        }
                        pending[w].push(incoming);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Kafka consumer error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
            }
        }
        // Shutdown: what was received is committed if the database answers.
        for (queue, batch) in queues.iter().zip(pending) {
            if !batch.is_empty() && queue.send(batch).await.is_err() {
                break;
            }
        }
        drop(queues);
        this.finish(committers).await
    }

    async fn finish(&self, committers: Vec<tokio::task::JoinHandle<()>>) -> anyhow::Result<()> {
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

    /// Mirrors stored offsets to Kafka, for lag monitoring only (tools that read the group's
    /// committed offsets, such as KEDA's Kafka scaler), at most once a second: a commit
    /// request per batch cost the broker more than the consumption itself at small batches.
    /// (librdkafka's auto-commit would do the same, but against tansu it crashed the client.)
    /// What is still pending goes out on the consume loop's next tick.
    fn commit_to_kafka(&self, positions: &HashMap<(String, i32), i64>) {
        if let Ok(mut mirror) = self.mirror.lock() {
            for (key, offset) in positions {
                let slot = mirror.pending.entry(key.clone()).or_insert(*offset);
                *slot = (*slot).max(*offset);
            }
        }
        self.flush_mirror();
    }

    /// Commits the pending offsets if the last mirror is at least `MIRROR_EVERY` old.
    fn flush_mirror(&self) {
        let due = {
            let Ok(mut mirror) = self.mirror.lock() else {
                return;
            };
            if mirror.pending.is_empty() || mirror.last.is_some_and(|t| t.elapsed() < MIRROR_EVERY)
            {
                return;
            }
            mirror.last = Some(Instant::now());
            std::mem::take(&mut mirror.pending)
        };
        let ownership = &self.consumer.context().ownership;
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &due {
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
