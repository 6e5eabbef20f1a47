//! Fresh topics on the broker: the engine's topics under a prefix of their own, and their
//! removal (best effort: a broker without topic deletion keeps them; names are unique anyway).

use std::time::Duration;

use anyhow::Context;
use kizuna::config::{KafkaSettings, Topics};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// Every topic of `topics`: the inputs, then the outputs and the dead letters.
pub fn names(topics: &Topics) -> Vec<String> {
    topics
        .inputs()
        .into_iter()
        .chain(topics.outputs())
        .map(str::to_owned)
        .collect()
}

/// Creates the topics of `kafka` (with its partitions) that do not exist yet.
pub async fn create(kafka: &KafkaSettings) -> anyhow::Result<()> {
    kizuna::kafka::create_topics(kafka).await.with_context(|| {
        format!(
            "creating topics on {}; is the broker up (deploy/local/up.sh)?",
            kafka.brokers
        )
    })?;
    Ok(())
}

/// Deletes `names` on `brokers`.
pub async fn delete(brokers: &str, names: &[String]) -> anyhow::Result<()> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    delete_with(config, names).await
}

/// Deletes `names` with a client of `config` (brokers, security properties).
pub async fn delete_with(config: ClientConfig, names: &[String]) -> anyhow::Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let client: AdminClient<DefaultClientContext> = config.create()?;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    client
        .delete_topics(&names, &opts)
        .await
        .context("deleting topics")?;
    Ok(())
}

/// The topics on `brokers` whose names satisfy `keep`.
pub fn list(brokers: &str, keep: impl Fn(&str) -> bool) -> anyhow::Result<Vec<String>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let md = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    Ok(md
        .topics()
        .iter()
        .map(|t| t.name())
        .filter(|name| keep(name))
        .map(str::to_owned)
        .collect())
}
