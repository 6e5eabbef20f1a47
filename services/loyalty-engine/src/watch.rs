//! `kizuna watch`: a live view of the output topics, for demos and for operators.
//! It reads like any subscriber would: plain Kafka, CloudEvents headers, JSON payloads (or
//! binary protobuf in Schema Registry framing, read by `ce_type` with the built-in types).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::config::KafkaSettings;
use crate::engine::outputs::output_json;
use crate::inputs::frame;
use crate::kafka::base_config;

/// Options of `kizuna watch`.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Start from the oldest retained message instead of the current end.
    pub from_beginning: bool,
    /// Include the dead-letter topic.
    pub dead_letters: bool,
    /// Touch this file once the watch is positioned, so a script can start producing.
    pub ready_file: Option<PathBuf>,
}

fn header<'a>(msg: &'a rdkafka::message::BorrowedMessage<'_>, name: &str) -> Option<&'a str> {
    msg.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

fn text(v: &serde_json::Value, key: &str) -> String {
    v.get(key).and_then(|x| x.as_str()).unwrap_or("").to_owned()
}

/// An int64 of the protobuf JSON mapping: a string (or a number), absent when zero.
fn int(v: &serde_json::Value, key: &str) -> i64 {
    match v.get(key) {
        Some(serde_json::Value::String(s)) => s.parse().unwrap_or(0),
        Some(x) => x.as_i64().unwrap_or(0),
        None => 0,
    }
}

/// What a `PointsChanged` moved, the non-zero totals only: "+120 earned, −40 clawed back".
fn points_moves(changes: &serde_json::Value) -> String {
    let moves: Vec<String> = [
        ("earned", "+", "earned"),
        ("released", "", "released"),
        ("redeemed", "−", "redeemed"),
        ("cancelled", "+", "given back"),
        ("expired", "−", "expired"),
        ("clawedBack", "−", "clawed back"),
        ("adjusted", "±", "adjusted"),
    ]
    .iter()
    .filter_map(|(key, sign, words)| {
        let n = int(changes, key);
        (n != 0).then(|| format!("{sign}{n} {words}"))
    })
    .collect();
    if moves.is_empty() {
        "no change".to_owned()
    } else {
        moves.join(", ")
    }
}

fn short_enum(value: &str) -> String {
    value.rsplit_once("_KIND_").map_or_else(
        || {
            ["CHURN_LEVEL_", "SEGMENT_", "PLAY_"]
                .iter()
                .find_map(|p| value.strip_prefix(p))
                .unwrap_or(value)
                .to_lowercase()
        },
        |(_, v)| v.to_lowercase(),
    )
}

/// One line for one output event.
pub fn describe(ce_type: &str, payload: &[u8]) -> String {
    let decoded = if frame::is_framed(payload) {
        frame::parse(payload)
            .ok()
            .and_then(|f| output_json(ce_type, f.body))
    } else {
        serde_json::from_slice::<serde_json::Value>(payload).ok()
    };
    let Some(v) = decoded else {
        return format!(
            "{ce_type}: <{} bytes, not JSON nor a framed output>",
            payload.len()
        );
    };
    let who = text(&v, "customerId");
    match ce_type.rsplit('.').next().unwrap_or(ce_type) {
        "TierChanged" => format!(
            "TIER     {who:<14} {:>10} → {:<10} {:<16} {}",
            text(&v, "previousTier"),
            text(&v, "newTier"),
            short_enum(&text(&v, "kind")),
            text(&v, "reason")
        ),
        "TierWillDowngrade" => format!(
            "WARNING  {who:<14} {:>10} → {:<10} on {} unless: {}",
            text(&v, "previousTier"),
            text(&v, "newTier"),
            text(&v, "downgradeAt"),
            v.get("toKeepTier")
                .map(|x| x.to_string())
                .unwrap_or_default()
        ),
        "ChurnRiskChanged" => format!(
            "CHURN    {who:<14} {:>10} → {:<10} {:<16} score {:.2}  {}",
            short_enum(&text(&v, "previousLevel")),
            short_enum(&text(&v, "newLevel")),
            short_enum(&text(&v, "play")),
            // The JSON mapping omits zero values.
            v.get("score")
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(0.0),
            v.get("drivers")
                .and_then(|d| d.as_array())
                .map(|d| d
                    .iter()
                    .take(2)
                    .map(|x| text(x, "detail"))
                    .collect::<Vec<_>>()
                    .join("; "))
                .unwrap_or_default()
        ),
        "SegmentChanged" => format!(
            "SEGMENT  {who:<14} {:>10} → {:<20} {}",
            short_enum(&text(&v, "previousSegment")),
            short_enum(&text(&v, "newSegment")),
            text(&v, "reason")
        ),
        "PointsChanged" => format!(
            "POINTS   {who:<14} available {:>6}  pending {:>6}{}  {}",
            int(&v, "available"),
            int(&v, "pending"),
            match int(&v, "debt") {
                0 => String::new(),
                d => format!("  debt {d}"),
            },
            points_moves(v.get("changes").unwrap_or(&serde_json::Value::Null))
        ),
        "PointsWillExpire" => format!(
            "EXPIRING {who:<14} {:>6} points on {} (lot {})",
            int(&v, "amount"),
            text(&v, "expiresAt"),
            text(&v, "lot")
        ),
        other => format!("{other}: {v}"),
    }
}

/// Prints output events as they arrive until `stop` is cancelled.
pub async fn watch(
    settings: &KafkaSettings,
    options: WatchOptions,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let consumer: StreamConsumer = base_config(settings)
        .set("group.id", format!("kizuna-watch-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the watch consumer")?;
    let topics = &settings.topics;
    let mut names = vec![
        topics.tier_changed.as_str(),
        topics.churn_risk.as_str(),
        topics.segment_changed.as_str(),
        topics.points.as_str(),
    ];
    if options.dead_letters {
        names.push(topics.dead_letter.as_str());
    }
    let mut tpl = TopicPartitionList::new();
    for name in &names {
        let md = consumer
            .fetch_metadata(Some(name), Duration::from_secs(10))
            .with_context(|| format!("reading metadata of {name}"))?;
        for t in md.topics() {
            for p in t.partitions() {
                let offset = if options.from_beginning {
                    Offset::Beginning
                } else {
                    let (_, high) = consumer
                        .fetch_watermarks(name, p.id(), Duration::from_secs(10))
                        .with_context(|| format!("reading the end of {name}/{}", p.id()))?;
                    Offset::Offset(high)
                };
                tpl.add_partition_offset(name, p.id(), offset)?;
            }
        }
    }
    consumer
        .assign(&tpl)
        .context("assigning the output partitions")?;
    eprintln!("kizuna watch: following {}", names.join(", "));
    if let Some(path) = &options.ready_file {
        std::fs::write(path, b"ready").with_context(|| format!("writing {}", path.display()))?;
    }
    let mut out = std::io::stdout();
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            m = consumer.recv() => m,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                eprintln!("kizuna watch: {e}");
                continue;
            }
        };
        let line = if msg.topic() == topics.dead_letter {
            format!(
                "DLQ      from {} reason={} ({} bytes)",
                header(&msg, "kizuna-dlq-topic").unwrap_or("?"),
                header(&msg, "kizuna-dlq-reason").unwrap_or("?"),
                msg.payload().map_or(0, <[u8]>::len)
            )
        } else {
            describe(
                header(&msg, "ce_type").unwrap_or("unknown"),
                msg.payload().unwrap_or_default(),
            )
        };
        let time = chrono::Local::now().format("%H:%M:%S");
        writeln!(out, "{time}  {line}").ok();
        out.flush().ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framed_outputs_read_like_json_ones() {
        use kizuna_proto::v1;
        use prost::Message;
        let msg = v1::TierChanged {
            customer_id: "c-1".into(),
            previous_tier: "member".into(),
            new_tier: "silver".into(),
            kind: v1::TierChangeKind::Upgrade as i32,
            reason: "spend 35000 JPY".into(),
            ..Default::default()
        };
        let json = serde_json::to_vec(&msg).expect("json");
        let framed = frame::write(12, &[1], &msg.encode_to_vec());
        let line = describe("kizuna.v1.TierChanged", &framed);
        assert_eq!(line, describe("kizuna.v1.TierChanged", &json));
        assert!(line.contains("silver"), "{line}");
    }

    #[test]
    fn points_changes_read_well() {
        use kizuna_proto::v1;
        let msg = v1::PointsChanged {
            customer_id: "c-1".into(),
            changes: Some(v1::PointsMovedTotals {
                earned: 120,
                clawed_back: 40,
                ..Default::default()
            }),
            available: 300,
            pending: 80,
            debt: 0,
            ..Default::default()
        };
        let json = serde_json::to_vec(&msg).expect("json");
        let line = describe("kizuna.v1.PointsChanged", &json);
        assert!(line.starts_with("POINTS"), "{line}");
        assert!(line.contains("available    300"), "{line}");
        assert!(line.contains("pending     80"), "{line}");
        assert!(line.contains("+120 earned, −40 clawed back"), "{line}");
        assert!(!line.contains("debt"), "{line}");
        assert!(!line.contains("redeemed"), "{line}");

        let msg = v1::PointsWillExpire {
            customer_id: "c-1".into(),
            lot: "e-1:earn".into(),
            amount: 75,
            ..Default::default()
        };
        let line = describe(
            "kizuna.v1.PointsWillExpire",
            &serde_json::to_vec(&msg).expect("json"),
        );
        assert!(line.starts_with("EXPIRING"), "{line}");
        assert!(line.contains("75 points"), "{line}");
        assert!(line.contains("e-1:earn"), "{line}");
    }

    #[test]
    fn tier_changes_read_well() {
        let payload = br#"{"customerId":"c-1","previousTier":"member","newTier":"silver","kind":"TIER_CHANGE_KIND_UPGRADE","reason":"spend 35000 JPY"}"#;
        let line = describe("kizuna.v1.TierChanged", payload);
        assert!(line.starts_with("TIER"), "{line}");
        assert!(line.contains("member → silver"), "{line}");
        assert!(line.contains("upgrade"), "{line}");
        assert!(line.contains("spend 35000 JPY"), "{line}");
    }
}
