//! Kafka clients built from the settings, and topic administration.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, FutureProducer, Producer, ProducerContext};
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

/// What [`probe_brokers`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// A broker answered a metadata request over the configured security settings.
    Reached,
    /// No broker answered within the time given, for a reason that may pass (nothing listens,
    /// a network failure): librdkafka's last word on it.
    Unreachable(String),
}

/// Connects to the brokers as every client of `settings` does (same `security.protocol`, SASL
/// and TLS settings) and asks for the cluster's metadata, for at most `timeout`.
///
/// Fails at once, with a message naming what failed, when the broker refuses the credentials
/// (SASL authentication) or the TLS handshake fails (a certificate not trusted, a name that does
/// not match, a protocol mismatch): waiting does not mend those, and librdkafka would otherwise
/// retry them quietly forever. Any other failure to reach a broker is [`Reach::Unreachable`]; the
/// caller decides whether that is fatal (the engine) or a readiness matter (the gateway).
/// `when_down` says whether "all brokers down" ends the probe at once or it waits on.
pub fn probe_brokers(
    settings: &KafkaSettings,
    timeout: Duration,
    when_down: WhenDown,
) -> anyhow::Result<Reach> {
    probe_with(
        base_config(settings),
        &Security::of(settings),
        timeout,
        when_down,
    )
}

/// The settings a failed probe names: the brokers, the security properties, which keys hold
/// secrets (their values are never shown).
#[derive(Debug, Clone)]
pub struct Security {
    pub brokers: String,
    pub properties: BTreeMap<String, String>,
    pub secret_keys: Vec<String>,
}

impl Security {
    pub fn of(settings: &KafkaSettings) -> Self {
        Self {
            brokers: settings.brokers.clone(),
            properties: settings.properties.clone(),
            secret_keys: settings.secret_properties.keys().cloned().collect(),
        }
    }
}

/// [`probe_brokers`] for a client configured by `config` (another service's Kafka settings),
/// its failures described with `security`.
pub fn probe_with(
    mut config: ClientConfig,
    security: &Security,
    timeout: Duration,
    when_down: WhenDown,
) -> anyhow::Result<Reach> {
    let client_id = config.get("client.id").unwrap_or("kizuna").to_owned();
    let producer: BaseProducer<Probe> = config
        .set("client.id", format!("{client_id}-startup-probe"))
        .create_with_context(Probe::default())
        .context("creating the Kafka start-up probe (check the kafka.properties)")?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        // Serves the error events: an authentication or TLS failure arrives as one.
        producer.poll(Duration::from_millis(50));
        if let Some(failure) = producer.context().failure() {
            bail!("{}", failure.describe(security));
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let answer = producer
            .client()
            .fetch_metadata(None, left.min(Duration::from_millis(500)));
        let last = match answer {
            Ok(md) if !md.brokers().is_empty() => return Ok(Reach::Reached),
            Ok(_) => "the metadata listed no broker".to_owned(),
            Err(e) => producer.context().transport().unwrap_or(e.to_string()),
        };
        let all_down = when_down == WhenDown::Return && producer.context().all_down();
        if all_down || std::time::Instant::now() >= deadline {
            // The authentication or TLS error, if that is why, came before "all brokers down".
            producer.poll(Duration::from_millis(50));
            if let Some(failure) = producer.context().failure() {
                bail!("{}", failure.describe(security));
            }
            return Ok(Reach::Unreachable(last));
        }
    }
}

/// What [`probe_brokers`] does when librdkafka reports every broker down (nothing listens, the
/// connection was closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenDown {
    /// Keep trying until the timeout: a broker that is starting may answer in a moment.
    Wait,
    /// Return [`Reach::Unreachable`] at once.
    Return,
}

/// [`probe_brokers`], with an unreachable broker an error too (after waiting up to `timeout`
/// for one that is starting): the engine's start-up check.
pub fn require_brokers(settings: &KafkaSettings, timeout: Duration) -> anyhow::Result<()> {
    require_with(base_config(settings), &Security::of(settings), timeout)
}

/// [`require_brokers`] for a client configured by `config` (kizuna-webhooks' start-up check).
pub fn require_with(
    config: ClientConfig,
    security: &Security,
    timeout: Duration,
) -> anyhow::Result<()> {
    match probe_with(config, security, timeout, WhenDown::Wait)? {
        Reach::Reached => Ok(()),
        Reach::Unreachable(why) => bail!(
            "no Kafka broker of {} answered within {}s: {why}",
            security.brokers,
            timeout.as_secs()
        ),
    }
}

/// Records the client errors that [`probe_brokers`] acts on.
#[derive(Debug, Default)]
struct Probe {
    /// The first authentication or TLS failure.
    failure: std::sync::Mutex<Option<Failure>>,
    /// The last transport failure (connection refused, all brokers down…).
    transport: std::sync::Mutex<Option<String>>,
    /// librdkafka reported every broker down.
    all_down: std::sync::atomic::AtomicBool,
}

impl Probe {
    fn failure(&self) -> Option<Failure> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    fn transport(&self) -> Option<String> {
        self.transport.lock().ok().and_then(|t| t.clone())
    }

    fn all_down(&self) -> bool {
        self.all_down.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl ClientContext for Probe {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(
            ?level,
            fac,
            message = log_message,
            "librdkafka (start-up probe)"
        );
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let kind = match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Authentication) => Some(FailureKind::Authentication),
            Some(RDKafkaErrorCode::SSL) => Some(FailureKind::Tls),
            _ => None,
        };
        match kind {
            Some(kind) => {
                if let Ok(mut f) = self.failure.lock() {
                    f.get_or_insert(Failure {
                        kind,
                        reason: reason.to_owned(),
                    });
                }
            }
            None => {
                if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
                    self.all_down
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                if let Ok(mut t) = self.transport.lock() {
                    *t = Some(format!("{error}: {reason}"));
                }
            }
        }
    }
}

/// The probe produces nothing; it is a producer only because a producer's `poll` serves the
/// client's error events.
impl ProducerContext for Probe {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, (): Self::DeliveryOpaque) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureKind {
    Authentication,
    Tls,
}

/// An authentication or TLS failure, as librdkafka reported it.
#[derive(Debug, Clone)]
struct Failure {
    kind: FailureKind,
    reason: String,
}

impl Failure {
    /// The start-up error: what failed, against which brokers, with which settings (never the
    /// password), and librdkafka's reason.
    fn describe(&self, settings: &Security) -> String {
        let property = |key: &str| match settings.properties.get(key) {
            Some(value) => value.clone(),
            None if settings.secret_keys.iter().any(|k| k == key) => "(secret)".into(),
            None => "(unset)".into(),
        };
        match self.kind {
            FailureKind::Authentication => format!(
                "authentication to the Kafka broker(s) {} failed: security.protocol={}, \
                 sasl.mechanism={}, sasl.username={}; check kafka.properties.sasl.username and \
                 kafka.secret_properties.sasl.password ({})",
                settings.brokers,
                property("security.protocol"),
                property("sasl.mechanism"),
                property("sasl.username"),
                self.reason
            ),
            FailureKind::Tls => format!(
                "the TLS handshake with the Kafka broker(s) {} failed: security.protocol={}, \
                 ssl.ca.location={}; check that the CA file signs the broker's certificate and \
                 that the certificate names the broker's host ({})",
                settings.brokers,
                property("security.protocol"),
                property("ssl.ca.location"),
                self.reason
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// The default Kafka settings, pointed at a port where nothing listens.
    fn nowhere() -> anyhow::Result<KafkaSettings> {
        let mut kafka = crate::config::Settings::load_from(None, Some(Default::default()))?.kafka;
        kafka.brokers = "127.0.0.1:1".into();
        Ok(kafka)
    }

    #[test]
    fn a_closed_port_is_unreachable_at_once_when_asked() -> anyhow::Result<()> {
        let started = Instant::now();
        let reach = probe_brokers(&nowhere()?, Duration::from_secs(30), WhenDown::Return)?;
        assert!(matches!(reach, Reach::Unreachable(_)), "{reach:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
        Ok(())
    }

    #[test]
    fn the_engine_check_waits_for_a_starting_broker_then_names_it() -> anyhow::Result<()> {
        let started = Instant::now();
        let Err(e) = require_brokers(&nowhere()?, Duration::from_secs(2)) else {
            anyhow::bail!("nothing listens on 127.0.0.1:1");
        };
        assert!(started.elapsed() >= Duration::from_secs(2));
        let message = format!("{e:#}");
        assert!(
            message.contains("no Kafka broker of 127.0.0.1:1 answered within 2s"),
            "{message}"
        );
        Ok(())
    }
}
