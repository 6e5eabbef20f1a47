//! From Kafka bytes to a wire message: size, content type and schema version checks, then JSON
//! (protobuf JSON mapping, the default) or binary protobuf.

use kizuna_proto::v1;
use kizuna_proto::{CONTENT_TYPE_JSON, CONTENT_TYPE_PROTOBUF, SCHEMA_VERSION};

use crate::domain::rejection::{RejectReason, Rejection};

/// Which input topic a message came from; decides the expected message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputKind {
    Purchase,
    SupportTicket,
    Survey,
    /// Points spent at the till, or given back (`kizuna.v1.Redemption`).
    Redemption,
}

impl InputKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InputKind::Purchase => "purchase",
            InputKind::SupportTicket => "support_ticket",
            InputKind::Survey => "survey",
            InputKind::Redemption => "redemption",
        }
    }
}

/// A decoded wire message, not yet validated.
#[derive(Debug, Clone, PartialEq)]
pub enum WireEvent {
    Purchase(v1::Purchase),
    SupportTicket(v1::SupportTicket),
    Survey(v1::SurveyResponse),
    Redemption(v1::Redemption),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Protobuf,
}

/// The headers that matter for decoding.
#[derive(Debug, Clone, Copy, Default)]
pub struct WireHeaders<'a> {
    /// `content-type`
    pub content_type: Option<&'a [u8]>,
    /// `ce_type` (e.g. `kizuna.v1.Purchase`) or `kizuna-schema` (e.g. `kizuna.v1`).
    pub schema: Option<&'a [u8]>,
}

fn format_of(content_type: Option<&[u8]>) -> Result<Format, Rejection> {
    let Some(raw) = content_type else {
        return Ok(Format::Json);
    };
    let text = std::str::from_utf8(raw).map_err(|_| {
        Rejection::new(
            RejectReason::UnsupportedContentType,
            "content-type is not UTF-8",
        )
    })?;
    let media = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "" | CONTENT_TYPE_JSON | "application/cloudevents+json" => Ok(Format::Json),
        CONTENT_TYPE_PROTOBUF | "application/protobuf" => Ok(Format::Protobuf),
        other => Err(Rejection::new(
            RejectReason::UnsupportedContentType,
            format!("content-type {other:?} is not {CONTENT_TYPE_JSON} or {CONTENT_TYPE_PROTOBUF}"),
        )),
    }
}

fn check_schema(schema: Option<&[u8]>) -> Result<(), Rejection> {
    let Some(raw) = schema else { return Ok(()) };
    let text = String::from_utf8_lossy(raw);
    let version = text.trim();
    if version == SCHEMA_VERSION || version.starts_with(&format!("{SCHEMA_VERSION}.")) {
        Ok(())
    } else {
        Err(Rejection::new(
            RejectReason::UnknownSchemaVersion,
            format!(
                "schema {:?} is not {SCHEMA_VERSION}",
                version.chars().take(64).collect::<String>()
            ),
        ))
    }
}

fn json_rejection(err: &serde_json::Error) -> Rejection {
    let text = err.to_string();
    let reason = if text.contains("unknown variant") {
        RejectReason::UnknownEnum
    } else if matches!(err.classify(), serde_json::error::Category::Data) {
        RejectReason::WrongType
    } else {
        RejectReason::Unparseable
    };
    Rejection::new(reason, text)
}

fn decode_as<T>(format: Format, payload: &[u8]) -> Result<T, Rejection>
where
    T: prost::Message + Default + serde::de::DeserializeOwned,
{
    match format {
        Format::Json => serde_json::from_slice(payload).map_err(|e| json_rejection(&e)),
        Format::Protobuf => T::decode(payload)
            .map_err(|e| Rejection::new(RejectReason::Unparseable, format!("protobuf: {e}"))),
    }
}

/// The payload, if it is neither empty nor over `max_bytes`.
pub fn check_size(payload: Option<&[u8]>, max_bytes: usize) -> Result<&[u8], Rejection> {
    let payload = payload.unwrap_or_default();
    if payload.is_empty() {
        return Err(Rejection::new(
            RejectReason::EmptyPayload,
            "message has no payload",
        ));
    }
    if payload.len() > max_bytes {
        return Err(Rejection::new(
            RejectReason::Oversized,
            format!(
                "payload is {} bytes, the limit is {max_bytes}",
                payload.len()
            ),
        ));
    }
    Ok(payload)
}

/// Decodes one unframed input message (JSON or binary protobuf, by `content-type`).
/// `max_bytes` bounds the payload size. A registry-framed message (`inputs::frame`) is read
/// with `decode_framed_body` once its schema is checked.
pub fn decode(
    kind: InputKind,
    payload: Option<&[u8]>,
    headers: WireHeaders<'_>,
    max_bytes: usize,
) -> Result<WireEvent, Rejection> {
    let payload = check_size(payload, max_bytes)?;
    check_schema(headers.schema)?;
    let format = format_of(headers.content_type)?;
    decode_format(kind, format, payload)
}

fn decode_format(kind: InputKind, format: Format, payload: &[u8]) -> Result<WireEvent, Rejection> {
    Ok(match kind {
        InputKind::Purchase => WireEvent::Purchase(decode_as(format, payload)?),
        InputKind::SupportTicket => WireEvent::SupportTicket(decode_as(format, payload)?),
        InputKind::Survey => WireEvent::Survey(decode_as(format, payload)?),
        InputKind::Redemption => WireEvent::Redemption(decode_as(format, payload)?),
    })
}

/// Decodes the binary protobuf body of a registry-framed message whose registered schema was
/// checked to be the topic's `kizuna.v1` message. A `ce_type`/`kizuna-schema` header, if any,
/// must still name `kizuna.v1`; `content-type` is not consulted (the frame says protobuf).
pub fn decode_framed_body(
    kind: InputKind,
    body: &[u8],
    headers: WireHeaders<'_>,
) -> Result<WireEvent, Rejection> {
    check_schema(headers.schema)?;
    decode_format(kind, Format::Protobuf, body)
}

/// Decodes one `InputEvent` JSON line (backfill files).
pub fn decode_input_line(line: &str) -> Result<WireEvent, Rejection> {
    let event: v1::InputEvent = serde_json::from_str(line).map_err(|e| json_rejection(&e))?;
    match event.event {
        Some(v1::input_event::Event::Purchase(p)) => Ok(WireEvent::Purchase(p)),
        Some(v1::input_event::Event::SupportTicket(t)) => Ok(WireEvent::SupportTicket(t)),
        Some(v1::input_event::Event::SurveyResponse(s)) => Ok(WireEvent::Survey(s)),
        None => Err(Rejection::new(
            RejectReason::MissingField,
            "InputEvent has none of purchase, supportTicket, surveyResponse",
        )),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    const MAX: usize = 1024;

    fn purchase_json() -> &'static [u8] {
        br#"{"eventId":"e1","customerId":"c1","occurredAt":"2026-01-01T00:00:00Z","orderId":"o1","kind":"PURCHASE_KIND_PURCHASE","amountMinor":"100","currency":"JPY"}"#
    }

    #[test]
    fn json_is_the_default() {
        let event = decode(
            InputKind::Purchase,
            Some(purchase_json()),
            WireHeaders::default(),
            MAX,
        )
        .expect("valid json");
        assert!(matches!(event, WireEvent::Purchase(p) if p.amount_minor == 100));
    }

    #[test]
    fn binary_protobuf_when_the_header_says_so() {
        let p = v1::SurveyResponse {
            event_id: "e".into(),
            customer_id: "c".into(),
            kind: v1::SurveyKind::Nps as i32,
            score: 9,
            ..Default::default()
        };
        let bytes = p.encode_to_vec();
        let headers = WireHeaders {
            content_type: Some(b"application/x-protobuf"),
            schema: None,
        };
        let event = decode(InputKind::Survey, Some(&bytes), headers, MAX).expect("valid protobuf");
        assert_eq!(event, WireEvent::Survey(p));
        // The same bytes read as JSON are garbage.
        let err = decode(InputKind::Survey, Some(&bytes), WireHeaders::default(), MAX)
            .expect_err("protobuf bytes are not json");
        assert_eq!(err.reason, RejectReason::Unparseable);
    }

    #[test]
    fn refusals_carry_a_precise_reason() {
        let cases: Vec<(&[u8], WireHeaders<'_>, RejectReason)> = vec![
            (b"", WireHeaders::default(), RejectReason::EmptyPayload),
            (
                b"{not json",
                WireHeaders::default(),
                RejectReason::Unparseable,
            ),
            (
                br#"{"amountMinor": {"x": 1}}"#,
                WireHeaders::default(),
                RejectReason::WrongType,
            ),
            (
                br#"{"kind": "PURCHASE_KIND_GIFT"}"#,
                WireHeaders::default(),
                RejectReason::UnknownEnum,
            ),
            (
                purchase_json(),
                WireHeaders {
                    content_type: Some(b"text/csv"),
                    schema: None,
                },
                RejectReason::UnsupportedContentType,
            ),
            (
                purchase_json(),
                WireHeaders {
                    content_type: None,
                    schema: Some(b"kizuna.v2.Purchase"),
                },
                RejectReason::UnknownSchemaVersion,
            ),
        ];
        for (payload, headers, reason) in cases {
            let err =
                decode(InputKind::Purchase, Some(payload), headers, MAX).expect_err("must refuse");
            assert_eq!(
                err.reason,
                reason,
                "{:?}: {}",
                String::from_utf8_lossy(payload),
                err.detail
            );
        }
        let big = vec![b' '; MAX + 1];
        let err = decode(InputKind::Purchase, Some(&big), WireHeaders::default(), MAX)
            .expect_err("too big");
        assert_eq!(err.reason, RejectReason::Oversized);
    }

    #[test]
    fn schema_v1_is_accepted_in_both_spellings() {
        for schema in [&b"kizuna.v1"[..], b"kizuna.v1.Purchase"] {
            let headers = WireHeaders {
                content_type: Some(b"application/json; charset=utf-8"),
                schema: Some(schema),
            };
            assert!(decode(InputKind::Purchase, Some(purchase_json()), headers, MAX).is_ok());
        }
    }
}
