//! What this service tells the rest of the system: a `kizuna.v1.WebhookSubscriptionDisabled`
//! CloudEvent (Kafka binding, like the engine's outputs) on `kafka.topics.webhooks`, keyed by
//! the subscription id. It carries no customer data.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use kizuna_proto::{CONTENT_TYPE_JSON, ce_type, v1};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::subscription::endpoint;

/// `ce_source` of this service's events.
pub const CE_SOURCE: &str = "kizuna/webhooks";

/// Namespace of the deterministic ids of this service's events.
const CE_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6b69_7a75_6e61_5768_8000_0000_0000_0001);

/// Why a subscription was disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisabledReason {
    Failing,
    Gone,
}

impl DisabledReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisabledReason::Failing => "failing",
            DisabledReason::Gone => "gone",
        }
    }
}

/// What is announced.
#[derive(Debug, Clone)]
pub struct Disabled {
    pub subscription_id: uuid::Uuid,
    pub url: String,
    pub reason: DisabledReason,
    pub detail: String,
    pub failing_since: DateTime<Utc>,
    pub consecutive_failures: u32,
    pub last_status: Option<u16>,
    pub disabled_at: DateTime<Utc>,
}

fn timestamp(t: DateTime<Utc>) -> kizuna_proto::Timestamp {
    kizuna::engine::outputs::timestamp(t)
}

#[derive(Clone)]
pub struct Announcer {
    producer: FutureProducer,
    topic: String,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcer")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Announcer {
    pub fn new(producer: FutureProducer, topic: String) -> Self {
        Self { producer, topic }
    }

    /// Produces the event and waits for the broker's acknowledgement.
    pub async fn disabled(&self, d: &Disabled) -> anyhow::Result<()> {
        let msg = v1::WebhookSubscriptionDisabled {
            subscription_id: d.subscription_id.to_string(),
            endpoint: endpoint(&d.url),
            reason: match d.reason {
                DisabledReason::Failing => v1::WebhookDisabledReason::Failing,
                DisabledReason::Gone => v1::WebhookDisabledReason::Gone,
            } as i32,
            detail: d.detail.clone(),
            failing_since: Some(timestamp(d.failing_since)),
            consecutive_failures: d.consecutive_failures,
            last_status: d.last_status.map_or(0, u32::from),
            disabled_at: Some(timestamp(d.disabled_at)),
        };
        let payload = serde_json::to_vec(&msg)?;
        let key = d.subscription_id.to_string();
        let ce_id = uuid::Uuid::new_v5(
            &CE_ID_NAMESPACE,
            format!("disabled|{key}|{}", d.failing_since.timestamp_micros()).as_bytes(),
        )
        .to_string();
        let time = d.disabled_at.to_rfc3339_opts(SecondsFormat::Millis, true);
        let dataschema = kizuna_proto::dataschema(ce_type::WEBHOOK_SUBSCRIPTION_DISABLED);
        let headers = [
            ("ce_specversion", "1.0"),
            ("ce_id", ce_id.as_str()),
            ("ce_type", ce_type::WEBHOOK_SUBSCRIPTION_DISABLED),
            ("ce_source", CE_SOURCE),
            ("ce_time", time.as_str()),
            ("ce_subject", key.as_str()),
            ("ce_dataschema", dataschema.as_str()),
            ("content-type", CONTENT_TYPE_JSON),
        ]
        .into_iter()
        .fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            })
        });
        let record = FutureRecord::to(&self.topic)
            .key(&key)
            .payload(&payload)
            .headers(headers);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .with_context(|| format!("producing to {}", self.topic))?;
        Ok(())
    }
}
