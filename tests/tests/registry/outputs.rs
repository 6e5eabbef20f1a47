//! Outputs in registry framing, decoded through the registry.

use anyhow::Context;
use kizuna::config::OutputFormat;
use kizuna_e2e::Broker;
use kizuna_e2e::process::run_command;
use kizuna_proto::{OUTPUTS_PROTO, v1};
use prost::Message;
use serde_json::json;

use crate::frames::*;

kizuna_e2e::on_each_broker! {
    outputs_in_registry_framing_decode_through_the_registry,
}

async fn outputs_in_registry_framing_decode_through_the_registry(
    broker: Broker,
) -> anyhow::Result<()> {
    let mut env = env_with_registry(broker).await?;
    env.settings.outputs.format = OutputFormat::ConfluentProtobuf;
    let topics = env.settings.kafka.topics.clone();

    // `kizuna topics create` registers outputs.proto under each output topic's subject.
    let (ok, _, stderr) = run_command(&env.settings, &["topics", "create"])?;
    assert!(ok, "kizuna topics create failed: {stderr}");
    let subject = format!("{}-value", topics.tier_changed);
    assert!(
        stderr.contains(&format!("registered kizuna.v1 outputs.proto as {subject}")),
        "{stderr}"
    );
    let latest: serde_json::Value = reqwest::get(format!(
        "{}/subjects/{subject}/versions/latest",
        registry_url()
    ))
    .await?
    .error_for_status()?
    .json()
    .await?;
    let registered_id = latest["id"].as_u64().context("id")? as u32;
    assert_eq!(latest["schemaType"], json!("PROTOBUF"), "{latest}");

    let app = env.start().await?;
    let producer = env.producer()?;
    for (event, order, amount) in [("evt-o1", "ord-o1", 20_000), ("evt-o2", "ord-o2", 15_000)] {
        let body = serde_json::to_value(purchase(event, "cust-o", order, amount))?;
        producer
            .send_json(&topics.purchases, "cust-o", &body)
            .await?;
    }
    app.wait_for_customer("cust-o", "silver", |s| s["tier"] == json!("silver"))
        .await?;

    let out = env
        .reader(&topics.tier_changed)?
        .collect_until(WAIT, |got| !got.is_empty())
        .await?;
    let msg = &out[0];
    assert_eq!(msg.header("ce_type"), Some("kizuna.v1.TierChanged"));
    assert_eq!(msg.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(msg.key.as_deref(), Some("cust-o"));
    // A subscriber decodes it through the registry: the id names outputs.proto, the indexes
    // its TierChanged message.
    let (id, indexes, body) = unframe(&msg.payload)?;
    assert_eq!(id, registered_id);
    let schema = schema_text(id).await?;
    assert!(schema.contains("package kizuna.v1;"), "{schema}");
    assert_eq!(schema, OUTPUTS_PROTO);
    assert_eq!(
        indexes,
        vec![top_level_index(&schema, "TierChanged").context("TierChanged")?]
    );
    let event = v1::TierChanged::decode(body)?;
    assert_eq!(event.customer_id, "cust-o");
    assert_eq!(
        (event.previous_tier.as_str(), event.new_tier.as_str()),
        ("member", "silver")
    );
    assert_eq!(event.kind(), v1::TierChangeKind::Upgrade);
    assert_eq!(event.caused_by, "evt-o2");
    assert_eq!(event.metrics.map(|m| m.lifetime_spend_minor), Some(35_000));

    // A promoter's answer makes the customer an angel (promoter, spend under the threshold):
    // a SegmentChanged, framed the same way with its own message index.
    producer
        .send_json(
            &topics.surveys,
            "cust-o",
            &json!({"eventId": "evt-o3", "customerId": "cust-o",
                    "occurredAt": chrono::Utc::now().to_rfc3339(), "surveyId": "nps-1",
                    "kind": "SURVEY_KIND_NPS", "score": 9}),
        )
        .await?;
    app.wait_for_customer("cust-o", "angel", |s| s["segment"] == json!("angel"))
        .await?;
    let segments = env
        .reader(&topics.segment_changed)?
        .collect_until(WAIT, |got| !got.is_empty())
        .await?;
    let (seg_id, seg_indexes, seg_body) = unframe(&segments[0].payload)?;
    assert_eq!(schema_text(seg_id).await?, OUTPUTS_PROTO);
    assert_eq!(
        seg_indexes,
        vec![top_level_index(OUTPUTS_PROTO, "SegmentChanged").context("SegmentChanged")?]
    );
    let seg = v1::SegmentChanged::decode(seg_body)?;
    assert_eq!(seg.customer_id, "cust-o");
    assert_eq!(seg.new_segment(), v1::Segment::Angel);
    assert_eq!(seg.caused_by, "evt-o3");
    assert_eq!(
        segments[0].header("ce_type"),
        Some("kizuna.v1.SegmentChanged")
    );

    // Registering again is harmless: the same ids.
    let (ok, _, again) = run_command(&env.settings, &["topics", "create"])?;
    assert!(ok, "{again}");
    assert!(
        again.contains(&format!("{subject} (schema id {registered_id})")),
        "{again}"
    );

    app.stop().await?;
    env.cleanup().await
}
