//! Helpers for Kizuna's end-to-end tests. Every test gets a fresh database, fresh topics and a
//! fresh consumer group on the real broker and the real PostgreSQL started by
//! `deploy/local/up.sh`, and waits on conditions with timeouts, never on fixed sleeps.
//!
//! Each test runs on Apache Kafka and on tansu ([`Broker`], [`on_each_broker!`]).
//!
//! Environment:
//! - `KIZUNA_TEST_KAFKA`, `KIZUNA_TEST_TANSU`: the brokers' addresses (see [`brokers`])
//! - `KIZUNA_TEST_LOG=1` (or `TEST_LOG=1`): engine processes' logs also go to the test's stderr
//!   (see [`process`]), and so do the logs of the services running in-process (see [`logs`])
//! - `KIZUNA_TEST_DATABASE_URL`: a database the test role can connect to in order to create
//!   others (default `postgres://kizuna:kizuna@127.0.0.1:5432/kizuna`).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use kizuna::config::Settings;
use kizuna::config::access::{Role, TokenSettings};
use kizuna::startup::Application;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use secrecy::SecretString;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod brokers;
pub mod cloudevents;
pub mod guarantees;
pub mod jaeger;
pub mod logs;
pub mod secured;
pub mod webhooks;

pub use brokers::Broker;
/// The engine as a child process, and the `/metrics` parser: see `kizuna-testkit`.
pub use kizuna_testkit::process;
pub use kizuna_testkit::wait_for;
pub use secured::SecuredKafka;

pub fn admin_database_url() -> String {
    std::env::var("KIZUNA_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://kizuna:kizuna@127.0.0.1:5432/kizuna".into())
}

/// A fresh database, fresh topics and a fresh consumer group for one test.
#[derive(Debug)]
pub struct TestEnv {
    pub id: String,
    /// The broker this environment's topics live on.
    pub broker: Broker,
    pub database: String,
    pub database_url: String,
    pub settings: Settings,
}

/// Creates the database `kizuna_test_<id>`; returns its name and URL.
async fn create_database(id: &str) -> anyhow::Result<(String, String)> {
    let database = format!("kizuna_test_{id}");
    let url = kizuna_testkit::database::create(&admin_database_url(), &database).await?;
    Ok((database, url))
}

impl TestEnv {
    /// A fresh environment on Apache Kafka (tests that run on each broker use [`TestEnv::on`]).
    pub async fn new() -> anyhow::Result<Self> {
        Self::on(Broker::Kafka).await
    }

    /// A fresh environment on `broker`.
    pub async fn on(broker: Broker) -> anyhow::Result<Self> {
        Self::configured(broker, |_| {}).await
    }

    /// A fresh environment on the secured Apache Kafka (SASL_SSL): every client of it, the
    /// engine's and the test's, connects with its credentials and CA.
    pub async fn on_secured(secured: &SecuredKafka) -> anyhow::Result<Self> {
        Self::configured(Broker::Kafka, |kafka| secured.apply(kafka)).await
    }

    /// A fresh environment on `broker`, its Kafka settings changed by `configure` before the
    /// topics are created.
    async fn configured(
        broker: Broker,
        configure: impl FnOnce(&mut kizuna::config::KafkaSettings),
    ) -> anyhow::Result<Self> {
        logs::show_if_asked();
        let id = kizuna_testkit::fresh_id(12);
        let (database, database_url) = create_database(&id).await?;

        let mut settings = Settings::load(None)?;
        settings.kafka.brokers = broker.address();
        settings.kafka.group_id = format!("kizuna-test-{id}");
        settings.kafka.partitions = 3;
        // Group joins take about half the session timeout on tansu; keep it short in tests.
        settings.kafka.session_timeout_ms = 6_000;
        settings.kafka.topics.add_prefix(&format!("test-{id}."));
        settings.database.url = SecretString::from(database_url.clone());
        settings.database.max_connections = 5;
        settings.http.bind = "127.0.0.1:0".parse()?;
        settings.ingest.batch_linger_ms = 10;
        settings.relay.poll_interval_ms = 200;
        settings.sweep.interval_ms = 200;
        settings.metrics.refresh_secs = 1;
        settings.metrics.population_refresh_secs = 1;
        settings.metrics.model_refresh_secs = 1;
        // One bearer token per role (`TestEnv::tokens`): the viewer and the operator stored as
        // hashes, the admin as the deprecated http.admin_token (so it keeps being tested).
        let tokens = Tokens::of(&id);
        settings.http.admin_token = Some(SecretString::from(tokens.admin.clone()));
        settings.http.tokens = [
            ("viewer", Role::Viewer, &tokens.viewer),
            ("operator", Role::Operator, &tokens.operator),
        ]
        .into_iter()
        .map(|(name, role, token)| {
            let sha256 = kizuna::http::auth::hash_token(token);
            (name.to_owned(), TokenSettings { role, sha256 })
        })
        .collect();
        // Tests poll admin endpoints (a recompute's state): a limit no test reaches.
        settings.http.admin_requests_per_minute = 6_000;
        settings.http.admin_burst = 1_000;
        configure(&mut settings.kafka);
        kizuna_testkit::topics::create(&settings.kafka).await?;
        Ok(Self {
            id,
            broker,
            database,
            database_url,
            settings,
        })
    }

    /// The API's bearer tokens of this environment.
    pub fn tokens(&self) -> Tokens {
        Tokens::of(&self.id)
    }

    pub async fn pool(&self) -> anyhow::Result<PgPool> {
        Ok(PgPool::connect(&self.database_url).await?)
    }

    /// Starts the engine in-process with this environment's settings.
    pub async fn start(&self) -> anyhow::Result<TestApp> {
        let app = Application::build(self.settings.clone()).await?;
        let port = app.port();
        let stop = app.stop_token();
        let handle = tokio::spawn(app.run_until_stopped());
        let tokens = self.tokens();
        Ok(TestApp {
            port,
            stop,
            handle,
            http: reqwest::Client::new(),
            operator: bearer_client(&tokens.operator)?,
            tokens,
        })
    }

    pub fn producer(&self) -> anyhow::Result<TestProducer> {
        let producer: FutureProducer = client_config(&self.settings.kafka)
            .set("partitioner", "murmur2_random")
            .set("enable.idempotence", "true")
            .create()?;
        Ok(TestProducer { producer })
    }

    /// A consumer reading every partition of `topic` from the beginning.
    pub fn reader(&self, topic: &str) -> anyhow::Result<TopicReader> {
        TopicReader::with_config(
            client_config(&self.settings.kafka),
            topic,
            &format!("reader-{}", self.id),
        )
    }

    /// Drops the database and deletes the topics.
    pub async fn cleanup(self) -> anyhow::Result<()> {
        // FORCE cannot end an autovacuum worker that may be in a freshly filled database:
        // retried for up to 30 s.
        kizuna_testkit::database::drop(
            &admin_database_url(),
            &self.database,
            Duration::from_secs(30),
        )
        .await?;
        // Best effort: brokers without topic deletion keep them; names are unique anyway.
        let topics = kizuna_testkit::topics::names(&self.settings.kafka.topics);
        kizuna_testkit::topics::delete_with(client_config(&self.settings.kafka), &topics)
            .await
            .ok();
        Ok(())
    }
}

/// A client's settings for the brokers of `kafka`: the bootstrap servers and the security
/// properties (SASL, TLS) the engine's clients use too.
pub fn client_config(kafka: &kizuna::config::KafkaSettings) -> ClientConfig {
    use secrecy::ExposeSecret;
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.brokers);
    for (k, v) in &kafka.properties {
        config.set(k, v);
    }
    for (k, v) in &kafka.secret_properties {
        config.set(k, v.expose_secret());
    }
    config
}

/// The API's bearer tokens of a test environment, one per role.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub viewer: String,
    pub operator: String,
    pub admin: String,
}

impl Tokens {
    fn of(id: &str) -> Self {
        Self {
            viewer: format!("viewer-{id}"),
            operator: format!("operator-{id}"),
            admin: format!("admin-{id}"),
        }
    }
}

/// A client that sends `Authorization: Bearer <token>` with every request.
pub fn bearer_client(token: &str) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .default_headers(bearer_headers(token)?)
        .build()?)
}

/// `Authorization: Bearer <token>`, as default headers of a client.
pub fn bearer_headers(token: &str) -> anyhow::Result<reqwest::header::HeaderMap> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse()?,
    );
    Ok(headers)
}

/// A running engine.
#[derive(Debug)]
pub struct TestApp {
    pub port: u16,
    pub stop: CancellationToken,
    pub handle: JoinHandle<anyhow::Result<()>>,
    /// A client without a token.
    pub http: reqwest::Client,
    /// A client with the operator's token (reads and redemptions).
    pub operator: reqwest::Client,
    pub tokens: Tokens,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `GET path` as the viewer: status and JSON body (Null when the body is not JSON).
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.tokens.viewer)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        ))
    }

    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        Ok(self.http.get(self.url(path)).send().await?.text().await?)
    }

    /// Waits until the customer's state satisfies `check`.
    pub async fn wait_for_customer(
        &self,
        id: &str,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<serde_json::Value> {
        let last = std::sync::Mutex::new(None);
        let result = wait_for(what, Duration::from_secs(60), || async {
            let (status, body) = self.get(&format!("/v1/customers/{id}")).await?;
            let done = status == 200 && check(&body);
            if let Ok(mut l) = last.lock() {
                *l = Some((status, body.clone()));
            }
            Ok(done.then_some(body))
        })
        .await;
        result.with_context(|| {
            format!(
                "last answer for {id}: {:?}",
                last.lock().ok().and_then(|l| l.clone())
            )
        })
    }

    /// Graceful stop; returns the application's result.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .context("the engine did not stop within 30 s")??
    }
}

#[derive(Clone)]
pub struct TestProducer {
    producer: FutureProducer,
}

impl std::fmt::Debug for TestProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestProducer")
    }
}

impl TestProducer {
    /// Produces one message and waits for the broker's acknowledgement.
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&str>,
        payload: &[u8],
        headers: &[(&str, &[u8])],
    ) -> anyhow::Result<()> {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        let mut record = FutureRecord::<str, [u8]>::to(topic)
            .payload(payload)
            .headers(h);
        if let Some(key) = key {
            record = record.key(key);
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("produce to {topic}: {e}"))?;
        Ok(())
    }

    /// Produces a JSON input event keyed by its customer id.
    pub async fn send_json(
        &self,
        topic: &str,
        customer: &str,
        event: &impl serde::Serialize,
    ) -> anyhow::Result<()> {
        let payload = serde_json::to_vec(event)?;
        self.send(
            topic,
            Some(customer),
            &payload,
            &[("content-type", b"application/json")],
        )
        .await
    }
}

/// A message read back from a topic.
#[derive(Debug, Clone)]
pub struct Received {
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
    /// Every header with a value, as it came and in order (duplicates and non-UTF-8 values
    /// included).
    pub raw_headers: Vec<(String, Vec<u8>)>,
    pub partition: i32,
    pub offset: i64,
}

impl Received {
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_slice(&self.payload)?)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

pub struct TopicReader {
    consumer: StreamConsumer,
    topic: String,
    partitions: Vec<i32>,
}

impl std::fmt::Debug for TopicReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TopicReader({})", self.topic)
    }
}

fn received_message(msg: &rdkafka::message::BorrowedMessage<'_>) -> Received {
    let headers = msg
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let raw_headers = msg
        .headers()
        .map(|hs| {
            hs.iter()
                .filter_map(|h| Some((h.key.to_owned(), h.value?.to_vec())))
                .collect()
        })
        .unwrap_or_default();
    Received {
        key: msg.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        payload: msg.payload().unwrap_or_default().to_vec(),
        headers,
        raw_headers,
        partition: msg.partition(),
        offset: msg.offset(),
    }
}

impl TopicReader {
    /// A reader of every partition of `topic` from the beginning, in a consumer group of its
    /// own (`<group_prefix>-<uuid>`).
    pub fn new(brokers: &str, topic: &str, group_prefix: &str) -> anyhow::Result<TopicReader> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers);
        Self::with_config(config, topic, group_prefix)
    }

    /// [`TopicReader::new`] with the client settings `config` (brokers, security properties).
    pub fn with_config(
        mut config: ClientConfig,
        topic: &str,
        group_prefix: &str,
    ) -> anyhow::Result<TopicReader> {
        let consumer: StreamConsumer = config
            .set(
                "group.id",
                format!("{group_prefix}-{}", uuid::Uuid::new_v4()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .create()?;
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let mut tpl = TopicPartitionList::new();
        let mut partitions = Vec::new();
        for t in md.topics() {
            for p in t.partitions() {
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
                partitions.push(p.id());
            }
        }
        if partitions.is_empty() {
            bail!("topic {topic} has no partitions");
        }
        consumer.assign(&tpl)?;
        Ok(TopicReader {
            consumer,
            topic: topic.to_owned(),
            partitions,
        })
    }

    /// Reads messages until `done` says the collection is complete, or fails after `timeout`.
    pub async fn collect_until(
        &self,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> anyhow::Result<Vec<Received>> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(&got) {
            if let Read::Message(m) = self.next(deadline, timeout, got.len()).await? {
                got.push(m);
            }
        }
        Ok(got)
    }

    /// Reads everything the topic holds right now: every partition to where the consumer
    /// reports its end. Not to the high watermark that ListOffsets returns: tansu 0.6 can report
    /// one below a partition's last offset (offsets 0–267 on the topic, watermark 262, minutes
    /// later still), and a reader that stopped there missed messages.
    pub async fn read_to_end(&self, timeout: Duration) -> anyhow::Result<Vec<Received>> {
        self.read_to_end_and(timeout, |_| true).await
    }

    /// Reads to the end of every partition (as [`TopicReader::read_to_end`]) and on until `also`
    /// is satisfied too, or fails after `timeout`.
    pub async fn read_to_end_and(
        &self,
        timeout: Duration,
        also: impl Fn(&[Received]) -> bool,
    ) -> anyhow::Result<Vec<Received>> {
        let mut open: std::collections::HashSet<i32> = self.partitions.iter().copied().collect();
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while !open.is_empty() || !also(&got) {
            match self.next(deadline, timeout, got.len()).await? {
                Read::Message(m) => got.push(m),
                Read::End(partition) => {
                    open.remove(&partition);
                }
            }
        }
        Ok(got)
    }

    async fn next(
        &self,
        deadline: tokio::time::Instant,
        timeout: Duration,
        received: usize,
    ) -> anyhow::Result<Read> {
        let next = tokio::time::timeout_at(deadline, self.consumer.recv())
            .await
            .with_context(|| {
                format!(
                    "timed out after {timeout:?} on {}; received {received} messages",
                    self.topic
                )
            })?;
        match next {
            Ok(msg) => Ok(Read::Message(received_message(&msg))),
            Err(rdkafka::error::KafkaError::PartitionEOF(partition)) => Ok(Read::End(partition)),
            Err(e) => Err(e.into()),
        }
    }
}

/// What a reader's next step brought: a message, or the end of a partition.
enum Read {
    Message(Received),
    End(i32),
}

impl TestEnv {
    /// Another environment over the same input topics: a fresh database, a fresh consumer group
    /// and output topics of its own (`test-<id>-<tag>.…`). A reference run reads the same input
    /// as this environment's engines without touching their state or outputs. Its `cleanup`
    /// also deletes the shared input topics, so clean it up last or not before this one.
    pub async fn sibling(&self, tag: &str) -> anyhow::Result<TestEnv> {
        let id = format!("{}_{tag}", self.id);
        let (database, database_url) = create_database(&id).await?;
        let mut settings = self.settings.clone();
        settings.kafka.group_id = format!("kizuna-test-{id}");
        let prefix = format!("test-{}.", self.id);
        for topic in settings.kafka.topics.outputs_mut() {
            let name = topic.strip_prefix(&prefix).unwrap_or(topic).to_owned();
            *topic = format!("test-{}-{tag}.{name}", self.id);
        }
        settings.database.url = SecretString::from(database_url.clone());
        kizuna_testkit::topics::create(&settings.kafka).await?;
        Ok(Self {
            id,
            broker: self.broker,
            database,
            database_url,
            settings,
        })
    }
}

/// Runs `deploy/local/<script> <arg>` (a local-stack script) and returns the `NAME=value` lines
/// it prints on stdout; fails with its stderr when it fails.
pub fn stack_script(script: &str, arg: &str) -> anyhow::Result<HashMap<String, String>> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/local")
        .join(script);
    let out = std::process::Command::new(&path)
        .arg(arg)
        .output()
        .with_context(|| format!("running {}", path.display()))?;
    if !out.status.success() {
        bail!(
            "{} {arg} failed ({}):\n{}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}
