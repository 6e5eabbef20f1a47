//! The consumer context: on every assignment, seek each partition to the next offset stored in
//! PostgreSQL; on revocation, record that the partitions are gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use secrecy::{ExposeSecret, SecretString};
use sqlx::Connection;

use super::ownership::Ownership;
use crate::metrics::Metrics;
use crate::store::offsets::{self, Positions};

/// How long an assignment waits for PostgreSQL before falling back to Kafka's committed
/// offsets (which never run ahead of the stored ones).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct IngestContext {
    pub ownership: Ownership,
    /// High watermarks of the assigned partitions, from librdkafka's statistics.
    pub high_watermarks: Arc<std::sync::Mutex<std::collections::HashMap<(String, i32), i64>>>,
    /// Batch transactions being committed right now.
    pub in_flight: Arc<AtomicUsize>,
    /// How long a revocation waits for the batch being committed (kept under the session
    /// timeout, checked at start-up).
    pub revoke_drain: Duration,
    pub database_url: SecretString,
    pub group_id: String,
    pub topics: Vec<String>,
    pub metrics: Metrics,
}

impl ClientContext for IngestContext {
    /// librdkafka's periodic statistics: the high watermark of each assigned partition, for
    /// the consumer-lag gauge (no extra requests to the brokers).
    fn stats(&self, statistics: rdkafka::Statistics) {
        if let Ok(mut highs) = self.high_watermarks.lock() {
            for (topic, t) in statistics.topics {
                for (partition, p) in t.partitions {
                    if partition >= 0 && p.hi_offset >= 0 {
                        highs.insert((topic.clone(), partition), p.hi_offset);
                    }
                }
            }
        }
    }
}

fn pairs(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl IngestContext {
    /// Reads the stored offsets on a connection of its own. The rebalance callback is
    /// synchronous and may run on a runtime thread, so the lookup runs on a scoped thread with
    /// a small runtime of its own.
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

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let assigned = pairs(tpl);
                match self.stored_positions() {
                    Ok(positions) => {
                        for mut elem in tpl.elements() {
                            let key = (elem.topic().to_owned(), elem.partition());
                            // Nothing stored: nothing of this partition was ever applied.
                            let offset = positions
                                .get(&key)
                                .map_or(Offset::Beginning, |o| Offset::Offset(*o));
                            if let Err(e) = elem.set_offset(offset) {
                                tracing::warn!(topic = %key.0, partition = key.1, error = %e, "could not set the start offset");
                            }
                        }
                        tracing::info!(partitions = ?assigned, "partitions assigned; seeking to stored offsets");
                    }
                    Err(e) => {
                        // Kafka's committed offsets trail the stored ones, and anything at or
                        // below a stored offset is skipped inside the batch transaction.
                        tracing::warn!(error = %e, "stored offsets unavailable; starting from Kafka's committed offsets");
                        for mut elem in tpl.elements() {
                            elem.set_offset(Offset::Stored).ok();
                        }
                    }
                }
                self.ownership.assign(assigned);
            }
            Rebalance::Revoke(tpl) => {
                let revoked = pairs(tpl);
                // Let the batch being committed finish before the partitions go (bounded);
                // anything not yet committed is abandoned and consumed again by the new owner.
                let deadline = std::time::Instant::now() + self.revoke_drain;
                while self.in_flight.load(Ordering::SeqCst) > 0
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                tracing::info!(partitions = ?revoked, "partitions revoked");
                self.ownership.revoke(revoked);
            }
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "rebalance error");
                self.ownership.revoke_all();
            }
        }
        self.metrics.assigned_partitions(self.ownership.count());
    }
}
