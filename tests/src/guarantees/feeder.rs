//! Producing a workload's messages to the input topics.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::bail;
use kizuna::config::{Settings, Topics};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::workload::{Msg, Partitioner};

/// A producer that never loses the test's own input: idempotent, acks from all replicas, and
/// librdkafka retries for up to five minutes (a broker restart included) before a delivery
/// fails. Every send awaits its acknowledgement.
pub struct Feeder {
    murmur2: FutureProducer,
    crc32: FutureProducer,
    pub topics: Topics,
}

impl std::fmt::Debug for Feeder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Feeder")
    }
}

impl Feeder {
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let producer = |partitioner: &str| -> anyhow::Result<FutureProducer> {
            Ok(ClientConfig::new()
                .set("bootstrap.servers", &settings.kafka.brokers)
                .set("partitioner", partitioner)
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("linger.ms", "5")
                .set("message.timeout.ms", "300000")
                .set("message.max.bytes", "2000000")
                .create()?)
        };
        Ok(Self {
            murmur2: producer("murmur2_random")?,
            crc32: producer("consistent_random")?,
            topics: settings.kafka.topics.clone(),
        })
    }

    /// Produces `msgs` in order (enqueued back to back, so per-partition order holds) and
    /// returns where each landed.
    pub async fn send_all(&self, msgs: &[Msg]) -> anyhow::Result<Vec<(i32, i64)>> {
        let mut pending = Vec::with_capacity(msgs.len());
        for m in msgs {
            let topic = m.input.topic(&self.topics);
            loop {
                let mut headers = OwnedHeaders::new_with_capacity(m.headers.len());
                for (k, v) in &m.headers {
                    headers = headers.insert(Header {
                        key: k,
                        value: Some(v),
                    });
                }
                let mut record = FutureRecord::<str, [u8]>::to(topic)
                    .payload(&m.payload)
                    .headers(headers);
                if let Some(k) = &m.key {
                    record = record.key(k.as_str());
                }
                let producer = match m.partitioner {
                    Partitioner::Murmur2 => &self.murmur2,
                    Partitioner::Crc32 => &self.crc32,
                };
                match producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull,
                        ),
                        _,
                    )) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err((e, _)) => bail!("enqueueing a message for {topic}: {e}"),
                }
            }
        }
        let mut landed = Vec::with_capacity(pending.len());
        for delivery in pending {
            match delivery.await {
                Ok(Ok(d)) => landed.push((d.partition, d.offset)),
                Ok(Err((e, _))) => bail!("a test message was not delivered: {e}"),
                Err(_) => bail!("the producer dropped a delivery"),
            }
        }
        Ok(landed)
    }
}

/// Streams `msgs` in chunks with a pause after each, in the background. `sent` counts the
/// messages acknowledged so far.
pub fn stream(
    feeder: Arc<Feeder>,
    msgs: Arc<Vec<Msg>>,
    chunk: usize,
    pause: Duration,
    sent: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<anyhow::Result<Vec<(i32, i64)>>> {
    tokio::spawn(async move {
        let mut landed = Vec::with_capacity(msgs.len());
        for part in msgs.chunks(chunk.max(1)) {
            landed.extend(feeder.send_all(part).await?);
            sent.fetch_add(part.len(), Ordering::SeqCst);
            tokio::time::sleep(pause).await;
        }
        Ok(landed)
    })
}

pub async fn wait_sent(sent: &AtomicUsize, n: usize) -> anyhow::Result<()> {
    crate::wait_for(
        &format!("{n} messages sent"),
        Duration::from_secs(300),
        || async { Ok((sent.load(Ordering::SeqCst) >= n).then_some(())) },
    )
    .await
}
