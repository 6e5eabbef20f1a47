//! One batch, one transaction: offsets checked and advanced, event ids deduplicated, states
//! loaded and written, outputs and dead letters queued in the outbox, all committed together.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::config::Topics;
use crate::domain::apply::apply;
use crate::domain::event::DomainEvent;
use crate::domain::ids::CustomerId;
use crate::domain::output::{Output, OutputKind};
use crate::domain::programme::Programme;
use crate::metrics::{Metrics, Outcome};
use crate::outputs::{self, Origin};
use crate::store::ledger::LedgerRow;
use crate::store::offsets::Positions;
use crate::store::{customers, ledger, offsets, outbox};

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
        let stored = offsets::lock(&mut tx, &self.group_id, &partitions).await?;
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
            .map(|(m, e)| {
                Ok(LedgerRow {
                    customer_id: e.meta.customer_id.as_str(),
                    event_id: e.meta.event_id.as_str(),
                    occurred_at: e.meta.occurred_at,
                    kind: e.body.kind(),
                    body: serde_json::to_value(e)?,
                    source: format!("{}/{}/{}", m.topic, m.partition, m.offset),
                })
            })
            .collect::<Result<_, serde_json::Error>>()?;
        let is_new = ledger::insert_new(&mut tx, &rows).await?;
        let mut by_customer: BTreeMap<&CustomerId, Vec<(&Incoming, &DomainEvent)>> =
            BTreeMap::new();
        for ((m, e), new) in events.iter().zip(is_new) {
            if new {
                by_customer
                    .entry(&e.meta.customer_id)
                    .or_default()
                    .push((m, e));
            } else {
                report.duplicates += 1;
                self.metrics.consumed(&m.topic, Outcome::Duplicate, 1);
            }
        }

        // 4. Load, apply in event-time order, write back.
        let ids: Vec<&CustomerId> = by_customer.keys().copied().collect();
        let mut states = customers::load_for_update(&mut tx, &ids).await?;
        let mut written = Vec::with_capacity(by_customer.len());
        for (id, mut list) in by_customer {
            list.sort_by(|a, b| {
                (a.1.meta.occurred_at, a.1.meta.event_id.as_str())
                    .cmp(&(b.1.meta.occurred_at, b.1.meta.event_id.as_str()))
            });
            let mut state = states.remove(id);
            let mut home = 0;
            for (m, e) in list {
                let (next_state, outs) = apply(state, e, &self.programme);
                state = Some(next_state);
                home = m.partition;
                report.applied += 1;
                self.metrics.consumed(&m.topic, Outcome::Applied, 1);
                self.metrics
                    .event_lag((now - e.meta.occurred_at).num_milliseconds() as f64 / 1000.0);
                for out in outs {
                    messages.push(outputs::encode(
                        &out,
                        m.partition,
                        &self.topics,
                        &self.programme,
                    )?);
                    report.outputs.push(out);
                }
            }
            if let Some(state) = state {
                written.push((state, home));
            }
        }
        let refs: Vec<_> = written.iter().map(|(s, p)| (s, *p)).collect();
        customers::upsert(&mut tx, &refs).await?;
        outbox::insert(&mut tx, &messages).await?;
        offsets::advance(&mut tx, &self.group_id, &next).await?;
        tx.commit().await?;

        for out in &report.outputs {
            self.metrics.output_written(out.kind.name());
            let OutputKind::TierChanged { previous, new, .. } = &out.kind;
            self.metrics.tier_changed(previous, new);
        }
        report.positions = next;
        Ok(report)
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
