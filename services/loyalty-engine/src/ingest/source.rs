//! Where the consume loop gets its messages and where it mirrors its offsets: Kafka in
//! production, a fake in the loop's unit tests.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::rebalance::IngestContext;
use crate::inputs::ce_headers::CeHeaders;
use crate::telemetry::TraceParent;
use crate::telemetry::traceparent::HEADER as TRACEPARENT;

/// A consumed message, owned.
#[derive(Debug, Clone, Default)]
pub struct RawMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// `content-type`
    pub content_type: Option<Vec<u8>>,
    /// `ce_type` or `kizuna-schema`
    pub schema: Option<Vec<u8>>,
    /// The broker's (or producer's) timestamp, milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    /// Its `ce_*` headers (`ce_type` included), kept for a dead letter.
    pub ce_headers: CeHeaders,
    /// Its W3C `traceparent`, continued by the engine and carried to the outputs it causes.
    pub traceparent: Option<TraceParent>,
}

/// A stream of messages with a place to mirror offsets to.
pub trait Source: Send + Sync + 'static {
    /// The next message, or a transport error (logged; consumption goes on).
    fn recv(&self) -> impl Future<Output = Result<RawMessage, String>> + Send;

    /// Mirrors stored offsets (next offset to read per partition) for lag monitoring only.
    fn mirror(&self, positions: &HashMap<(String, i32), i64>);
}

pub type IngestConsumer = StreamConsumer<IngestContext>;

/// The Kafka consumer of the input topics.
#[derive(Clone)]
pub struct KafkaSource {
    pub consumer: Arc<IngestConsumer>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource").finish_non_exhaustive()
    }
}

impl Source for KafkaSource {
    async fn recv(&self) -> Result<RawMessage, String> {
        let msg = self.consumer.recv().await.map_err(|e| e.to_string())?;
        let mut raw = RawMessage {
            topic: msg.topic().to_owned(),
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(<[u8]>::to_vec),
            payload: msg.payload().map(<[u8]>::to_vec),
            timestamp_ms: msg.timestamp().to_millis(),
            ..RawMessage::default()
        };
        if let Some(headers) = msg.headers() {
            for h in headers.iter() {
                match h.key {
                    "content-type" | "content_type" => {
                        raw.content_type = h.value.map(<[u8]>::to_vec)
                    }
                    "ce_type" | "kizuna-schema" => raw.schema = h.value.map(<[u8]>::to_vec),
                    TRACEPARENT => raw.traceparent = h.value.and_then(TraceParent::parse),
                    _ => {}
                }
                raw.ce_headers.keep(h.key, h.value);
            }
        }
        Ok(raw)
    }

    fn mirror(&self, positions: &HashMap<(String, i32), i64>) {
        let ownership = &self.consumer.context().ownership;
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in positions {
            if ownership.owns(topic, *partition) {
                tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                    .ok();
            }
        }
        if tpl.count() > 0
            && let Err(e) = self.consumer.commit(&tpl, CommitMode::Async)
        {
            tracing::debug!(error = %e, "offset mirror to Kafka failed (lag monitoring only)");
        }
    }
}
