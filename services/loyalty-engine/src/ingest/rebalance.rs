//! Rebalances, after Vector's Kafka source: librdkafka's rebalance callback runs on the thread
//! that polls the consumer, so it only signals. It sends `Assigned` or `Revoked` to the
//! coordinator task and waits on a rendezvous for the answer; the coordinator does the I/O:
//! on assignment it reads the offsets stored with the state (through the connection pool) and
//! the callback seeks to them; on revocation it closes the gate for the partitions leaving and
//! waits, with a deadline kept under the session timeout, for their batches being committed.

use std::collections::HashMap;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::mpsc::UnboundedSender;

use super::gate::Gate;
use crate::engine::ownership::Ownership;
use crate::metrics::Metrics;
use crate::store::offsets::{self, Positions};

type Partition = (String, i32);

/// How long an assignment waits for PostgreSQL before falling back to Kafka's committed
/// offsets (which never run ahead of the stored ones).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the callback tells the coordinator, with the rendezvous to answer on.
#[derive(Debug)]
pub enum RebalanceEvent {
    /// Partitions arrive: answer with their stored positions (None: unavailable).
    Assigned(Vec<Partition>, SyncSender<Option<Positions>>),
    /// Partitions leave: answer once their batches in flight are done (or the deadline passed).
    Revoked(Vec<Partition>, SyncSender<()>),
    /// The assignment was lost (a rebalance error).
    Lost,
}

/// The consumer's context: signals rebalances, and keeps librdkafka's statistics.
#[derive(Debug)]
pub struct IngestContext {
    pub ownership: Ownership,
    pub events: UnboundedSender<RebalanceEvent>,
    /// How long a revocation may take: the drain deadline plus a margin.
    pub revoke_wait: Duration,
}

impl ClientContext for IngestContext {
    /// librdkafka's periodic statistics: the high watermark of each assigned partition, for
    /// the consumer-lag gauge (no extra requests to the brokers).
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut highs = HashMap::new();
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                if partition >= 0 && p.hi_offset >= 0 {
                    highs.insert((topic.clone(), partition), p.hi_offset);
                }
            }
        }
        self.ownership.set_high_watermarks(highs);
    }
}

fn pairs(tpl: &TopicPartitionList) -> Vec<Partition> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

/// Waits on the rendezvous. On a multi-threaded runtime's worker (the consume loop polls the
/// consumer there), the runtime is told that this thread blocks, so other tasks (the
/// coordinator, the writers) move on.
fn wait<T>(answer: std::sync::mpsc::Receiver<T>, timeout: Duration) -> Option<T> {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(|| answer.recv_timeout(timeout).ok())
    } else {
        answer.recv_timeout(timeout).ok()
    }
}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let (tx, rx) = sync_channel(1);
                let sent = self.events.send(RebalanceEvent::Assigned(pairs(tpl), tx));
                let positions = sent
                    .ok()
                    .and_then(|()| wait(rx, LOOKUP_TIMEOUT + Duration::from_secs(1)))
                    .flatten();
                for mut elem in tpl.elements() {
                    let offset = match &positions {
                        // Nothing stored: nothing of this partition was ever applied.
                        Some(p) => p
                            .get(&(elem.topic().to_owned(), elem.partition()))
                            .map_or(Offset::Beginning, |o| Offset::Offset(*o)),
                        // Kafka's committed offsets trail the stored ones, and anything below a
                        // stored offset is skipped inside the batch transaction.
                        None => Offset::Stored,
                    };
                    if let Err(e) = elem.set_offset(offset) {
                        tracing::warn!(topic = elem.topic(), partition = elem.partition(), error = %e, "could not set the start offset");
                    }
                }
            }
            Rebalance::Revoke(tpl) => {
                let (tx, rx) = sync_channel(1);
                if self
                    .events
                    .send(RebalanceEvent::Revoked(pairs(tpl), tx))
                    .is_ok()
                {
                    wait(rx, self.revoke_wait);
                }
            }
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "rebalance error");
                self.events.send(RebalanceEvent::Lost).ok();
            }
        }
    }
}

/// The task that answers rebalance events.
#[derive(Debug)]
pub struct Coordinator {
    pub pool: sqlx::PgPool,
    pub group_id: String,
    pub topics: Vec<String>,
    pub ownership: Ownership,
    pub gate: Gate,
    pub metrics: Metrics,
    /// How long a revocation waits for the batches being committed.
    pub drain: Duration,
}

impl Coordinator {
    /// Answers events until every sender (the consumer's context, which closing the consumer
    /// still needs) is gone and `stop` is cancelled.
    pub async fn run(
        self,
        mut events: UnboundedReceiver<RebalanceEvent>,
        stop: tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<()> {
        while let Some(event) = events.recv().await {
            self.handle(event).await;
        }
        stop.cancelled().await;
        Ok(())
    }

    pub async fn handle(&self, event: RebalanceEvent) {
        match event {
            RebalanceEvent::Assigned(partitions, answer) => {
                let positions = match tokio::time::timeout(
                    LOOKUP_TIMEOUT,
                    offsets::load(&self.pool, &self.group_id, &self.topics),
                )
                .await
                {
                    Ok(Ok(p)) => Some(p),
                    Ok(Err(e)) => {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "stored offsets unavailable; starting from Kafka's committed offsets"
                        );
                        None
                    }
                    Err(_) => {
                        tracing::warn!(
                            "stored offsets not read in time; starting from Kafka's committed offsets"
                        );
                        None
                    }
                };
                self.gate.open(&partitions);
                self.ownership.assign(partitions.iter().cloned());
                tracing::info!(partitions = ?partitions, "partitions assigned; seeking to stored offsets");
                answer.send(positions).ok();
            }
            RebalanceEvent::Revoked(partitions, answer) => {
                let deadline = tokio::time::Instant::now() + self.drain;
                let drained = self.gate.drain(&partitions, deadline).await;
                if !drained {
                    tracing::warn!(partitions = ?partitions, "batches still committing at the revocation deadline; they are abandoned and consumed again by the new owner");
                }
                self.ownership.revoke(partitions.iter().cloned());
                tracing::info!(partitions = ?partitions, "partitions revoked");
                answer.send(()).ok();
            }
            RebalanceEvent::Lost => self.ownership.revoke_all(),
        }
        self.metrics.assigned_partitions(self.ownership.count());
    }
}
