//! Where the events go: Kafka topics (one per event kind, keyed by customer id, protobuf JSON
//! mapping) or a JSON-lines file of `kizuna.v1.InputEvent`, the format `kizuna backfill` reads.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::Duration;

use anyhow::Context;
use kizuna_proto::v1;
use kizuna_proto::v1::input_event::Event;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use crate::world::SimEvent;

/// The input topics.
#[derive(Debug, Clone)]
pub struct Topics {
    pub purchases: String,
    pub tickets: String,
    pub surveys: String,
}

pub enum Sink {
    Jsonl(JsonlSink),
    Kafka(KafkaSink),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sink::Jsonl(s) => write!(f, "Sink::Jsonl({})", s.name),
            Sink::Kafka(s) => write!(f, "Sink::Kafka({:?})", s.topics),
        }
    }
}

impl Sink {
    pub async fn send(&mut self, event: SimEvent) -> anyhow::Result<()> {
        match self {
            Sink::Jsonl(s) => s.write(event),
            Sink::Kafka(s) => s.send(event).await,
        }
    }

    /// Flushes the file, or waits until Kafka has acknowledged every event.
    pub async fn finish(&mut self) -> anyhow::Result<()> {
        match self {
            Sink::Jsonl(s) => s.flush(),
            Sink::Kafka(s) => s.finish().await,
        }
    }
}

/// `InputEvent` JSON, one per line.
pub struct JsonlSink {
    name: String,
    out: BufWriter<Box<dyn Write + Send>>,
}

impl JsonlSink {
    /// A file at `path`, or standard output for `-`.
    pub fn create(path: &str) -> anyhow::Result<Self> {
        let out: Box<dyn Write + Send> = if path == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(File::create(path).with_context(|| format!("creating {path}"))?)
        };
        Ok(Self::new(path, out))
    }

    pub fn new(name: &str, out: Box<dyn Write + Send>) -> Self {
        Self {
            name: name.to_owned(),
            out: BufWriter::with_capacity(256 * 1024, out),
        }
    }

    pub fn write(&mut self, event: SimEvent) -> anyhow::Result<()> {
        let line = v1::InputEvent {
            event: Some(event.event),
        };
        serde_json::to_writer(&mut self.out, &line)?;
        self.out
            .write_all(b"\n")
            .with_context(|| format!("writing to {}", self.name))
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.out
            .flush()
            .with_context(|| format!("writing to {}", self.name))
    }
}

impl std::fmt::Debug for JsonlSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlSink")
            .field("name", &self.name)
            .finish()
    }
}

/// Kafka, with an idempotent producer and a bounded number of unacknowledged events.
pub struct KafkaSink {
    producer: FutureProducer,
    topics: Topics,
    in_flight: VecDeque<DeliveryFuture>,
    max_in_flight: usize,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topics", &self.topics)
            .field("in_flight", &self.in_flight.len())
            .finish()
    }
}

impl KafkaSink {
    pub fn new(brokers: &str, topics: Topics) -> anyhow::Result<Self> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create()
            .context("creating the Kafka producer")?;
        Ok(Self {
            producer,
            topics,
            in_flight: VecDeque::new(),
            max_in_flight: 20_000,
        })
    }

    async fn await_oldest(in_flight: &mut VecDeque<DeliveryFuture>) -> anyhow::Result<()> {
        if let Some(delivery) = in_flight.pop_front() {
            delivery
                .await
                .context("delivery cancelled")?
                .map_err(|(e, _)| e)
                .context("delivering an event to Kafka")?;
        }
        Ok(())
    }

    async fn send(&mut self, event: SimEvent) -> anyhow::Result<()> {
        let (topic, key, payload) = match &event.event {
            Event::Purchase(p) => (
                &self.topics.purchases,
                &p.customer_id,
                serde_json::to_vec(p)?,
            ),
            Event::SupportTicket(t) => {
                (&self.topics.tickets, &t.customer_id, serde_json::to_vec(t)?)
            }
            Event::SurveyResponse(s) => {
                (&self.topics.surveys, &s.customer_id, serde_json::to_vec(s)?)
            }
        };
        loop {
            let headers = OwnedHeaders::new().insert(Header {
                key: "content-type",
                value: Some(kizuna_proto::CONTENT_TYPE_JSON),
            });
            let record = FutureRecord::to(topic)
                .key(key.as_str())
                .payload(&payload)
                .headers(headers);
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.in_flight.push_back(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    if self.in_flight.is_empty() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    } else {
                        Self::await_oldest(&mut self.in_flight).await?;
                    }
                }
                Err((e, _)) => return Err(e).context("producing an event to Kafka"),
            }
        }
        while self.in_flight.len() > self.max_in_flight {
            Self::await_oldest(&mut self.in_flight).await?;
        }
        Ok(())
    }

    async fn finish(&mut self) -> anyhow::Result<()> {
        while !self.in_flight.is_empty() {
            Self::await_oldest(&mut self.in_flight).await?;
        }
        self.producer
            .flush(Duration::from_secs(30))
            .context("flushing the Kafka producer")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn jsonl_lines_are_input_events_in_the_protobuf_json_mapping() {
        let buf = Shared::default();
        let mut sink = JsonlSink::new("test", Box::new(buf.clone()));
        let purchase = v1::Purchase {
            event_id: "e1".into(),
            customer_id: "c1".into(),
            occurred_at: Some(kizuna_proto::Timestamp {
                seconds: 1_750_000_000,
                nanos: 0,
            }),
            order_id: "o1".into(),
            kind: v1::PurchaseKind::Purchase as i32,
            amount_minor: 1_980,
            currency: "JPY".into(),
            ..Default::default()
        };
        let survey = v1::SurveyResponse {
            event_id: "e2".into(),
            customer_id: "c1".into(),
            kind: v1::SurveyKind::Nps as i32,
            score: 10,
            ..Default::default()
        };
        for event in [Event::Purchase(purchase), Event::SurveyResponse(survey)] {
            sink.write(SimEvent {
                at: 0,
                customer: 0,
                event,
            })
            .expect("write");
        }
        sink.flush().expect("flush");
        let text = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf8");
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with(r#"{"purchase":{"#), "{}", lines[0]);
        assert!(lines[0].contains(r#""amountMinor":"1980""#), "{}", lines[0]);
        assert!(lines[0].contains(r#""kind":"PURCHASE_KIND_PURCHASE""#));
        assert!(lines[0].contains(r#""occurredAt":"2025-06-15T15:06:40"#));
        assert!(
            lines[1].starts_with(r#"{"surveyResponse":{"#),
            "{}",
            lines[1]
        );
        for line in lines {
            let back: v1::InputEvent = serde_json::from_str(line).expect("parses back");
            assert!(back.event.is_some());
        }
    }
}
