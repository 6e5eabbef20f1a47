//! An engine output as this service reads it (from the Kafka binding's `ce_*` headers and the
//! JSON payload, or from the engine's `output_log` for a replay), and the CloudEvent in
//! structured JSON mode that subscribers receive.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::subscription::EventType;

/// `ce_source` of the engine's outputs.
pub use kizuna::engine::outputs::CE_SOURCE;

/// One engine output.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputEvent {
    /// `ce_id`: a UUID, the same for the same change. It is the `webhook-id`.
    pub id: uuid::Uuid,
    pub event_type: EventType,
    /// `ce_subject`: the customer id. Never logged.
    pub subject: String,
    /// `ce_time`: when the change took effect.
    pub time: DateTime<Utc>,
    /// The payload in the protobuf JSON mapping.
    pub data: serde_json::Value,
}

/// Why a message on an output topic cannot be delivered. Such messages are counted, logged
/// without their content, and skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("no ce_id header, or not a UUID")]
    Id,
    #[error("no ce_type header, or not a Kizuna output type")]
    Type,
    #[error("no ce_subject header")]
    Subject,
    #[error("no ce_time header, or not RFC 3339")]
    Time,
    #[error("the payload is not a JSON object")]
    Payload,
}

impl Malformed {
    /// Label value for the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::Id => "no_id",
            Malformed::Type => "unknown_type",
            Malformed::Subject => "no_subject",
            Malformed::Time => "no_time",
            Malformed::Payload => "bad_payload",
        }
    }
}

impl OutputEvent {
    /// Reads an output from its Kafka headers (name, value) and payload.
    pub fn from_kafka<'a>(
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        payload: &[u8],
    ) -> Result<Self, Malformed> {
        let (mut id, mut ty, mut subject, mut time) = (None, None, None, None);
        for (name, value) in headers {
            let value = std::str::from_utf8(value).ok();
            match name {
                "ce_id" => id = value,
                "ce_type" => ty = value,
                "ce_subject" => subject = value,
                "ce_time" => time = value,
                _ => {}
            }
        }
        let id = id
            .and_then(|v| uuid::Uuid::parse_str(v).ok())
            .ok_or(Malformed::Id)?;
        let event_type = ty.and_then(EventType::parse).ok_or(Malformed::Type)?;
        let subject = subject
            .filter(|s| !s.is_empty())
            .ok_or(Malformed::Subject)?;
        let time = time
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .ok_or(Malformed::Time)?
            .with_timezone(&Utc);
        let data: serde_json::Value =
            serde_json::from_slice(payload).map_err(|_| Malformed::Payload)?;
        if !data.is_object() {
            return Err(Malformed::Payload);
        }
        Ok(Self {
            id,
            event_type,
            subject: subject.to_owned(),
            time,
            data,
        })
    }

    /// The CloudEvent in structured JSON mode: the request body, signed as it is sent.
    pub fn body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct CloudEvent<'a> {
            specversion: &'static str,
            id: String,
            #[serde(rename = "type")]
            ty: &'static str,
            source: &'static str,
            subject: &'a str,
            time: String,
            datacontenttype: &'static str,
            dataschema: String,
            data: &'a serde_json::Value,
        }
        let event = CloudEvent {
            specversion: "1.0",
            id: self.id.to_string(),
            ty: self.event_type.as_str(),
            source: CE_SOURCE,
            subject: &self.subject,
            time: self.time.to_rfc3339_opts(SecondsFormat::Millis, true),
            datacontenttype: "application/json",
            dataschema: kizuna_proto::dataschema(self.event_type.as_str()),
            data: &self.data,
        };
        // Serialising a struct of strings and a JSON value cannot fail.
        serde_json::to_vec(&event).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kafka_binding_and_writes_a_structured_cloudevent() {
        let headers: Vec<(&str, &[u8])> = vec![
            ("ce_specversion", b"1.0"),
            ("ce_id", b"6f1c1f0e-6a47-5a55-9d5a-3c7f7b2f1e01"),
            ("ce_type", b"kizuna.v1.TierChanged"),
            ("ce_source", b"kizuna/loyalty-engine"),
            ("ce_time", b"2026-11-25T09:30:00.123Z"),
            ("ce_subject", b"cust-42"),
            ("content-type", b"application/json"),
        ];
        let event = OutputEvent::from_kafka(
            headers,
            br#"{"customerId":"cust-42","previousTier":"member","newTier":"silver"}"#,
        )
        .expect("well formed");
        assert_eq!(event.event_type, EventType::TierChanged);
        let body: serde_json::Value = serde_json::from_slice(&event.body()).expect("json");
        assert_eq!(body["specversion"], "1.0");
        assert_eq!(body["id"], "6f1c1f0e-6a47-5a55-9d5a-3c7f7b2f1e01");
        assert_eq!(body["type"], "kizuna.v1.TierChanged");
        assert_eq!(body["source"], "kizuna/loyalty-engine");
        assert_eq!(body["subject"], "cust-42");
        assert_eq!(body["time"], "2026-11-25T09:30:00.123Z");
        assert_eq!(body["datacontenttype"], "application/json");
        assert_eq!(
            body["dataschema"],
            "https://github.com/kizuna-loyalty/kizuna/blob/main/proto/kizuna/v1/outputs.proto#kizuna.v1.TierChanged"
        );
        assert_eq!(body["data"]["newTier"], "silver");
    }

    #[test]
    fn malformed_messages_say_why() {
        let ok: Vec<(&str, &[u8])> = vec![
            ("ce_id", b"6f1c1f0e-6a47-5a55-9d5a-3c7f7b2f1e01"),
            ("ce_type", b"kizuna.v1.TierChanged"),
            ("ce_time", b"2026-11-25T09:30:00Z"),
            ("ce_subject", b"c"),
        ];
        let without = |name: &str| -> Vec<(&str, &[u8])> {
            ok.iter().filter(|(n, _)| *n != name).cloned().collect()
        };
        assert_eq!(
            OutputEvent::from_kafka(without("ce_id"), b"{}"),
            Err(Malformed::Id)
        );
        assert_eq!(
            OutputEvent::from_kafka(without("ce_type"), b"{}"),
            Err(Malformed::Type)
        );
        assert_eq!(
            OutputEvent::from_kafka(without("ce_time"), b"{}"),
            Err(Malformed::Time)
        );
        assert_eq!(
            OutputEvent::from_kafka(ok.clone(), b"[1]"),
            Err(Malformed::Payload)
        );
        assert!(OutputEvent::from_kafka(ok, b"{}").is_ok());
    }
}
