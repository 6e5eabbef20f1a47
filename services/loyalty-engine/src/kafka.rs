//! Kafka clients built from the settings, and topic administration.

use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
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

/// A consumer's settings when the positions that count are in PostgreSQL: Kafka gets a copy for
/// lag tools (no automatic commits or offset stores), and a partition with no stored position
/// starts at its earliest message. The engine and kizuna-webhooks consume this way.
pub fn offsets_in_postgres(
    mut config: ClientConfig,
    group_id: &str,
    session_timeout_ms: u64,
) -> ClientConfig {
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", session_timeout_ms.to_string());
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
    // A created topic reaches every broker's metadata a moment later; callers (the engine's
    // start-up check, producers) expect it to be there when this returns.
    let deadline = std::time::Instant::now() + TOPIC_VISIBLE_TIMEOUT;
    for name in &names {
        loop {
            if partition_count(admin.inner(), name)?.is_some() {
                break;
            }
            if std::time::Instant::now() >= deadline {
                bail!(
                    "topic {name} was created but its metadata did not show up within {}s",
                    TOPIC_VISIBLE_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(created)
}

/// How long a topic may take to appear in metadata after it was created.
const TOPIC_VISIBLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the start-up check waits for an input topic that is not (yet) in the metadata.
const INPUT_TOPIC_GRACE: Duration = Duration::from_secs(5);

/// The number of partitions of `topic` whose leader is known, or `None` while the topic is
/// missing from the metadata or any partition has no leader yet.
fn partition_count<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
) -> anyhow::Result<Option<usize>> {
    let md = client
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("fetching metadata of topic {topic}"))?;
    Ok(md
        .topics()
        .first()
        .filter(|t| t.error().is_none())
        .map(|t| t.partitions())
        .filter(|ps| !ps.is_empty() && ps.iter().all(|p| p.error().is_none() && p.leader() >= 0))
        .map(<[_]>::len))
}

/// Partition counts of the input topics. They must be equal: a customer's events on the three
/// topics then share one partition number, which decides the instance that owns the customer.
pub fn check_input_partitions(settings: &KafkaSettings) -> anyhow::Result<i32> {
    let consumer: BaseConsumer = base_config(settings)
        .create()
        .context("creating a metadata client")?;
    let mut counts = Vec::new();
    let deadline = std::time::Instant::now() + INPUT_TOPIC_GRACE;
    for topic in settings.topics.inputs() {
        // A topic created a moment ago may not be in this broker's metadata yet.
        let n = loop {
            if let Some(n) = partition_count(consumer.client(), topic)? {
                break n;
            }
            if std::time::Instant::now() >= deadline {
                bail!(
                    "input topic {topic:?} does not exist; create it (e.g. `kizuna topics create`)"
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        };
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
