//! The consume loop: gather a batch (N messages or T ms, whichever first), decode and
//! validate it, hand it to a writer that applies it in one transaction, mirror the offsets to
//! Kafka for lag monitoring.
//!
//! A writer's batch failure is classified (`failure`): a transient one is retried with backoff
//! and jitter; a poison one (the batch's content fails every time) is applied again in halves
//! until the message at fault is alone, and that message is dead-lettered with the reason
//! `processing_failed` while the rest is applied. Rebalances go through the coordinator
//! (`rebalance`), which closes the gate (`gate`) for partitions leaving.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::failure::{Backoff, Failure, classify};
use super::gate::Gate;
use super::source::{RawMessage, Source};
use crate::config::{IngestSettings, Topics};
use crate::domain::rejection::{RejectReason, Rejection};
use crate::engine::batch::{BatchReport, Content, Incoming, Processor, Raw, Unresolved, touched};
use crate::engine::ownership::Ownership;
use crate::health::Health;
use crate::inputs::decode::{InputKind, WireHeaders, check_size, decode, decode_framed_body};
use crate::inputs::frame;
use crate::inputs::validate::{Limits, validate};
use crate::metrics::Metrics;
use crate::registry::{LookupError, Registered, RegistryUnavailable, SchemaRegistry};
use crate::telemetry::spans;

/// Where batches are applied: the database in production, a fake in the loop's unit tests.
pub trait Sink: Send + Sync + 'static {
    /// Applies `batch` in one transaction; on error nothing of it was applied.
    fn process(
        &self,
        batch: &[Incoming],
    ) -> impl Future<Output = anyhow::Result<BatchReport>> + Send;
}

impl Sink for Processor {
    async fn process(&self, batch: &[Incoming]) -> anyhow::Result<BatchReport> {
        Processor::process(self, batch, Utc::now()).await
    }
}

/// Turns consumed messages into decoded, validated input.
#[derive(Debug, Clone)]
pub struct Decoder {
    kinds: HashMap<String, InputKind>,
    limits: Limits,
    max_message_bytes: usize,
    /// Resolves the schema ids of registry-framed messages; None: no registry configured.
    registry: Option<Arc<SchemaRegistry>>,
}

impl Decoder {
    pub fn new(topics: &Topics, limits: Limits, max_message_bytes: usize) -> Self {
        Self {
            kinds: HashMap::from([
                (topics.purchases.clone(), InputKind::Purchase),
                (topics.support_tickets.clone(), InputKind::SupportTicket),
                (topics.surveys.clone(), InputKind::Survey),
                (topics.redemptions.clone(), InputKind::Redemption),
            ]),
            limits,
            max_message_bytes,
            registry: None,
        }
    }

    /// Reads registry-framed messages with `registry`.
    pub fn with_registry(mut self, registry: Option<Arc<SchemaRegistry>>) -> Self {
        self.registry = registry;
        self
    }

    /// Decodes and validates `msg`; a message that cannot be applied is kept, refused with its
    /// reason, for the dead-letter topic. A registry-framed message whose schema is not cached
    /// stays `Unresolved` until `resolve`.
    pub fn decode(&self, msg: RawMessage, now: DateTime<Utc>) -> Incoming {
        let content = match self.content(&msg, now) {
            Ok(content) => content,
            Err(rejection) => self.refused(&msg.topic, msg.partition, msg.offset, rejection),
        };
        let traceparent = msg
            .traceparent
            .map(|tp| spans::received(tp, &msg.topic, msg.partition, msg.offset));
        Incoming {
            topic: msg.topic,
            partition: msg.partition,
            offset: msg.offset,
            raw: Raw {
                key: msg.key,
                payload: msg.payload.unwrap_or_default(),
                content_type: msg.content_type,
                ce_headers: msg.ce_headers,
                traceparent,
            },
            content,
        }
    }

    fn kind(&self, topic: &str, partition: i32, offset: i64) -> Result<InputKind, Rejection> {
        self.kinds.get(topic).copied().ok_or_else(|| {
            tracing::error!(
                topic,
                partition,
                offset,
                "message from a topic the engine did not subscribe to; dead-lettering it"
            );
            Rejection::new(
                RejectReason::UnknownTopic,
                format!("{topic} is not one of the input topics"),
            )
        })
    }

    fn refused(&self, topic: &str, partition: i32, offset: i64, rejection: Rejection) -> Content {
        tracing::warn!(
            topic,
            partition,
            offset,
            reason = %rejection.reason,
            "input refused; sending it to the dead-letter topic"
        );
        Content::Rejected(rejection)
    }

    fn content(&self, msg: &RawMessage, now: DateTime<Utc>) -> Result<Content, Rejection> {
        let kind = self.kind(&msg.topic, msg.partition, msg.offset)?;
        let headers = WireHeaders {
            content_type: msg.content_type.as_deref(),
            schema: msg.schema.as_deref(),
        };
        let payload = check_size(msg.payload.as_deref(), self.max_message_bytes)?;
        if !frame::is_framed(payload) {
            let wire = decode(kind, Some(payload), headers, self.max_message_bytes)?;
            let event = validate(&wire, msg.key.as_deref(), &self.limits, now)?;
            return Ok(Content::Event(Box::new(event)));
        }
        let frame = frame::parse(payload)?;
        let Some(registry) = &self.registry else {
            return Err(Rejection::new(
                RejectReason::RegistryNotConfigured,
                format!(
                    "the message is in Schema Registry framing (schema id {}), and no registry is configured (registry.url)",
                    frame.schema_id
                ),
            ));
        };
        match registry.cached(frame.schema_id) {
            Some(schema) => self.framed(kind, &frame, &schema, headers, msg.key.as_deref(), now),
            None => Ok(Content::Unresolved(Box::new(Unresolved {
                schema_id: frame.schema_id,
                schema_header: msg.schema.clone(),
                received_at: now,
            }))),
        }
    }

    /// A framed message whose schema is known: the schema must be the topic's `kizuna.v1`
    /// message, then the body is binary protobuf.
    fn framed(
        &self,
        kind: InputKind,
        frame: &frame::Frame<'_>,
        schema: &Registered,
        headers: WireHeaders<'_>,
        key: Option<&[u8]>,
        now: DateTime<Utc>,
    ) -> Result<Content, Rejection> {
        match schema {
            Registered::Proto(schema) => {
                frame::check(schema, frame.schema_id, &frame.indexes, kind)?;
            }
            Registered::Unusable(why) => {
                return Err(Rejection::new(
                    RejectReason::WrongSchema,
                    format!(
                        "schema id {} is {why}; expected {}",
                        frame.schema_id,
                        frame::expected_message(kind)
                    ),
                ));
            }
        }
        let wire = decode_framed_body(kind, frame.body, headers)?;
        let event = validate(&wire, key, &self.limits, now)?;
        Ok(Content::Event(Box::new(event)))
    }

    /// Fetches the schemas of the batch's `Unresolved` messages and decodes them. A registry
    /// that does not answer leaves them unresolved and is a transient failure of the batch.
    pub async fn resolve(&self, batch: &mut [Incoming]) -> Result<(), RegistryUnavailable> {
        // Ids the registry said it does not know, asked once per batch (found schemas are
        // cached by the client).
        let mut unknown = HashSet::new();
        for m in batch.iter_mut() {
            let Content::Unresolved(u) = &m.content else {
                continue;
            };
            let u = u.clone();
            let result = self.resolve_one(m, &u, &mut unknown).await?;
            m.content = match result {
                Ok(content) => content,
                Err(rejection) => self.refused(&m.topic, m.partition, m.offset, rejection),
            };
        }
        Ok(())
    }

    async fn resolve_one(
        &self,
        m: &Incoming,
        u: &Unresolved,
        unknown: &mut HashSet<u32>,
    ) -> Result<Result<Content, Rejection>, RegistryUnavailable> {
        let Some(registry) = &self.registry else {
            return Ok(Err(Rejection::new(
                RejectReason::RegistryNotConfigured,
                "no registry is configured (registry.url)",
            )));
        };
        let looked_up = if unknown.contains(&u.schema_id) {
            Err(LookupError::NotFound(u.schema_id))
        } else {
            registry.schema(u.schema_id).await
        };
        let schema = match looked_up {
            Ok(schema) => schema,
            Err(LookupError::NotFound(id)) => {
                unknown.insert(id);
                return Ok(Err(Rejection::new(
                    RejectReason::UnknownSchemaId,
                    format!(
                        "schema id {id} is not registered in the schema registry ({})",
                        registry.base_url()
                    ),
                )));
            }
            Err(LookupError::Unavailable(e)) => return Err(e),
        };
        let result = self.kind(&m.topic, m.partition, m.offset).and_then(|kind| {
            let frame = frame::parse(&m.raw.payload)?;
            let headers = WireHeaders {
                content_type: m.raw.content_type.as_deref(),
                schema: u.schema_header.as_deref(),
            };
            self.framed(
                kind,
                &frame,
                &schema,
                headers,
                m.raw.key.as_deref(),
                u.received_at,
            )
        });
        Ok(result)
    }
}

/// Everything the consume loop needs.
pub struct IngestLoop<S, K> {
    pub source: S,
    pub sink: K,
    pub decoder: Decoder,
    pub settings: IngestSettings,
    pub ownership: Ownership,
    pub gate: Gate,
    pub health: Health,
    pub metrics: Metrics,
    /// Offsets waiting to be mirrored to Kafka.
    mirror: std::sync::Mutex<OffsetMirror>,
}

impl<S, K> std::fmt::Debug for IngestLoop<S, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestLoop")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Stored offsets not yet mirrored to Kafka, and when the last mirror went out.
#[derive(Debug, Default)]
struct OffsetMirror {
    pending: HashMap<(String, i32), i64>,
    last: Option<Instant>,
}

/// How often stored offsets are mirrored to Kafka at most.
const MIRROR_EVERY: Duration = Duration::from_secs(1);

/// The first and the longest wait before a failed batch is retried.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

impl<S: Source, K: Sink> IngestLoop<S, K> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        source: S,
        sink: K,
        decoder: Decoder,
        settings: IngestSettings,
        ownership: Ownership,
        gate: Gate,
        health: Health,
        metrics: Metrics,
    ) -> Self {
        Self {
            source,
            sink,
            decoder,
            settings,
            ownership,
            gate,
            health,
            metrics,
            mirror: Default::default(),
        }
    }

    fn to_incoming(&self, msg: RawMessage, now: DateTime<Utc>) -> Incoming {
        if let Some(ms) = msg.timestamp_ms {
            let lag = now.timestamp_millis().saturating_sub(ms);
            self.metrics.receive_lag(lag as f64 / 1000.0);
        }
        self.decoder.decode(msg, now)
    }

    /// Runs until `shutdown` is cancelled, as a pipeline with adaptive batching: this task
    /// receives and decodes messages into one pending batch per writer (partition number modulo
    /// `ingest.writers`), while the writers commit. A pending batch goes to its writer when the
    /// writer is free and either `batch_linger_ms` has passed since its first message or it
    /// holds `batch_max_events`; while the writer is busy the batch keeps growing (up to that
    /// maximum). At light load batches are small and latency is one linger plus one
    /// transaction; at peak they are large and throughput is high. Messages received when
    /// shutdown comes are committed if the database answers; a batch whose commit is still
    /// failing is abandoned: its offsets were not stored, so it is consumed again after a
    /// restart.
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
                received = this.source.recv(), if room => match received {
                    Ok(msg) => {
                        let incoming = this.to_incoming(msg, Utc::now());
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

    /// Commits one batch: retried with backoff while the failure is transient, split while it
    /// is poison. Returns false when shutdown interrupted the retries (the rest is abandoned:
    /// its offsets were not stored).
    pub async fn commit(&self, batch: Vec<Incoming>, shutdown: &CancellationToken) -> bool {
        let mut work = VecDeque::from([batch]);
        let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
        while let Some(mut part) = work.pop_front() {
            let started = Instant::now();
            // Registry-framed messages whose schema was not cached: fetched before the
            // partitions are admitted, so a slow registry does not hold up a rebalance.
            let result = match self.decoder.resolve(&mut part).await {
                Err(unavailable) => Err(anyhow::Error::new(unavailable)),
                Ok(()) => {
                    // Partitions revoked (or being revoked) meanwhile: their messages are the
                    // new owner's, who reads them again from the stored offsets.
                    let admitted = self.gate.admit(&mut part, |topic, partition| {
                        self.ownership.owns(topic, partition)
                    });
                    if part.is_empty() {
                        self.gate.release(admitted);
                        continue;
                    }
                    let result = self.sink.process(&part).await;
                    self.gate.release(admitted);
                    result
                }
            };
            let error = match result {
                Ok(report) => {
                    self.committed(&part, &report, started.elapsed());
                    backoff.reset();
                    continue;
                }
                Err(e) => e,
            };
            self.metrics.batch_failed();
            let single_refusal = part.len() == 1 && matches!(part[0].content, Content::Rejected(_));
            match classify(&error) {
                Failure::Poison if part.len() > 1 => {
                    tracing::warn!(
                        events = part.len(),
                        error = format!("{error:#}"),
                        "batch failed on its content; applying it in halves to find the message at fault"
                    );
                    let right = part.split_off(part.len() / 2);
                    work.push_front(right);
                    work.push_front(part);
                }
                Failure::Poison if !single_refusal => {
                    let Some(m) = part.pop() else { continue };
                    tracing::error!(
                        topic = m.topic,
                        partition = m.partition,
                        offset = m.offset,
                        error = format!("{error:#}"),
                        "a message fails every time it is applied; dead-lettering it (processing_failed)"
                    );
                    let detail = format!("{error:#}");
                    work.push_front(vec![
                        m.refused(Rejection::new(RejectReason::ProcessingFailed, detail)),
                    ]);
                }
                // Transient, or a dead letter that cannot be queued: wait and retry.
                _ => {
                    self.health.set_ingest_ok(false);
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        error = format!("{error:#}"),
                        retry_in_ms = delay.as_millis() as u64,
                        "batch failed; retrying"
                    );
                    tokio::select! {
                        _ = shutdown.cancelled() => {
                            tracing::info!(events = part.len(), "shutdown during retry; batch abandoned, it will be consumed again");
                            return false;
                        }
                        _ = tokio::time::sleep(delay) => {}
                    }
                    work.push_front(part);
                }
            }
        }
        true
    }

    fn committed(&self, batch: &[Incoming], report: &BatchReport, took: Duration) {
        self.health.set_ingest_ok(true);
        self.metrics
            .batch_committed(batch.len(), took.as_secs_f64());
        tracing::debug!(
            events = batch.len(),
            applied = report.applied,
            duplicates = report.duplicates,
            dead_lettered = report.dead_lettered,
            replayed = report.replayed,
            outputs = report.outputs.len(),
            "batch committed"
        );
        self.mirror_offsets(&touched(&report.positions, batch));
    }

    /// Mirrors stored offsets to Kafka, for lag monitoring only (tools that read the group's
    /// committed offsets, such as KEDA's Kafka scaler), at most once a second: a commit
    /// request per batch cost the broker more than the consumption itself at small batches.
    /// (librdkafka's auto-commit would do the same, but against tansu it crashed the client.)
    /// What is still pending goes out on the consume loop's next tick.
    fn mirror_offsets(&self, positions: &HashMap<(String, i32), i64>) {
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
        self.source.mirror(&due);
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
