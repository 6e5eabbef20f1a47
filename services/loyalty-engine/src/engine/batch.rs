//! One batch, one transaction: offsets checked and advanced, event ids deduplicated, states
//! loaded and written, outputs and dead letters queued in the outbox, all committed together.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use tracing::Instrument as _;

use crate::domain::event::DomainEvent;
use crate::domain::output::Output;
use crate::domain::points::Outcome as PointsOutcome;
use crate::domain::rejection::{RejectReason, Rejection};
use crate::engine::Core;
use crate::engine::apply::apply_events;
use crate::engine::outputs::{self, Origin};
use crate::engine::write::{self, Evaluated};
use crate::inputs::ce_headers::CeHeaders;
use crate::metrics::{Outcome, Stages};
use crate::partitioner::partition_for;
use crate::store::ledger::LedgerRow;
use crate::store::offsets::Positions;
use crate::store::{dead_letters, ledger, offsets};
use crate::telemetry::{TraceParent, spans};

/// A consumed message after decoding, with its raw bytes (a refused message goes to the
/// dead-letter topic as it came).
#[derive(Debug, Clone)]
pub struct Incoming {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub raw: Raw,
    pub content: Content,
}

/// A message as it came: key, payload, content type, `ce_*` headers and `traceparent`.
#[derive(Debug, Clone, Default)]
pub struct Raw {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub content_type: Option<Vec<u8>>,
    /// Its `ce_*` headers, carried as extensions by its dead letter.
    pub ce_headers: CeHeaders,
    /// Its `traceparent` (the engine's receive span's while traces are on), set on every
    /// output it causes, its dead letter included.
    pub traceparent: Option<TraceParent>,
}

#[derive(Debug, Clone)]
pub enum Content {
    Event(Box<DomainEvent>),
    Rejected(Rejection),
    /// A message in Schema Registry framing whose schema was not cached when it was consumed:
    /// ingest fetches the schema and makes it an `Event` or `Rejected` before the batch is
    /// applied. A batch that still holds one is refused whole (nothing applied).
    Unresolved(Box<Unresolved>),
}

/// What ingest needs to finish decoding a registry-framed message once its schema is fetched
/// (the frame itself is parsed again from `Raw::payload`).
#[derive(Debug, Clone)]
pub struct Unresolved {
    pub schema_id: u32,
    /// The `ce_type` / `kizuna-schema` header, still checked.
    pub schema_header: Option<Vec<u8>>,
    /// When it was consumed: the "now" it is validated against.
    pub received_at: DateTime<Utc>,
}

/// A batch was handed to `Processor::process` with a registry-framed message not resolved
/// yet. Transient: the consume loop resolves the batch again before the retry.
#[derive(Debug, thiserror::Error)]
#[error("the batch holds registry-framed messages whose schema is not resolved yet")]
pub struct UnresolvedInBatch;

impl Incoming {
    /// The same message, refused: it will be dead-lettered with `rejection`.
    pub fn refused(mut self, rejection: Rejection) -> Self {
        self.content = Content::Rejected(rejection);
        self
    }
}

/// What a committed batch did.
#[derive(Debug, Default)]
pub struct BatchReport {
    pub applied: usize,
    pub duplicates: usize,
    pub dead_lettered: usize,
    pub replayed: usize,
    pub outputs: Vec<Output>,
    /// Next offsets stored, to mirror to Kafka for lag monitoring.
    pub positions: Positions,
}

/// Applies batches of input to the database.
#[derive(Debug, Clone)]
pub struct Processor {
    pub core: Core,
    /// False for a quiet backfill: states are updated, no output event is published.
    pub publish: bool,
}

impl Processor {
    /// Applies `batch` in one transaction. On error nothing is written and the whole batch can
    /// be retried. Traced as `kizuna.batch`, continuing the first traced message's trace.
    pub async fn process(
        &self,
        batch: &[Incoming],
        now: DateTime<Utc>,
    ) -> anyhow::Result<BatchReport> {
        let span = spans::batch(batch.len(), batch.iter().filter_map(|m| m.raw.traceparent));
        self.process_traced(batch, now).instrument(span).await
    }

    async fn process_traced(
        &self,
        batch: &[Incoming],
        now: DateTime<Utc>,
    ) -> anyhow::Result<BatchReport> {
        let mut report = BatchReport::default();
        if batch.is_empty() {
            return Ok(report);
        }
        if batch
            .iter()
            .any(|m| matches!(m.content, Content::Unresolved(_)))
        {
            return Err(UnresolvedInBatch.into());
        }
        let core = &self.core;
        let group_id = &core.clock.group_id;
        let mut tx = core.pool.begin().await?;

        // 1. Offsets: lock the partitions' rows; skip what an earlier transaction applied.
        let partitions: Vec<(String, i32)> = batch
            .iter()
            .map(|m| (m.topic.clone(), m.partition))
            .collect();
        let mut clock = Stages::start(&core.metrics);
        let stored = offsets::lock(&mut tx, group_id, &partitions).await?;
        clock.lap("offsets");
        let mut next = stored.clone();
        let mut fresh_msgs = Vec::with_capacity(batch.len());
        for m in batch {
            let key = (m.topic.clone(), m.partition);
            let at = stored.get(&key).copied().unwrap_or(0);
            if m.offset < at {
                report.replayed += 1;
                core.metrics.consumed(&m.topic, Outcome::Replayed, 1);
                continue;
            }
            let slot = next.entry(key).or_insert(0);
            *slot = (*slot).max(m.offset + 1);
            fresh_msgs.push(m);
        }

        // 2. Dead letters go to the outbox, so they are published iff this batch commits.
        let mut messages = Vec::new();
        let mut refused: Vec<&str> = Vec::new();
        let mut events: Vec<(&Incoming, &DomainEvent)> = Vec::new();
        for m in &fresh_msgs {
            match &m.content {
                Content::Event(e) => events.push((m, e)),
                // Refused above, before the transaction.
                Content::Unresolved(_) => {}
                Content::Rejected(rejection) => {
                    messages.push(dead_letter(core, m, rejection, now));
                    report.dead_lettered += 1;
                    refused.push(rejection.reason.as_str());
                }
            }
        }

        // 2b. Events for a customer erased within `privacy.refuse_days` are refused (with
        //     `privacy.after_erasure = "refuse"`). The lock shared with erasures means an
        //     erasure either saw this batch's events or this batch sees the erasure.
        if crate::store::erasure::share_with_erasures(&mut tx, now).await? {
            let erased = erased_among(&mut tx, core, &events, now).await?;
            if !erased.is_empty() {
                let (out, kept): (Vec<_>, Vec<_>) = events
                    .into_iter()
                    .partition(|(_, e)| erased.contains(e.meta.customer_id.as_str()));
                events = kept;
                let rejection = Rejection::new(
                    RejectReason::Erased,
                    "the customer was erased; events for the id are refused for \
                     privacy.refuse_days after the erasure",
                );
                for (m, _) in out {
                    messages.push(dead_letter(core, m, &rejection, now));
                    report.dead_lettered += 1;
                    refused.push(rejection.reason.as_str());
                }
            }
        }

        // 3. Deduplicate on event id through the ledger.
        //    Survey comments are stored sealed under their customer's key (`store::comments`).
        let plain: Vec<&DomainEvent> = events.iter().map(|(_, e)| *e).collect();
        let sealed = crate::store::comments::seal_events(&mut tx, &plain).await?;
        let rows: Vec<LedgerRow<'_>> = events
            .iter()
            .enumerate()
            .map(|(i, (m, e))| LedgerRow {
                event: sealed.get(&i).unwrap_or(e),
                source: format!("{}/{}/{}", m.topic, m.partition, m.offset),
            })
            .collect();
        clock.lap("encode");
        let is_new = ledger::insert_new(&mut tx, &rows).await?;
        clock.lap("ledger");
        let mut fresh: Vec<(&Incoming, &DomainEvent)> = Vec::with_capacity(events.len());
        for ((m, e), new) in events.iter().zip(is_new) {
            if new {
                fresh.push((m, e));
            } else {
                report.duplicates += 1;
                core.metrics.consumed(&m.topic, Outcome::Duplicate, 1);
            }
        }

        // 4. Load, apply in event-time order, evaluate once per customer, write back.
        for (m, e) in &fresh {
            if partition_for(e.meta.customer_id.as_str().as_bytes(), core.partitions) != m.partition
            {
                core.metrics.event_off_home(&m.topic);
            }
        }
        let seen = fresh.iter().map(|(_, e)| e.meta.occurred_at).max();
        let received = now;
        let now = core.clock.advance(&mut tx, seen).await?;
        let events: Vec<&DomainEvent> = fresh.iter().map(|(_, e)| *e).collect();
        let mut evaluated = apply_events(&mut tx, core, &events, now, Some(&mut clock)).await?;

        // 5. Redemptions the points book refused go to the dead letters like any refusal; one
        //    it had applied before (the same redemption id) is a duplicate.
        let decisions = decisions(&evaluated);
        for (m, e) in &fresh {
            match decisions.get(&(e.meta.customer_id.as_str(), e.meta.event_id.as_str())) {
                Some(PointsOutcome::Refused(refusal)) => {
                    let rejection = Rejection::from(refusal);
                    messages.push(dead_letter(core, m, &rejection, received));
                    report.dead_lettered += 1;
                    refused.push(rejection.reason.as_str());
                }
                Some(PointsOutcome::AlreadyDone { .. }) => {
                    report.duplicates += 1;
                    core.metrics.consumed(&m.topic, Outcome::Duplicate, 1);
                }
                Some(PointsOutcome::Accepted { .. }) | None => {
                    report.applied += 1;
                    core.metrics.consumed(&m.topic, Outcome::Applied, 1);
                }
            }
        }
        dead_letters::count(&mut tx, received, &refused).await?;
        for (_, e) in &fresh {
            core.metrics
                .event_lag((Utc::now() - e.meta.occurred_at).num_milliseconds() as f64 / 1000.0);
        }
        if !self.publish {
            // A quiet backfill: the states are written, their outputs dropped.
            for e in &mut evaluated {
                e.outputs.clear();
            }
        }
        let traced = write::Traced::of(
            fresh
                .iter()
                .filter_map(|(m, e)| Some((e.meta.event_id.as_str(), m.raw.traceparent?))),
        );
        write::write_outputs_traced(&mut tx, core, &evaluated, messages, &traced).await?;
        clock.lap("write");
        offsets::advance(&mut tx, group_id, &next).await?;
        tx.commit().instrument(spans::commit()).await?;
        clock.lap("commit");

        for e in evaluated {
            for out in e.outputs {
                self.core.metrics.output(&out);
                report.outputs.push(out);
            }
        }
        report.positions = next;
        Ok(report)
    }
}

/// Each redemption's or cancel's decision, by (customer id, event id).
fn decisions(evaluated: &[Evaluated]) -> HashMap<(&str, &str), &PointsOutcome> {
    evaluated
        .iter()
        .flat_map(|e| {
            let customer = e.state.customer_id.as_str();
            e.state
                .points
                .decisions
                .iter()
                .map(move |d| ((customer, d.event_id.as_str()), &d.outcome))
        })
        .collect()
}

/// `m`, refused with `rejection`, as a dead letter queued in the outbox (counted in the metrics
/// here; in `dead_letter_counts` by the caller).
fn dead_letter(
    core: &Core,
    m: &Incoming,
    rejection: &Rejection,
    now: DateTime<Utc>,
) -> crate::store::outbox::OutboxMessage {
    let origin = Origin {
        topic: &m.topic,
        partition: m.partition,
        offset: m.offset,
        key: m.raw.key.as_deref(),
        content_type: m.raw.content_type.as_deref(),
        ce_headers: &m.raw.ce_headers,
    };
    core.metrics.dead_lettered(&m.topic, rejection.reason);
    core.metrics.consumed(&m.topic, Outcome::DeadLettered, 1);
    let mut letter = outputs::dead_letter(
        &origin,
        &m.raw.payload,
        rejection,
        &core.topics.dead_letter,
        now,
    );
    if let Some(tp) = m.raw.traceparent {
        outputs::set_traceparent(&mut letter, tp);
    }
    letter
}

/// Offsets to mirror to Kafka: only the partitions a batch touched.
pub fn touched(positions: &Positions, batch: &[Incoming]) -> HashMap<(String, i32), i64> {
    batch
        .iter()
        .filter_map(|m| {
            let key = (m.topic.clone(), m.partition);
            positions.get(&key).map(|o| (key, *o))
        })
        .collect()
}

/// The customers of `events` erased and still refused at `now` (by their ids' keyed hashes).
async fn erased_among<'a>(
    conn: &mut sqlx::PgConnection,
    core: &Core,
    events: &[(&Incoming, &'a DomainEvent)],
    now: DateTime<Utc>,
) -> anyhow::Result<std::collections::HashSet<&'a str>> {
    let Some(key) = core.erasure_key.get(&core.pool).await? else {
        return Ok(Default::default());
    };
    let mut ids: Vec<&str> = events
        .iter()
        .map(|(_, e)| e.meta.customer_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let hashes: Vec<String> = ids
        .iter()
        .map(|id| crate::domain::erasure::subject_hash(key, id))
        .collect();
    let refused: std::collections::HashSet<String> =
        crate::store::erasure::refused(conn, &hashes, now)
            .await?
            .into_iter()
            .collect();
    Ok(ids
        .into_iter()
        .zip(&hashes)
        .filter(|(_, h)| refused.contains(*h))
        .map(|(id, _)| id)
        .collect())
}
