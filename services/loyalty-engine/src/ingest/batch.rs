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
use crate::partitioner::partition_for;
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
    /// Partitions of the input topics: a new customer's home partition is the one Kafka's
    /// default partitioner gives their id.
    pub partitions: i32,
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
        for (m, e) in &fresh {
            if partition_for(e.meta.customer_id.as_str().as_bytes(), self.partitions) != m.partition
            {
                self.metrics.event_off_home(&m.topic);
            }
        }
        let seen = fresh.iter().map(|(_, e)| e.meta.occurred_at).max();
        let now = self.clock.now(&mut tx, &self.group_id, seen).await?;
        let model = self.model.get();
        let mut evaluated = evaluate_and_write_states(
            &mut tx,
            &fresh,
            &self.programme,
            model.as_deref(),
            now,
            self.partitions,
            &self.metrics,
            Some(&mut clock),
        )
        .await?;
        for (_, e) in &fresh {
            self.metrics
                .event_lag((Utc::now() - e.meta.occurred_at).num_milliseconds() as f64 / 1000.0);
        }
        if !self.publish {
            // A quiet backfill: the states are written, their outputs dropped.
            for e in &mut evaluated {
                e.outputs.clear();
            }
        }
        changes::write_outputs(&mut tx, &evaluated, messages, &self.topics, &self.programme)
            .await?;
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

/// How many times a batch re-applies customers whose rows other writers created meanwhile
/// before it gives up (and is retried whole).
const MAX_WRITE_ROUNDS: usize = 5;

/// Applies fresh events (and the referral credits they carry) to their customers inside the
/// transaction, evaluating each customer once at `now`, and writes their rows.
///
/// A customer who has a row is locked while loaded, so concurrent batches touching them wait
/// for each other. A customer who has none yet cannot be locked: when another writer creates
/// the row between this batch's read and its write (one customer's events arriving on two
/// partitions owned by different writers or instances), the write is refused by the row's
/// version, and the customer's events are applied again on the row now stored. A new customer's
/// home partition is the one Kafka's default partitioner gives their id among `partitions`; it
/// never changes after.
#[allow(clippy::too_many_arguments)]
pub async fn evaluate_and_write_states(
    conn: &mut sqlx::PgConnection,
    fresh: &[(&Incoming, &DomainEvent)],
    programme: &Programme,
    model: Option<&Model>,
    now: DateTime<Utc>,
    partitions: i32,
    metrics: &Metrics,
    mut clock: Option<&mut Stages<'_>>,
) -> anyhow::Result<Vec<Evaluated>> {
    let by_customer = group_by_customer(fresh);
    let ids: Vec<&CustomerId> = by_customer.keys().copied().collect();
    let mut evaluated =
        evaluate(conn, &by_customer, &ids, programme, model, now, partitions).await?;
    if let Some(c) = clock.as_deref_mut() {
        c.lap("load");
    }
    let mut pending: Vec<usize> = (0..evaluated.len()).collect();
    for _ in 0..MAX_WRITE_ROUNDS {
        let stale = changes::write_states(conn, pending.iter().map(|&i| &evaluated[i])).await?;
        if stale.is_empty() {
            if let Some(c) = clock {
                c.lap("apply");
            }
            return Ok(evaluated);
        }
        metrics.write_conflicts(stale.len());
        pending = stale.into_iter().map(|s| pending[s]).collect();
        let ids: Vec<&CustomerId> = pending
            .iter()
            .map(|&i| &evaluated[i].state.customer_id)
            .collect();
        let again = evaluate(conn, &by_customer, &ids, programme, model, now, partitions).await?;
        for (&i, e) in pending.iter().zip(again) {
            evaluated[i] = e;
        }
    }
    anyhow::bail!(
        "{} customers' rows kept changing between read and write; retrying the batch",
        pending.len()
    )
}

/// Each customer's events of the batch in event-time order, with the referrals they are
/// credited for.
fn group_by_customer<'a>(
    fresh: &[(&'a Incoming, &'a DomainEvent)],
) -> BTreeMap<&'a CustomerId, Changes<'a>> {
    let mut by_customer: BTreeMap<&CustomerId, Changes<'_>> = BTreeMap::new();
    let mut sorted: Vec<&(&Incoming, &DomainEvent)> = fresh.iter().collect();
    sorted.sort_by(|a, b| {
        (a.1.meta.occurred_at, a.1.meta.event_id.as_str())
            .cmp(&(b.1.meta.occurred_at, b.1.meta.event_id.as_str()))
    });
    for (_, e) in sorted {
        by_customer
            .entry(&e.meta.customer_id)
            .or_default()
            .events
            .push(e);
        if let EventBody::Purchase(p) = &e.body
            && let Some(referrer) = &p.referred_by
        {
            by_customer
                .entry(referrer)
                .or_default()
                .referred
                .push((e.meta.customer_id.clone(), e));
        }
    }
    by_customer
}

/// Loads and locks the rows of `ids` and applies their changes.
async fn evaluate(
    conn: &mut sqlx::PgConnection,
    by_customer: &BTreeMap<&CustomerId, Changes<'_>>,
    ids: &[&CustomerId],
    programme: &Programme,
    model: Option<&Model>,
    now: DateTime<Utc>,
    partitions: i32,
) -> anyhow::Result<Vec<Evaluated>> {
    let mut rows = customers::load_for_update(conn, ids).await?;
    let mut evaluated = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(changes) = by_customer.get(id) else {
            continue;
        };
        let (state, home, replaces) = match rows.remove(*id) {
            Some(row) => (Some(row.state), row.home_partition, row.version),
            None => (
                None,
                partition_for(id.as_str().as_bytes(), partitions),
                customers::NO_ROW,
            ),
        };
        let (state, metrics, outputs) = apply(id, state, changes, programme, model, now);
        evaluated.push(Evaluated {
            state,
            home_partition: home,
            metrics,
            outputs,
            replaces,
        });
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
