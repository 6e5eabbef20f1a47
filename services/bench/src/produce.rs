//! Producing the workload: as fast as possible (pre-loading a backlog) or at a fixed offered
//! rate, recording when each marker was produced; and reading the output topics back.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::env::BenchEnv;
use crate::workload::{Msg, Workload};

/// Counts acknowledgements and failures.
#[derive(Debug, Default, Clone)]
pub struct Acks {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

pub struct Sender {
    producer: ThreadedProducer<Acks>,
    acks: Acks,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sender")
    }
}

impl Sender {
    /// An idempotent producer with the Java client's partitioner (as the engine expects).
    /// `linger_ms`: 20 for bulk loading; for latency runs 5, the default of librdkafka and of the
    /// Java client since Kafka 4.0, as an upstream platform would most likely run.
    pub fn new(brokers: &str, linger_ms: u32) -> anyhow::Result<Self> {
        let acks = Acks::default();
        let producer: ThreadedProducer<Acks> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", linger_ms.to_string())
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576")
            .set("message.timeout.ms", "120000")
            .create_with_context(acks.clone())
            .context("creating the bench producer")?;
        Ok(Self { producer, acks })
    }

    /// Enqueues one message, waiting while the local queue is full.
    pub fn send(&self, env: &BenchEnv, msg: &Msg) -> anyhow::Result<()> {
        let headers = OwnedHeaders::new().insert(Header {
            key: "content-type",
            value: Some("application/json"),
        });
        let mut record = BaseRecord::to(env.topic(msg.input))
            .key(msg.key.as_str())
            .payload(msg.payload.as_slice())
            .headers(headers);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => bail!("producing to {}: {e}", env.topic(msg.input)),
            }
        }
    }

    /// Waits until every message is acknowledged; fails if any was not.
    pub fn flush(&self, timeout: Duration) -> anyhow::Result<u64> {
        self.producer
            .flush(timeout)
            .context("waiting for the broker's acknowledgements")?;
        let failed = self.acks.failed.load(Ordering::Relaxed);
        if failed > 0 {
            bail!("{failed} messages were not acknowledged by the broker");
        }
        Ok(self.acks.ok.load(Ordering::Relaxed))
    }
}

/// Produces `n` events of `workload` as fast as possible; returns the time it took.
pub fn preload(env: &BenchEnv, workload: &mut Workload, n: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let sender = Sender::new(&env.brokers, 20)?;
    for _ in 0..n {
        sender.send(env, &workload.next_msg())?;
    }
    let acked = sender.flush(Duration::from_secs(300))?;
    if acked != n {
        bail!("produced {n} messages but {acked} were acknowledged");
    }
    Ok(started.elapsed())
}

/// What a paced run produced.
#[derive(Debug, Default)]
pub struct Paced {
    /// Messages sent at the paced rate.
    pub sent: u64,
    /// Messages sent before the clock started (warming the producer and the engine up).
    pub unmeasured: u64,
    pub elapsed: Duration,
    /// Marker event id → when it was handed to the producer.
    pub markers: HashMap<String, Instant>,
}

/// Produces `workload` at `rate` events/s for `warm_up` and then for `duration` (on the calling
/// thread). Only the second phase is measured: its messages are `sent`, its markers timed; the
/// warm-up brings the engine to the steady state of that rate (batch sizes, database
/// connections and their caches) before the clock starts.
pub fn paced(
    env: &BenchEnv,
    workload: &mut Workload,
    rate: f64,
    warm_up: Duration,
    duration: Duration,
    stop: &AtomicBool,
) -> anyhow::Result<Paced> {
    let sender = Sender::new(&env.brokers, 5)?;
    let mut out = Paced::default();
    // The producer connects and obtains its producer id with its first message: that happens
    // before the clock starts, so the measured times are the engine's, not the client's start.
    sender.send(env, &workload.next_msg())?;
    sender.flush(Duration::from_secs(30))?;
    out.unmeasured = 1;
    let started = Instant::now();
    let mut produced = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let elapsed = started.elapsed();
        if elapsed >= warm_up + duration {
            break;
        }
        let measuring = elapsed >= warm_up;
        let due = (elapsed.as_secs_f64() * rate) as u64;
        while produced < due {
            let msg = workload.next_msg();
            if measuring {
                if let Some(id) = &msg.marker {
                    out.markers.insert(id.clone(), Instant::now());
                }
                out.sent += 1;
            } else {
                out.unmeasured += 1;
            }
            sender.send(env, &msg)?;
            produced += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    out.elapsed = started.elapsed().saturating_sub(warm_up);
    sender.flush(Duration::from_secs(120))?;
    Ok(out)
}

/// An output message's cause and arrival.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub caused_by: String,
    pub at: Instant,
}

/// Reads the output topics from the beginning in a thread until `stop`, recording when each
/// message arrived and the `causedBy` it carries.
pub fn read_outputs(
    env: &BenchEnv,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<Vec<Arrival>>>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &env.brokers)
        .set("group.id", format!("bench-reader-{}", env.id))
        .set("enable.auto.commit", "false")
        // A fetch returns as soon as data arrives; the wait only bounds empty fetches.
        .set("fetch.wait.max.ms", "100")
        .set("fetch.error.backoff.ms", "10")
        .create()
        .context("creating the output reader")?;
    let mut tpl = TopicPartitionList::new();
    let t = &env.topics;
    for topic in [&t.tier_changed, &t.churn_risk, &t.segment_changed] {
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .with_context(|| format!("metadata of {topic}"))?;
        for mt in md.topics() {
            for p in mt.partitions() {
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
            }
        }
    }
    if tpl.count() == 0 {
        bail!("the output topics have no partitions");
    }
    consumer.assign(&tpl)?;
    Ok(std::thread::spawn(move || {
        let mut got = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let Some(result) = consumer.poll(Duration::from_millis(50)) else {
                continue;
            };
            let at = Instant::now();
            let msg = match result {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("kizuna-bench: output reader: {e}");
                    continue;
                }
            };
            let caused_by = msg
                .payload()
                .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
                .and_then(|v| {
                    v.get("causedBy")
                        .and_then(|c| c.as_str())
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            got.push(Arrival { caused_by, at });
        }
        Ok(got)
    }))
}
