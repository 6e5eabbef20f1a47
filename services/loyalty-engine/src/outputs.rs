//! Domain outputs and dead letters turned into Kafka messages: protobuf-JSON payloads with the
//! CloudEvents Kafka-binding headers, keyed by customer id.

use chrono::{DateTime, SecondsFormat, Utc};
use kizuna_proto::{CONTENT_TYPE_JSON, Timestamp, ce_type, v1};

use crate::config::Topics;
use crate::domain::output::{Output, OutputKind, TierChangeKind};
use crate::domain::programme::Programme;
use crate::domain::state::CustomerState;
use crate::ingest::reject::Rejection;
use crate::store::outbox::OutboxMessage;

/// `ce_source` of every output.
pub const CE_SOURCE: &str = "kizuna/loyalty-engine";

/// Namespace of the deterministic `ce_id`s: the same output of the same cause always gets the
/// same id, so subscribers can deduplicate a redelivery.
const CE_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6b69_7a75_6e61_4f75_8000_0000_0000_0001);

pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// The metrics snapshot carried by every output.
pub fn snapshot(
    state: &CustomerState,
    programme: &Programme,
    now: DateTime<Utc>,
) -> v1::MetricsSnapshot {
    v1::MetricsSnapshot {
        lifetime_spend_minor: state.lifetime_spend_minor,
        qualifying_spend_minor: state.lifetime_spend_minor,
        currency: programme.currency.to_string(),
        orders: state.orders,
        qualifying_orders: state.orders,
        tenure_days: state.tenure_days(now),
        first_purchase_at: state.first_purchase_at.map(timestamp),
        last_purchase_at: state.last_purchase_at.map(timestamp),
        nps_category: "none".into(),
        ..Default::default()
    }
}

fn headers(
    ce_id: &str,
    ce_type: &str,
    time: DateTime<Utc>,
    subject: &str,
) -> Vec<(String, Vec<u8>)> {
    vec![
        ("ce_specversion".into(), b"1.0".to_vec()),
        ("ce_id".into(), ce_id.as_bytes().to_vec()),
        ("ce_type".into(), ce_type.as_bytes().to_vec()),
        ("ce_source".into(), CE_SOURCE.as_bytes().to_vec()),
        (
            "ce_time".into(),
            time.to_rfc3339_opts(SecondsFormat::Millis, true)
                .into_bytes(),
        ),
        ("ce_subject".into(), subject.as_bytes().to_vec()),
        ("content-type".into(), CONTENT_TYPE_JSON.as_bytes().to_vec()),
    ]
}

/// Encodes a domain output as an outbox message.
pub fn encode(
    output: &Output,
    partition: i32,
    topics: &Topics,
    programme: &Programme,
) -> anyhow::Result<OutboxMessage> {
    let customer_id = output.customer_id.as_str().to_owned();
    let metrics = Some(snapshot(&output.snapshot, programme, output.effective_at));
    let (topic, ty, payload, new_value) = match &output.kind {
        OutputKind::TierChanged {
            previous,
            new,
            change,
            reason,
        } => {
            let msg = v1::TierChanged {
                customer_id: customer_id.clone(),
                previous_tier: previous.clone(),
                new_tier: new.clone(),
                kind: match change {
                    TierChangeKind::Upgrade => v1::TierChangeKind::Upgrade,
                    TierChangeKind::Downgrade => v1::TierChangeKind::Downgrade,
                } as i32,
                reason: reason.clone(),
                metrics,
                caused_by: output.cause.as_str().to_owned(),
                effective_at: Some(timestamp(output.effective_at)),
            };
            (
                &topics.tier_changed,
                ce_type::TIER_CHANGED,
                serde_json::to_vec(&msg)?,
                new.clone(),
            )
        }
    };
    let name = format!(
        "{ty}|{customer_id}|{}|{}|{new_value}",
        output.cause.as_str(),
        output.effective_at.timestamp_micros()
    );
    let ce_id = uuid::Uuid::new_v5(&CE_ID_NAMESPACE, name.as_bytes()).to_string();
    let headers = headers(&ce_id, ty, output.effective_at, &customer_id);
    Ok(OutboxMessage {
        partition,
        customer_id: Some(customer_id.clone()),
        topic: topic.clone(),
        key: Some(customer_id.into_bytes()),
        payload,
        headers,
    })
}

/// Where a refused message came from.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub content_type: Option<&'a [u8]>,
}

/// Header naming why a message was dead-lettered.
pub const DLQ_REASON_HEADER: &str = "kizuna-dlq-reason";

/// A dead letter: the raw bytes, unchanged, with headers naming the reason and the origin.
pub fn dead_letter(
    origin: &Origin<'_>,
    payload: &[u8],
    rejection: &Rejection,
    dead_letter_topic: &str,
    now: DateTime<Utc>,
) -> OutboxMessage {
    let mut headers = vec![
        (
            DLQ_REASON_HEADER.to_owned(),
            rejection.reason.as_str().as_bytes().to_vec(),
        ),
        (
            "kizuna-dlq-detail".to_owned(),
            truncate(&rejection.detail, 1024).into_bytes(),
        ),
        (
            "kizuna-dlq-topic".to_owned(),
            origin.topic.as_bytes().to_vec(),
        ),
        (
            "kizuna-dlq-partition".to_owned(),
            origin.partition.to_string().into_bytes(),
        ),
        (
            "kizuna-dlq-offset".to_owned(),
            origin.offset.to_string().into_bytes(),
        ),
        (
            "kizuna-dlq-time".to_owned(),
            now.to_rfc3339_opts(SecondsFormat::Millis, true)
                .into_bytes(),
        ),
    ];
    if let Some(ct) = origin.content_type {
        headers.push(("content-type".to_owned(), ct.to_vec()));
    }
    OutboxMessage {
        partition: origin.partition,
        customer_id: None,
        topic: dead_letter_topic.to_owned(),
        key: origin.key.map(<[u8]>::to_vec),
        payload: payload.to_vec(),
        headers,
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
