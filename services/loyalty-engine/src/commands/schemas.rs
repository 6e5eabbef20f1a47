//! `kizuna topics create`, registry part: with `outputs.format = "confluent-protobuf"`, the
//! output topics' schemas are registered in the Schema Registry, `outputs.proto` under each
//! output topic's subject `<topic>-value` (schemaType PROTOBUF). Registering the same schema
//! again returns the same id, so this is idempotent. The relay looks the ids up to frame the
//! outputs.

use anyhow::Context;

use crate::config::{OutputFormat, Settings};
use crate::registry::{SchemaRegistry, value_subject};

/// Registers the output schemas; returns (subject, id) for each, or nothing when outputs are
/// JSON.
pub async fn register_outputs(settings: &Settings) -> anyhow::Result<Vec<(String, u32)>> {
    if settings.outputs.format != OutputFormat::ConfluentProtobuf {
        return Ok(Vec::new());
    }
    let registry = SchemaRegistry::from_settings(&settings.registry)?
        .context("outputs.format = \"confluent-protobuf\" needs registry.url")?;
    let t = &settings.kafka.topics;
    let mut out = Vec::new();
    for topic in t.events() {
        let subject = value_subject(topic);
        let id = registry
            .register(&subject, kizuna_proto::OUTPUTS_PROTO)
            .await
            .with_context(|| {
                format!(
                    "registering {subject} in the schema registry {}",
                    registry.base_url()
                )
            })?;
        out.push((subject, id));
    }
    Ok(out)
}
