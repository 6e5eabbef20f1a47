//! One batch, one transaction: offsets checked and advanced, event ids deduplicated, states
//! loaded and written, outputs and dead letters queued in the outbox, all committed together.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::config::Topics;
use crate::domain::apply::{Changes, apply};
use crate::domain::churn::Model;
use crate::domain::event::{DomainEvent, EventBody};
use crate::domain::ids::CustomerId;
use crate::domain::output::Output;
use crate::domain::programme::Programme;
use crate::metrics::{Metrics, Outcome};
use crate::model_cache::ModelCache;
use crate::outputs::{self, Origin};
use crate::store::changes::{self, Evaluated};
use crate::store::ledger::LedgerRow;
use crate::store::offsets::Positions;
use crate::store::{customers, ledger, offsets};

use super::clock::Clock;
use super::reject::Rejection;

/// A consumed message after decoding.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub content: Content,
}

#[derive(Debug, Clone)]
pub enum Content {
    Event(Box<DomainEvent>),
    Rejected {
        rejection: Rejection,
        key: Option<Vec<u8>>,
        payload: Vec<u8>,
        content_type: Option<Vec<u8>>,
    },
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
    pub pool: PgPool,
    pub group_id: String,
    pub topics: Topics,
    pub programme: Arc<Programme>,
    pub metrics: Metrics,
    pub clock: Clock,
    pub model: ModelCache,
    /// False for a quiet backfill: states are updated, no output event is published.
    pub publish: bool,
}

impl Processor {
    /// Applies `batch` in one transaction. On error nothing is written and the whole batch can
    /// be retried.
    pub async fn process(
        &self,
        batch: &[Incoming],
        now: DateTime<Utc>,
    ) -> anyhow::Result<BatchReport> {
        let mut report = BatchReport::default();
        if batch.is_empty() {
            return Ok(report);
        }
        let mut tx = self.pool.begin().await?;

        // 1. Offsets: lock the partitions' rows; skip what an earlier transaction applied.
        let partitions: Vec<(String, i32)> = batch
            .iter()
            .map(|m| (m.topic.clone(), m.partition))
            .collect();
        let mut clock = Stages::start(&self.metrics);
        let stored = offsets::lock(&mut tx, &self.group_id, &partitions).await?;
        clock.lap("offsets");
        let mut next = stored.clone();
        let mut fresh_msgs = Vec::with_capacity(batch.len());
        for m in batch {
            let key = (m.topic.clone(), m.partition);
            let at = stored.get(&key).copied().unwrap_or(0);
            if m.offset < at {
                report.replayed += 1;
                self.metrics.consumed(&m.topic, Outcome::Replayed, 1);
                continue;
            }
            let slot = next.entry(key).or_insert(0);
            *slot = (*slot).max(m.offset + 1);
            fresh_msgs.push(m);
        }

        // 2. Dead letters go to the outbox, so they are published iff this batch commits.
        let mut messages = Vec::new();
        let mut events: Vec<(&Incoming, &DomainEvent)> = Vec::new();
        for m in &fresh_msgs {
            match &m.content {
                Content::Event(e) => events.push((m, e)),
                Content::Rejected {
                    rejection,
                    key,
                    payload,
                    content_type,
                } => {
                    let origin = Origin {
                        topic: &m.topic,
                        partition: m.partition,
                        offset: m.offset,
                        key: key.as_deref(),
                        content_type: content_type.as_deref(),
                    };
                    messages.push(outputs::dead_letter(
                        &origin,
                        payload,
                        rejection,
                        &self.topics.dead_letter,
                        now,
                    ));
                    report.dead_lettered += 1;
                    self.metrics.dead_lettered(&m.topic, rejection.reason);
                    self.metrics.consumed(&m.topic, Outcome::DeadLettered, 1);
                }
            }
        }

        // 3. Deduplicate on event id through the ledger.
        let rows: Vec<LedgerRow<'_>> = events
            .iter()
            .map(|(m, e)| LedgerRow {
                event: e,
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
                report.applied += 1;
                self.metrics.consumed(&m.topic, Outcome::Applied, 1);
            } else {
                report.duplicates += 1;
                self.metrics.consumed(&m.topic, Outcome::Duplicate, 1);
            }
        }

        // 4. Load, apply in event-time order, evaluate once per customer, write back.
        let seen = fresh.iter().map(|(_, e)| e.meta.occurred_at).max();
        let now = self.clock.now(&mut tx, &self.group_id, seen).await?;
        let model = self.model.get();
        let evaluated = evaluate_batch(
            &mut tx,
            &fresh,
            &self.programme,
            model.as_deref(),
            now,
            Some(&mut clock),
        )
        .await?;
        for (_, e) in &fresh {
            self.metrics
                .event_lag((Utc::now() - e.meta.occurred_at).num_milliseconds() as f64 / 1000.0);
        }
        changes::write(&mut tx, &evaluated, messages, &self.topics, &self.programme).await?;
        clock.lap("write");
        offsets::advance(&mut tx, &self.group_id, &next).await?;
        tx.commit().await?;
        clock.lap("commit");

        for e in evaluated {
            for out in e.outputs {
                self.metrics.output(&out);
                report.outputs.push(out);
            }
        }
        report.positions = next;
        Ok(report)
    }
}

/// Applies fresh events (and the referral credits they carry) to their customers inside the
/// transaction, evaluating each customer once at `now`.
pub async fn evaluate_batch(
    conn: &mut sqlx::PgConnection,
    fresh: &[(&Incoming, &DomainEvent)],
    programme: &Programme,
    model: Option<&Model>,
    now: DateTime<Utc>,
    mut clock: Option<&mut Stages<'_>>,
) -> anyhow::Result<Vec<Evaluated>> {
    let mut by_customer: BTreeMap<&CustomerId, (Changes<'_>, i32)> = BTreeMap::new();
    let mut sorted: Vec<&(&Incoming, &DomainEvent)> = fresh.iter().collect();
    sorted.sort_by(|a, b| {
        (a.1.meta.occurred_at, a.1.meta.event_id.as_str())
            .cmp(&(b.1.meta.occurred_at, b.1.meta.event_id.as_str()))
    });
    for (m, e) in sorted {
        let entry = by_customer
            .entry(&e.meta.customer_id)
            .or_insert_with(|| (Changes::default(), m.partition));
        entry.0.events.push(e);
        entry.1 = m.partition;
        if let EventBody::Purchase(p) = &e.body
            && let Some(referrer) = &p.referred_by
        {
            by_customer
                .entry(referrer)
                .or_insert_with(|| (Changes::default(), m.partition))
                .0
                .referred
                .push((e.meta.customer_id.clone(), e));
        }
    }
    let ids: Vec<&CustomerId> = by_customer.keys().copied().collect();
    let mut states = customers::load_for_update(conn, &ids).await?;
    if let Some(c) = clock.as_deref_mut() {
        c.lap("load");
    }
    let mut evaluated = Vec::with_capacity(by_customer.len());
    for (id, (changes, partition)) in by_customer {
        let (state, home) = match states.remove(id) {
            // A customer keeps the partition their own events arrive on; a referrer seen only
            // through a referral keeps the one they had.
            Some((s, home)) if changes.events.is_empty() => (Some(s), home),
            Some((s, _)) => (Some(s), partition),
            None => (None, partition),
        };
        let (state, metrics, outputs) = apply(id, state, &changes, programme, model, now);
        evaluated.push(Evaluated {
            state,
            home_partition: home,
            metrics,
            outputs,
        });
    }
    if let Some(c) = clock {
        c.lap("apply");
    }
    Ok(evaluated)
}

/// Times the stages of a batch into `kizuna_batch_stage_seconds{stage}`.
#[derive(Debug)]
pub struct Stages<'a> {
    metrics: &'a Metrics,
    last: std::time::Instant,
}

impl<'a> Stages<'a> {
    pub fn start(metrics: &'a Metrics) -> Self {
        Self {
            metrics,
            last: std::time::Instant::now(),
        }
    }

    pub fn lap(&mut self, stage: &'static str) {
        let now = std::time::Instant::now();
        self.metrics
            .batch_stage(stage, (now - self.last).as_secs_f64());
        self.last = now;
    }
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
