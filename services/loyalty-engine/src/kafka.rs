//! Kafka clients built from the settings, and topic administration.

use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use secrecy::ExposeSecret;

use crate::config::KafkaSettings;

/// Settings every client shares: brokers, client id, pass-through security properties.
pub fn base_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.brokers)
        .set("client.id", &settings.client_id)
        .set("log_level", "4");
    for (k, v) in &settings.properties {
        config.set(k, v);
    }
    for (k, v) in &settings.secret_properties {
        config.set(k, v.expose_secret());
    }
    config
}

/// The output producer: idempotent (no duplicates or reordering on retry), acks from all
/// in-sync replicas, and the Java client's partitioner so keys land where Java producers put
/// them.
pub fn producer(settings: &KafkaSettings) -> anyhow::Result<FutureProducer> {
    base_config(settings)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "30000")
        .create()
        .context("creating the Kafka producer")
}

/// Creates the input, output and dead-letter topics that do not exist yet.
pub async fn create_topics(settings: &KafkaSettings) -> anyhow::Result<Vec<String>> {
    let admin: AdminClient<DefaultClientContext> = base_config(settings)
        .create()
        .context("creating the Kafka admin client")?;
    let topics = &settings.topics;
    let names: Vec<&str> = topics
        .inputs()
        .into_iter()
        .chain(topics.outputs())
        .collect();
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                settings.partitions,
                TopicReplication::Fixed(settings.replication_factor),
            )
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&new, &opts)
        .await
        .context("creating topics")?;
    let mut created = Vec::new();
    for result in results {
        match result {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("creating topic {name}: {code}"),
        }
    }
    Ok(created)
}

/// Partition counts of the input topics. They must be equal: a customer's events on the three
/// topics then share one partition number, which decides the instance that owns the customer.
pub fn check_input_partitions(settings: &KafkaSettings) -> anyhow::Result<i32> {
    let consumer: BaseConsumer = base_config(settings)
        .create()
        .context("creating a metadata client")?;
    let mut counts = Vec::new();
    for topic in settings.topics.inputs() {
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .with_context(|| format!("fetching metadata of topic {topic}"))?;
        let n = md
            .topics()
            .first()
            .filter(|t| t.error().is_none())
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        if n == 0 {
            bail!("input topic {topic:?} does not exist; create it (e.g. `kizuna topics create`)");
        }
        counts.push((topic, n));
    }
    let first = counts[0].1;
    if counts.iter().any(|(_, n)| *n != first) {
        bail!(
            "input topics must have the same number of partitions so each customer is owned by one instance; found {}",
            counts
                .iter()
                .map(|(t, n)| format!("{t}={n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(i32::try_from(first).unwrap_or(i32::MAX))
}
