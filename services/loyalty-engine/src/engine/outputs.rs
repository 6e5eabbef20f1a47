//! Domain outputs and dead letters turned into Kafka messages: protobuf-JSON payloads with the
//! CloudEvents Kafka-binding headers, keyed by customer id.

use chrono::{DateTime, SecondsFormat, Utc};
use kizuna_proto::{CONTENT_TYPE_JSON, Timestamp, ce_type, v1};

use crate::config::Topics;
use crate::domain::churn::{Assessment, Level, Play};
use crate::domain::metrics::Metrics;
use crate::domain::output::{Output, OutputKind};
use crate::domain::programme::Programme;
use crate::domain::rejection::Rejection;
use crate::domain::segment::Segment;
use crate::domain::tier::TierChangeKind;
use crate::inputs::ce_headers::{CE_PREFIX, CeHeaders};
use crate::store::outbox::OutboxMessage;
use crate::telemetry::TraceParent;
use crate::telemetry::traceparent::HEADER as TRACEPARENT;

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
    m: &Metrics,
    churn: Option<&Assessment>,
    programme: &Programme,
) -> v1::MetricsSnapshot {
    v1::MetricsSnapshot {
        lifetime_spend_minor: m.lifetime_spend_minor,
        qualifying_spend_minor: m.qualifying_spend_minor,
        currency: programme.currency.to_string(),
        orders: m.orders,
        qualifying_orders: m.qualifying_orders,
        tenure_days: m.tenure_days,
        first_purchase_at: m.first_purchase_at.map(timestamp),
        last_purchase_at: m.last_purchase_at.map(timestamp),
        nps: m.nps.map(u32::from),
        nps_category: m.nps_category.as_str().to_owned(),
        csat_avg: m.csat_avg,
        ces_avg: m.ces_avg,
        bad_experiences: m.bad_experiences,
        open_tickets: m.open_tickets,
        p_alive: churn.and_then(|c| c.p_alive),
        churn_risk: churn.map(|c| c.score),
        spend_trend: m.spend_trend,
        discount_share: m.discount_share,
        referrals: m.referrals,
    }
}

fn segment(s: Option<Segment>) -> v1::Segment {
    match s {
        None => v1::Segment::Unspecified,
        Some(Segment::Neutral) => v1::Segment::Neutral,
        Some(Segment::Loyal) => v1::Segment::Loyal,
        Some(Segment::Angel) => v1::Segment::Angel,
        Some(Segment::Hostage) => v1::Segment::Hostage,
        Some(Segment::Rebel) => v1::Segment::Rebel,
        Some(Segment::HighValueNotLoyal) => v1::Segment::HighValueNotLoyal,
    }
}

fn level(l: Level) -> v1::ChurnLevel {
    match l {
        Level::Low => v1::ChurnLevel::Low,
        Level::Medium => v1::ChurnLevel::Medium,
        Level::High => v1::ChurnLevel::High,
    }
}

fn play_of(p: Play) -> v1::Play {
    match p {
        Play::ServiceRecovery => v1::Play::ServiceRecovery,
        Play::WinBackOffer => v1::Play::WinBackOffer,
        Play::VipOutreach => v1::Play::VipOutreach,
        Play::Playbook => v1::Play::Playbook,
        Play::None => v1::Play::None,
    }
}

fn change_kind(k: TierChangeKind) -> v1::TierChangeKind {
    match k {
        TierChangeKind::Upgrade => v1::TierChangeKind::Upgrade,
        TierChangeKind::Downgrade => v1::TierChangeKind::Downgrade,
        TierChangeKind::Override => v1::TierChangeKind::Override,
        TierChangeKind::OverrideExpired => v1::TierChangeKind::OverrideExpired,
    }
}

/// An output encoded for Kafka, plus what the audit log keeps of it.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub message: OutboxMessage,
    pub ce_id: String,
    pub ce_type: &'static str,
    /// The payload as a JSON tree, for the output log; `None` for the points outputs, which
    /// are not logged (see `engine::write`): every purchase makes one, so their payload is
    /// written straight to bytes.
    pub json: Option<serde_json::Value>,
}

impl Encoded {
    /// The payload as JSON (parsed back from the bytes when no tree was kept).
    pub fn data(&self) -> serde_json::Value {
        self.json.clone().unwrap_or_else(|| {
            serde_json::from_slice(&self.message.payload).unwrap_or(serde_json::Value::Null)
        })
    }
}

/// The JSON of an output: a tree to log and its bytes, or (`logged` false) only the bytes.
fn json_of<T: serde::Serialize>(
    msg: &T,
    logged: bool,
) -> anyhow::Result<(Option<serde_json::Value>, Vec<u8>)> {
    if logged {
        let json = serde_json::to_value(msg)?;
        let bytes = serde_json::to_vec(&json)?;
        Ok((Some(json), bytes))
    } else {
        Ok((None, serde_json::to_vec(msg)?))
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
        (
            "ce_dataschema".into(),
            kizuna_proto::dataschema(ce_type).into_bytes(),
        ),
        ("content-type".into(), CONTENT_TYPE_JSON.as_bytes().to_vec()),
    ]
}

/// Sets the `traceparent` header of `message` (replacing one it has): the trace of the input
/// that caused it, which the relay continues when it publishes it.
pub fn set_traceparent(message: &mut OutboxMessage, tp: TraceParent) {
    message.headers.retain(|(k, _)| k != TRACEPARENT);
    message
        .headers
        .push((TRACEPARENT.to_owned(), tp.to_header().into_bytes()));
}

/// Encodes a domain output as an outbox message.
pub fn encode(
    output: &Output,
    partition: i32,
    topics: &Topics,
    programme: &Programme,
) -> anyhow::Result<Encoded> {
    let customer_id = output.customer_id.as_str().to_owned();
    // The points outputs carry no metrics snapshot: only build it for the others.
    let metrics = || {
        Some(snapshot(
            &output.metrics,
            output.churn.as_deref(),
            programme,
        ))
    };
    let logged = !output.kind.is_points();
    let caused_by = output.cause.as_str().to_owned();
    let effective_at = Some(timestamp(output.effective_at));
    let (topic, ty, (json, payload), new_value) = match &output.kind {
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
                kind: change_kind(*change) as i32,
                reason: reason.clone(),
                metrics: metrics(),
                caused_by,
                effective_at,
            };
            (
                &topics.tier_changed,
                ce_type::TIER_CHANGED,
                json_of(&msg, logged)?,
                new.clone(),
            )
        }
        OutputKind::TierWillDowngrade {
            current,
            to,
            downgrade_at,
            to_keep,
            reason,
        } => {
            let msg = v1::TierWillDowngrade {
                customer_id: customer_id.clone(),
                previous_tier: current.clone(),
                new_tier: to.clone(),
                downgrade_at: Some(timestamp(*downgrade_at)),
                to_keep_tier: to_keep.clone(),
                reason: reason.clone(),
                metrics: metrics(),
                caused_by,
                effective_at,
            };
            (
                &topics.tier_changed,
                ce_type::TIER_WILL_DOWNGRADE,
                json_of(&msg, logged)?,
                format!("{to}@{}", downgrade_at.timestamp()),
            )
        }
        OutputKind::ChurnRiskChanged {
            previous,
            new,
            play,
            reason,
        } => {
            let assessment = output.churn.as_deref();
            let msg = v1::ChurnRiskChanged {
                customer_id: customer_id.clone(),
                previous_level: previous.map_or(v1::ChurnLevel::Unspecified, level) as i32,
                new_level: level(*new) as i32,
                score: assessment.map_or(0.0, |a| a.score),
                p_alive: assessment.and_then(|a| a.p_alive),
                model: assessment.and_then(|a| a.model.clone()).unwrap_or_default(),
                drivers: assessment
                    .map(|a| {
                        a.drivers
                            .iter()
                            .map(|d| v1::ChurnDriver {
                                name: d.name.clone(),
                                contribution: d.contribution,
                                detail: d.detail.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                play: play_of(*play) as i32,
                reason: reason.clone(),
                metrics: metrics(),
                caused_by,
                effective_at,
            };
            (
                &topics.churn_risk,
                ce_type::CHURN_RISK_CHANGED,
                json_of(&msg, logged)?,
                new.as_str().to_owned(),
            )
        }
        OutputKind::SegmentChanged {
            previous,
            new,
            reason,
        } => {
            let msg = v1::SegmentChanged {
                customer_id: customer_id.clone(),
                previous_segment: segment(*previous) as i32,
                new_segment: segment(Some(*new)) as i32,
                reason: reason.clone(),
                metrics: metrics(),
                caused_by,
                effective_at,
            };
            (
                &topics.segment_changed,
                ce_type::SEGMENT_CHANGED,
                json_of(&msg, logged)?,
                new.as_str().to_owned(),
            )
        }
        OutputKind::PointsChanged {
            changes,
            available,
            pending,
            debt,
        } => {
            let msg = v1::PointsChanged {
                customer_id: customer_id.clone(),
                changes: Some(v1::PointsMovedTotals {
                    earned: changes.earned,
                    released: changes.released,
                    redeemed: changes.redeemed,
                    cancelled: changes.cancelled,
                    expired: changes.expired,
                    clawed_back: changes.clawed_back,
                    adjusted: changes.adjusted,
                }),
                available: *available,
                pending: *pending,
                debt: *debt,
                caused_by,
                effective_at,
            };
            (
                &topics.points,
                ce_type::POINTS_CHANGED,
                json_of(&msg, logged)?,
                format!("{available}/{pending}/{debt}"),
            )
        }
        OutputKind::PointsWillExpire {
            lot,
            amount,
            expires_at,
        } => {
            let msg = v1::PointsWillExpire {
                customer_id: customer_id.clone(),
                lot: lot.clone(),
                amount: *amount,
                expires_at: Some(timestamp(*expires_at)),
                caused_by,
                effective_at,
            };
            (
                &topics.points,
                ce_type::POINTS_WILL_EXPIRE,
                json_of(&msg, logged)?,
                format!("{lot}@{}", expires_at.timestamp()),
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
    Ok(Encoded {
        message: OutboxMessage {
            ce_id: ce_id.clone(),
            partition,
            customer_id: Some(customer_id.clone()),
            topic: topic.clone(),
            key: Some(customer_id.into_bytes()),
            payload,
            headers,
        },
        ce_id,
        ce_type: ty,
        json,
    })
}

/// The receipt of an erasure, `CustomerErased`: keyed (and subject) by the id's keyed hash,
/// never the id.
pub fn customer_erased(
    receipt: &v1::CustomerErased,
    erased_at: DateTime<Utc>,
    partition: i32,
    topics: &Topics,
) -> anyhow::Result<OutboxMessage> {
    let hash = receipt.subject_hash.as_str();
    let name = format!(
        "{}|{hash}|{}",
        ce_type::CUSTOMER_ERASED,
        erased_at.timestamp_micros()
    );
    let ce_id = uuid::Uuid::new_v5(&CE_ID_NAMESPACE, name.as_bytes()).to_string();
    let headers = headers(&ce_id, ce_type::CUSTOMER_ERASED, erased_at, hash);
    Ok(OutboxMessage {
        ce_id,
        partition,
        customer_id: None,
        topic: topics.privacy.clone(),
        key: Some(hash.as_bytes().to_vec()),
        payload: serde_json::to_vec(receipt)?,
        headers,
    })
}

/// The output messages by `ce_type`, with the `outputs.proto` message each one is.
pub const OUTPUT_MESSAGES: [(&str, &str); 7] = [
    (ce_type::TIER_CHANGED, "TierChanged"),
    (ce_type::TIER_WILL_DOWNGRADE, "TierWillDowngrade"),
    (ce_type::CHURN_RISK_CHANGED, "ChurnRiskChanged"),
    (ce_type::SEGMENT_CHANGED, "SegmentChanged"),
    (ce_type::POINTS_CHANGED, "PointsChanged"),
    (ce_type::POINTS_WILL_EXPIRE, "PointsWillExpire"),
    (ce_type::CUSTOMER_ERASED, "CustomerErased"),
];

fn json_to_protobuf<T>(json: &[u8]) -> anyhow::Result<Vec<u8>>
where
    T: prost::Message + serde::de::DeserializeOwned,
{
    let msg: T = serde_json::from_slice(json)?;
    Ok(msg.encode_to_vec())
}

/// The binary protobuf of an output's JSON payload (as the outbox holds it), by its
/// `ce_type`; None for a `ce_type` that is not an output message.
pub fn output_protobuf(ce_type: &str, json: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
    Ok(Some(match ce_type {
        ce_type::TIER_CHANGED => json_to_protobuf::<v1::TierChanged>(json)?,
        ce_type::TIER_WILL_DOWNGRADE => json_to_protobuf::<v1::TierWillDowngrade>(json)?,
        ce_type::CHURN_RISK_CHANGED => json_to_protobuf::<v1::ChurnRiskChanged>(json)?,
        ce_type::SEGMENT_CHANGED => json_to_protobuf::<v1::SegmentChanged>(json)?,
        ce_type::POINTS_CHANGED => json_to_protobuf::<v1::PointsChanged>(json)?,
        ce_type::POINTS_WILL_EXPIRE => json_to_protobuf::<v1::PointsWillExpire>(json)?,
        ce_type::CUSTOMER_ERASED => json_to_protobuf::<v1::CustomerErased>(json)?,
        _ => return Ok(None),
    }))
}

fn protobuf_to_json<T>(body: &[u8]) -> Option<serde_json::Value>
where
    T: prost::Message + Default + serde::Serialize,
{
    serde_json::to_value(T::decode(body).ok()?).ok()
}

/// The JSON mapping of an output's binary protobuf (the body of a framed output), by its
/// `ce_type`; None when it is not an output message or does not decode.
pub fn output_json(ce_type: &str, body: &[u8]) -> Option<serde_json::Value> {
    match ce_type {
        ce_type::TIER_CHANGED => protobuf_to_json::<v1::TierChanged>(body),
        ce_type::TIER_WILL_DOWNGRADE => protobuf_to_json::<v1::TierWillDowngrade>(body),
        ce_type::CHURN_RISK_CHANGED => protobuf_to_json::<v1::ChurnRiskChanged>(body),
        ce_type::SEGMENT_CHANGED => protobuf_to_json::<v1::SegmentChanged>(body),
        ce_type::POINTS_CHANGED => protobuf_to_json::<v1::PointsChanged>(body),
        ce_type::POINTS_WILL_EXPIRE => protobuf_to_json::<v1::PointsWillExpire>(body),
        ce_type::CUSTOMER_ERASED => protobuf_to_json::<v1::CustomerErased>(body),
        _ => None,
    }
}

/// Where a refused message came from.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub content_type: Option<&'a [u8]>,
    /// The message's own `ce_*` headers.
    pub ce_headers: &'a CeHeaders,
}

/// Header naming why a message was dead-lettered.
pub const DLQ_REASON_HEADER: &str = "kizuna-dlq-reason";

/// Header keeping the input's content type when it cannot be the dead letter's `content-type`
/// (a CloudEvents structured-mode type, `application/cloudevents…`, would make subscribers
/// read the raw bytes as the envelope).
pub const DLQ_CONTENT_TYPE_HEADER: &str = "kizuna-dlq-content-type";

/// Prefix of the extension attributes that carry the input's own `ce_*` headers on its dead
/// letter: `ce_id` becomes `ce_originalid`, `ce_type` `ce_originaltype`, `ce_traceparent`
/// `ce_originaltraceparent`.
pub const DLQ_EXTENSION_PREFIX: &str = "original";

/// A dead letter: the raw bytes, unchanged, with headers naming the reason and the origin; a
/// CloudEvent in Kafka binary mode (`ce_type` `kizuna.v1.DeadLetter`, `ce_subject` the key when
/// it is text), the input's own `ce_*` headers kept as `ce_original*` extensions.
pub fn dead_letter(
    origin: &Origin<'_>,
    payload: &[u8],
    rejection: &Rejection,
    dead_letter_topic: &str,
    now: DateTime<Utc>,
) -> OutboxMessage {
    let time = now.to_rfc3339_opts(SecondsFormat::Millis, true);
    let name = format!(
        "dead-letter|{}|{}|{}",
        origin.topic, origin.partition, origin.offset
    );
    let ce_id = uuid::Uuid::new_v5(&CE_ID_NAMESPACE, name.as_bytes()).to_string();
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
        ("kizuna-dlq-time".to_owned(), time.clone().into_bytes()),
        ("ce_specversion".to_owned(), b"1.0".to_vec()),
        ("ce_id".to_owned(), ce_id.as_bytes().to_vec()),
        (
            "ce_type".to_owned(),
            ce_type::DEAD_LETTER.as_bytes().to_vec(),
        ),
        ("ce_source".to_owned(), CE_SOURCE.as_bytes().to_vec()),
        ("ce_time".to_owned(), time.into_bytes()),
    ];
    if let Some(subject) = origin
        .key
        .and_then(|k| std::str::from_utf8(k).ok())
        .filter(|k| !k.is_empty())
    {
        headers.push(("ce_subject".to_owned(), subject.as_bytes().to_vec()));
    }
    // The input's content type is the data's (`datacontenttype`) when it is text and not a
    // CloudEvents envelope type; a content type that is not UTF-8 is dropped (CloudEvents
    // attributes are strings; the reason says so).
    if let Some(ct) = origin
        .content_type
        .and_then(|ct| std::str::from_utf8(ct).ok())
    {
        let name = if ct
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("application/cloudevents")
        {
            DLQ_CONTENT_TYPE_HEADER
        } else {
            "content-type"
        };
        headers.push((name.to_owned(), ct.as_bytes().to_vec()));
    }
    headers.extend(original_extensions(origin.ce_headers));
    OutboxMessage {
        ce_id,
        partition: origin.partition,
        customer_id: None,
        topic: dead_letter_topic.to_owned(),
        key: origin.key.map(<[u8]>::to_vec),
        payload: payload.to_vec(),
        headers,
    }
}

/// The input's `ce_*` headers as extension attributes: `ce_` + `original` + the attribute name
/// lowercased with anything but `a-z0-9` dropped (CloudEvents extension names are lowercase
/// alphanumeric). A value that is not UTF-8, a name with nothing left, and a second header
/// that comes to the same name are left out.
fn original_extensions(ce_headers: &CeHeaders) -> Vec<(String, Vec<u8>)> {
    let mut kept: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, value) in ce_headers.iter() {
        let attribute: String = name
            .strip_prefix(CE_PREFIX)
            .unwrap_or(name)
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if attribute.is_empty() || std::str::from_utf8(value).is_err() {
            continue;
        }
        let header = format!("{CE_PREFIX}{DLQ_EXTENSION_PREFIX}{attribute}");
        if kept.iter().all(|(h, _)| *h != header) {
            kept.push((header, value.to_vec()));
        }
    }
    kept
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::frame::ProtoSchema;

    #[test]
    fn every_output_message_is_in_outputs_proto_at_the_documented_index() {
        let schema = ProtoSchema::parse(kizuna_proto::OUTPUTS_PROTO).expect("outputs.proto");
        assert_eq!(schema.package, "kizuna.v1");
        let found: Vec<(&str, Vec<i32>)> = OUTPUT_MESSAGES
            .iter()
            .map(|(ce_type, name)| (*ce_type, schema.index_of(name).expect(name)))
            .collect();
        // The README's Schema Registry section names these indexes.
        assert_eq!(
            found,
            vec![
                (ce_type::TIER_CHANGED, vec![1]),
                (ce_type::TIER_WILL_DOWNGRADE, vec![2]),
                (ce_type::CHURN_RISK_CHANGED, vec![4]),
                (ce_type::SEGMENT_CHANGED, vec![5]),
                (ce_type::POINTS_CHANGED, vec![8]),
                (ce_type::POINTS_WILL_EXPIRE, vec![9]),
                (ce_type::CUSTOMER_ERASED, vec![10]),
            ]
        );
        for (ce_type, at) in &found {
            assert_eq!(schema.message_at(at).as_deref(), Some(*ce_type));
        }
    }

    #[test]
    fn an_output_survives_json_to_protobuf_and_back() {
        let msg = v1::ChurnRiskChanged {
            customer_id: "c-1".into(),
            new_level: v1::ChurnLevel::High as i32,
            score: 0.8,
            p_alive: Some(0.4),
            drivers: vec![v1::ChurnDriver {
                name: "inactivity".into(),
                contribution: 0.5,
                detail: "90 days".into(),
            }],
            ..Default::default()
        };
        let json = serde_json::to_vec(&msg).expect("json");
        let proto = output_protobuf(ce_type::CHURN_RISK_CHANGED, &json)
            .expect("converts")
            .expect("an output type");
        assert_eq!(
            <v1::ChurnRiskChanged as prost::Message>::decode(proto.as_slice()).expect("decodes"),
            msg
        );
        assert_eq!(
            output_json(ce_type::CHURN_RISK_CHANGED, &proto),
            Some(serde_json::to_value(&msg).expect("json"))
        );
        assert!(
            output_protobuf("kizuna.v1.Unknown", &json)
                .expect("no error")
                .is_none()
        );
    }

    fn letter(key: Option<&[u8]>, content_type: Option<&[u8]>, ce: &CeHeaders) -> OutboxMessage {
        let origin = Origin {
            topic: "kizuna.purchases",
            partition: 3,
            offset: 41,
            key,
            content_type,
            ce_headers: ce,
        };
        let rejection = Rejection::new(
            crate::domain::rejection::RejectReason::Unparseable,
            "EOF while parsing",
        );
        let now = DateTime::parse_from_rfc3339("2026-12-07T10:00:00.5Z")
            .expect("a time")
            .to_utc();
        dead_letter(
            &origin,
            b"{\"eventId\":",
            &rejection,
            "kizuna.dead-letter",
            now,
        )
    }

    fn header<'a>(m: &'a OutboxMessage, name: &str) -> Option<&'a str> {
        let mut found = m.headers.iter().filter(|(k, _)| k == name);
        let (_, value) = found.next()?;
        assert!(found.next().is_none(), "{name} twice");
        Some(std::str::from_utf8(value).expect("UTF-8"))
    }

    #[test]
    fn a_dead_letter_is_a_cloudevent_with_the_inputs_attributes_as_extensions() {
        let mut ce = CeHeaders::default();
        ce.keep("ce_specversion", Some(b"1.0"));
        ce.keep("ce_id", Some(b"evt-9"));
        ce.keep("ce_type", Some(b"kizuna.v1.Purchase"));
        ce.keep("ce_source", Some(b"shop/pos"));
        ce.keep("ce_Trace_Parent", Some(b"00-4bf92f"));
        ce.keep("ce_traceparent", Some(b"a second one"));
        ce.keep("ce_bytes", Some(&[0xff, 0xfe]));
        ce.keep("ce__", Some(b"no name left"));
        let m = letter(Some(b"cust-7"), Some(b"application/json"), &ce);
        assert_eq!(header(&m, "ce_specversion"), Some("1.0"));
        assert_eq!(header(&m, "ce_type"), Some("kizuna.v1.DeadLetter"));
        assert_eq!(header(&m, "ce_source"), Some(CE_SOURCE));
        assert_eq!(header(&m, "ce_id"), Some(m.ce_id.as_str()));
        assert_eq!(header(&m, "ce_time"), Some("2026-12-07T10:00:00.500Z"));
        assert_eq!(
            header(&m, "kizuna-dlq-time"),
            Some("2026-12-07T10:00:00.500Z")
        );
        assert_eq!(header(&m, "ce_subject"), Some("cust-7"));
        assert_eq!(header(&m, "content-type"), Some("application/json"));
        assert_eq!(header(&m, "kizuna-dlq-reason"), Some("unparseable"));
        assert_eq!(header(&m, "ce_originalspecversion"), Some("1.0"));
        assert_eq!(header(&m, "ce_originalid"), Some("evt-9"));
        assert_eq!(header(&m, "ce_originaltype"), Some("kizuna.v1.Purchase"));
        assert_eq!(header(&m, "ce_originalsource"), Some("shop/pos"));
        assert_eq!(
            header(&m, "ce_originaltraceparent"),
            Some("00-4bf92f"),
            "the first one"
        );
        assert_eq!(header(&m, "ce_originalbytes"), None, "not UTF-8");
        assert_eq!(header(&m, "ce_original"), None, "nothing left of the name");
        assert_eq!(m.payload, b"{\"eventId\":");
        assert_eq!(m.key.as_deref(), Some(b"cust-7".as_slice()));
        // The same input always gets the same id.
        assert_eq!(m.ce_id, letter(None, None, &CeHeaders::default()).ce_id);
    }

    #[test]
    fn a_dead_letter_without_a_text_key_has_no_subject_and_an_envelope_type_is_set_aside() {
        let none = CeHeaders::default();
        let m = letter(None, Some(b"application/cloudevents+json"), &none);
        assert_eq!(header(&m, "ce_subject"), None);
        assert_eq!(header(&m, "content-type"), None);
        assert_eq!(
            header(&m, DLQ_CONTENT_TYPE_HEADER),
            Some("application/cloudevents+json")
        );
        let m = letter(Some(&[0xff, 0x01]), Some(&[0xc3, 0x28]), &none);
        assert_eq!(header(&m, "ce_subject"), None);
        assert_eq!(header(&m, "content-type"), None);
        assert_eq!(header(&m, DLQ_CONTENT_TYPE_HEADER), None);
        assert!(!m.headers.iter().any(|(k, _)| k.starts_with("ce_original")));
        let m = letter(Some(b""), None, &none);
        assert_eq!(header(&m, "ce_subject"), None, "an empty key is no subject");
    }

    #[test]
    fn a_traceparent_is_set_once_and_replaces_one_there() {
        let tp = |span: u8| TraceParent {
            trace_id: [7; 16],
            span_id: [span; 8],
            flags: 1,
        };
        let mut m = letter(None, None, &CeHeaders::default());
        let before = m.headers.len();
        set_traceparent(&mut m, tp(1));
        set_traceparent(&mut m, tp(2));
        let carried: Vec<&[u8]> = m
            .headers
            .iter()
            .filter(|(k, _)| k == TRACEPARENT)
            .map(|(_, v)| v.as_slice())
            .collect();
        assert_eq!(m.headers.len(), before + 1);
        assert_eq!(
            carried,
            [b"00-07070707070707070707070707070707-0202020202020202-01".as_slice()]
        );
    }
}
