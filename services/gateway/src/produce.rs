//! The producer: idempotent, `acks=all`, the Java client's murmur2 partitioner (as the engine's
//! own producer), keyed by customer id. A request's events are all handed over at once and the
//! request is answered only when the broker has acknowledged every one of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use kizuna::config::{KafkaSettings as EngineKafka, Topics};
use kizuna::inputs::decode::InputKind;
use rdkafka::client::Client;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;

use crate::api::{ProducedEvent, Source};
use crate::config::KafkaSettings;

/// One message to produce.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub kind: InputKind,
    pub event_id: String,
    pub key: String,
    pub payload: Vec<u8>,
}

/// Why a request's events were not all acknowledged. The request gets 503; since event ids are
/// deterministic, the platform's retry re-sends the same events and those that did land are
/// dropped by the engine as duplicates.
#[derive(Debug, thiserror::Error)]
#[error("{acknowledged} of {total} events acknowledged; first failure: {first}")]
pub struct NotAcknowledged {
    pub acknowledged: usize,
    pub total: usize,
    pub first: String,
}

#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
    topics: Topics,
    delivery_timeout: Duration,
    readiness: Arc<Readiness>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("topics", &self.topics.inputs())
            .finish()
    }
}

#[derive(Debug)]
struct Readiness {
    timeout: Duration,
    cache: Duration,
    last: std::sync::Mutex<Option<(Instant, bool)>>,
}

impl Producer {
    /// A producer with the engine's Kafka client settings (brokers, security properties) and
    /// the gateway's delivery settings.
    pub fn new(engine: &EngineKafka, settings: &KafkaSettings) -> anyhow::Result<Self> {
        let inner: FutureProducer = kizuna::kafka::base_config(engine)
            .set("client.id", format!("{}-gateway", engine.client_id))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", settings.linger_ms.to_string())
            .set(
                "message.timeout.ms",
                settings.delivery_timeout_ms.to_string(),
            )
            .create()
            .context("creating the Kafka producer")?;
        Ok(Self {
            inner,
            topics: engine.topics.clone(),
            delivery_timeout: Duration::from_millis(settings.delivery_timeout_ms),
            readiness: Arc::new(Readiness {
                timeout: Duration::from_millis(settings.readiness_timeout_ms),
                cache: Duration::from_millis(settings.readiness_cache_ms),
                last: std::sync::Mutex::new(None),
            }),
        })
    }

    pub fn topic(&self, kind: InputKind) -> &str {
        match kind {
            InputKind::Purchase => &self.topics.purchases,
            InputKind::SupportTicket => &self.topics.support_tickets,
            InputKind::Survey => &self.topics.surveys,
            InputKind::Redemption => &self.topics.redemptions,
        }
    }

    /// Produces every message and waits for all acknowledgements (or the first failure of each).
    pub async fn send_all(
        &self,
        source: Source,
        messages: &[Outgoing],
    ) -> Result<Vec<ProducedEvent>, NotAcknowledged> {
        let origin = format!("gateway/{}", source.as_str());
        let sends = messages.iter().map(|m| {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "content-type",
                    value: Some(kizuna_proto::CONTENT_TYPE_JSON),
                })
                .insert(Header {
                    key: "kizuna-schema",
                    value: Some(kizuna_proto::SCHEMA_VERSION),
                })
                .insert(Header {
                    key: "kizuna-source",
                    value: Some(origin.as_str()),
                });
            let topic = self.topic(m.kind);
            let record = FutureRecord::to(topic)
                .key(m.key.as_str())
                .payload(m.payload.as_slice())
                .headers(headers);
            // The queue wait counts against the same budget as the delivery.
            let fut = self
                .inner
                .send(record, Timeout::After(self.delivery_timeout));
            async move {
                fut.await
                    .map(|d| ProducedEvent {
                        event_id: m.event_id.clone(),
                        topic: topic.to_owned(),
                        partition: d.partition,
                        offset: d.offset,
                    })
                    .map_err(|(e, _)| e.to_string())
            }
        });
        let results = futures::future::join_all(sends).await;
        let total = results.len();
        let mut produced = Vec::with_capacity(total);
        let mut first = None;
        for r in results {
            match r {
                Ok(p) => produced.push(p),
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        match first {
            None => Ok(produced),
            Some(first) => Err(NotAcknowledged {
                acknowledged: produced.len(),
                total,
                first,
            }),
        }
    }

    /// Ready: the broker answers a metadata request and every input topic is in it with leaders.
    /// The answer is reused for `readiness_cache_ms`.
    pub async fn ready(&self) -> bool {
        if let Ok(last) = self.readiness.last.lock()
            && let Some((at, ready)) = *last
            && at.elapsed() < self.readiness.cache
        {
            return ready;
        }
        let producer = self.inner.clone();
        let topics: Vec<String> = self
            .topics
            .inputs()
            .iter()
            .map(|t| (*t).to_owned())
            .collect();
        let timeout = self.readiness.timeout;
        let ready =
            tokio::task::spawn_blocking(move || topics_ready(producer.client(), &topics, timeout))
                .await
                .unwrap_or(false);
        if let Ok(mut last) = self.readiness.last.lock() {
            *last = Some((Instant::now(), ready));
        }
        ready
    }

    /// Waits for messages still in flight (at shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.inner.flush(Timeout::After(timeout)) {
            tracing::warn!(error = %e, "messages still unacknowledged at shutdown");
        }
    }
}

fn topics_ready<C: rdkafka::ClientContext>(
    client: &Client<C>,
    topics: &[String],
    timeout: Duration,
) -> bool {
    topics.iter().all(|topic| {
        client
            .fetch_metadata(Some(topic), timeout)
            .ok()
            .and_then(|md| {
                md.topics().first().map(|t| {
                    t.error().is_none()
                        && !t.partitions().is_empty()
                        && t.partitions().iter().all(|p| p.leader() >= 0)
                })
            })
            .unwrap_or(false)
    })
}
