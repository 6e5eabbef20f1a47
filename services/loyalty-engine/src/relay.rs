//! The outbox relay: publishes outbox rows of the partitions this instance owns, in order, with
//! an idempotent producer, and deletes them once Kafka acknowledged them. New rows are
//! announced with LISTEN/NOTIFY; a slow poll covers lost notifications.

use std::time::Duration;

use chrono::Utc;
use futures::future::join_all;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::config::RelaySettings;
use crate::ingest::ownership::Ownership;
use crate::metrics::Metrics;
use crate::store::outbox::{self, NOTIFY_CHANNEL, OutboxRow};

pub struct Relay {
    pub pool: PgPool,
    pub producer: FutureProducer,
    pub ownership: Ownership,
    pub settings: RelaySettings,
    pub metrics: Metrics,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Publishes rows until `shutdown`; then drains what the owned partitions still hold.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        let mut listener: Option<PgListener> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            if listener.is_none() {
                listener = self.listen().await;
            }
            match self.publish_once().await {
                Ok(n) if n > 0 => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Ok(_) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "relay round failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            if shutdown.is_cancelled() {
                break;
            }
            // Wait for a notification, the poll interval, or shutdown.
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => {}
                r = notified => if r.is_err() { listener = None; },
                _ = tokio::time::sleep(poll) => {}
            }
        }
        // Flush: publish what is left for the partitions still owned.
        for _ in 0..10 {
            match self.publish_once().await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "relay flush failed; rows stay in the outbox"
                    );
                    break;
                }
            }
        }
        tracing::info!("relay stopped");
        Ok(())
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut l = PgListener::connect_with(&self.pool).await.ok()?;
        l.listen(NOTIFY_CHANNEL).await.ok()?;
        Some(l)
    }

    /// Publishes one batch of rows; returns how many were published.
    pub async fn publish_once(&self) -> anyhow::Result<usize> {
        let partitions = self.ownership.partition_numbers();
        if partitions.is_empty() {
            return Ok(0);
        }
        let rows = outbox::next_batch(&self.pool, &partitions, self.settings.batch_size).await?;
        if rows.is_empty() {
            if let Ok((n, age)) = outbox::backlog(&self.pool).await {
                self.metrics.outbox_backlog(n, age);
            }
            return Ok(0);
        }
        let deliveries = join_all(rows.iter().map(|row| self.send(row))).await;
        let mut done = Vec::with_capacity(rows.len());
        let mut failed = None;
        for (row, result) in rows.iter().zip(deliveries) {
            match result {
                Ok(()) => {
                    done.push(row.id);
                    let age = (Utc::now() - row.created_at).num_milliseconds() as f64 / 1000.0;
                    self.metrics.published(&row.message.topic, age);
                }
                Err(e) => failed = Some(e),
            }
        }
        if !done.is_empty() {
            outbox::delete(&self.pool, &done).await?;
        }
        if let Some(e) = failed {
            anyhow::bail!("publishing outbox rows failed: {e}");
        }
        Ok(done.len())
    }

    async fn send(&self, row: &OutboxRow) -> Result<(), String> {
        let m = &row.message;
        let mut headers = OwnedHeaders::new_with_capacity(m.headers.len());
        for (k, v) in &m.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&m.topic)
            .payload(&m.payload)
            .headers(headers);
        if let Some(key) = &m.key {
            record = record.key(key);
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e.to_string())
    }
}
