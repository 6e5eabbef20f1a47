//! Helpers of the webhook-delivery tests: the real Python receiver (which verifies every
//! delivery with the Standard Webhooks reference library), the delivery service started
//! in-process on port 0, its admin API, and engine-format messages on the output topics.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{TestEnv, TestProducer, wait_for};

/// The Python with the reference library: `KIZUNA_TEST_RECEIVER_PYTHON`, or the virtualenv
/// deploy/local/prereqs.sh makes in `$KIZUNA_CACHE_DIR/venv-receivers`.
pub(crate) fn receiver_python() -> String {
    std::env::var("KIZUNA_TEST_RECEIVER_PYTHON").unwrap_or_else(|_| {
        let cache =
            std::env::var("KIZUNA_CACHE_DIR").unwrap_or_else(|_| "/var/cache/kizuna".into());
        format!("{cache}/venv-receivers/bin/python")
    })
}

/// One request the receiver got.
#[derive(Debug, Clone, Deserialize)]
pub struct Hook {
    pub webhook_id: Option<String>,
    pub timestamp: Option<String>,
    pub signature: Option<String>,
    pub content_type: Option<String>,
    /// Verified by the reference library.
    pub verified: bool,
    pub verify_error: Option<String>,
    /// The status sent back (504 for a request that hung).
    pub answered: Option<u16>,
    /// A 2xx was sent back: the delivery counts as done.
    pub accepted: bool,
    /// The CloudEvent, parsed.
    pub event: Value,
    pub received_at: f64,
}

impl Hook {
    pub fn id(&self) -> &str {
        self.webhook_id.as_deref().unwrap_or("")
    }

    pub fn subject(&self) -> &str {
        self.event["subject"].as_str().unwrap_or("")
    }
}

/// The receiver process (`tests/receivers/webhook_receiver.py`). Ends with the test: it
/// stops when its stdin closes, and is killed on drop.
#[derive(Debug)]
pub struct Receiver {
    _child: Child,
    _stdin: ChildStdin,
    pub port: u16,
    http: reqwest::Client,
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Self> {
        let python = receiver_python();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/receivers/webhook_receiver.py");
        let mut child = Command::new(&python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!("starting the webhook receiver with {python}; run deploy/local/prereqs.sh to install its virtualenv")
            })?;
        let stdin = child.stdin.take().context("receiver stdin")?;
        let stdout = child.stdout.take().context("receiver stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("the receiver did not start within 30 s")??
            .context("the receiver exited before printing its port (is standardwebhooks installed? run deploy/local/prereqs.sh)")?;
        let port = serde_json::from_str::<Value>(&line)?["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .with_context(|| format!("unexpected first line from the receiver: {line}"))?;
        Ok(Self {
            _child: child,
            _stdin: stdin,
            port,
            http: reqwest::Client::new(),
        })
    }

    /// The URL of endpoint `name`.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/hooks/{name}", self.port)
    }

    /// Configures endpoint `name` (see the script's doc: secrets, mode, status, fail_count).
    pub async fn configure(&self, name: &str, conf: Value) -> anyhow::Result<()> {
        let resp = self
            .http
            .post(format!("http://127.0.0.1:{}/control/{name}", self.port))
            .json(&conf)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("configuring the receiver: {}", resp.status());
        }
        Ok(())
    }

    /// Ends the hang of endpoint `name`.
    pub async fn release(&self, name: &str) -> anyhow::Result<()> {
        self.http
            .post(format!(
                "http://127.0.0.1:{}/control/{name}/release",
                self.port
            ))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Everything endpoint `name` received, in arrival order.
    pub async fn requests(&self, name: &str) -> anyhow::Result<Vec<Hook>> {
        Ok(self
            .http
            .get(format!(
                "http://127.0.0.1:{}/control/{name}/requests",
                self.port
            ))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// The accepted (2xx) deliveries of endpoint `name`, once `done` says they are complete.
    pub async fn wait_accepted(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Hook]) -> bool,
    ) -> anyhow::Result<Vec<Hook>> {
        wait_for(what, timeout, || async {
            let accepted: Vec<Hook> = self
                .requests(name)
                .await?
                .into_iter()
                .filter(|h| h.accepted)
                .collect();
            Ok(done(&accepted).then_some(accepted))
        })
        .await
    }
}

/// The delivery service's settings for this environment: the engine's output topics, its own
/// consumer group and topic, the test database, port 0, quick retries.
pub fn settings(env: &TestEnv) -> anyhow::Result<kizuna_webhooks::config::Settings> {
    let mut s = kizuna_webhooks::config::Settings::load(None)?;
    let topics = &env.settings.kafka.topics;
    s.kafka.brokers = env.settings.kafka.brokers.clone();
    // The same security settings (SASL, TLS) as the engine's.
    s.kafka.properties = env.settings.kafka.properties.clone();
    s.kafka.secret_properties = env.settings.kafka.secret_properties.clone();
    s.kafka.group_id = format!("kizuna-webhooks-test-{}", env.id);
    s.kafka.session_timeout_ms = 6_000;
    s.kafka.topics.tier_changed = topics.tier_changed.clone();
    s.kafka.topics.churn_risk = topics.churn_risk.clone();
    s.kafka.topics.segment_changed = topics.segment_changed.clone();
    s.kafka.topics.points = topics.points.clone();
    s.kafka.topics.privacy = topics.privacy.clone();
    s.kafka.topics.webhooks = format!("test-{}.kizuna.webhooks", env.id);
    s.database.url = SecretString::from(env.database_url.clone());
    s.database.max_connections = 5;
    s.http.bind = "127.0.0.1:0".parse()?;
    s.http.admin_token = Some(SecretString::from(admin_token(env)));
    s.delivery.allow_private_networks = true;
    s.delivery.poll_interval_ms = 100;
    s.delivery.request_timeout_ms = 3_000;
    s.delivery.backoff_initial_ms = 200;
    s.delivery.backoff_max_ms = 1_000;
    s.metrics.refresh_secs = 1;
    s.check()?;
    Ok(s)
}

fn admin_token(env: &TestEnv) -> String {
    format!("webhooks-admin-{}", env.id)
}

/// The delivery service, running in-process.
#[derive(Debug)]
pub struct WebhooksApp {
    pub port: u16,
    pub stop: CancellationToken,
    pub handle: JoinHandle<anyhow::Result<()>>,
    pub http: reqwest::Client,
    token: String,
}

impl WebhooksApp {
    pub async fn start(settings: kizuna_webhooks::config::Settings) -> anyhow::Result<Self> {
        let token = settings
            .http
            .admin_token
            .as_ref()
            .map(|t| secrecy::ExposeSecret::expose_secret(t).to_owned())
            .unwrap_or_default();
        let app = kizuna_webhooks::startup::Application::build(settings).await?;
        let port = app.port();
        let stop = app.stop_token();
        let handle = tokio::spawn(app.run_until_stopped());
        Ok(Self {
            port,
            stop,
            handle,
            http: reqwest::Client::new(),
            token,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// An admin request with the bearer token: status and JSON body (Null if none).
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Creates a subscription; returns its id and secret.
    pub async fn subscribe(
        &self,
        url: &str,
        event_types: &[&str],
        filter: Value,
    ) -> anyhow::Result<(String, String)> {
        let (status, body) = self
            .admin(
                reqwest::Method::POST,
                "/v1/webhooks/subscriptions",
                Some(json!({"url": url, "event_types": event_types, "filter": filter})),
            )
            .await?;
        if status != 201 {
            bail!("creating a subscription: {status} {body}");
        }
        let id = body["id"].as_str().context("id")?.to_owned();
        let secret = body["secret"].as_str().context("secret")?.to_owned();
        Ok((id, secret))
    }

    /// An admin request about subscription `id`: `/v1/webhooks/subscriptions/{id}` followed by
    /// `tail` (empty, or `/pause`, `/attempts?limit=…`, …).
    pub async fn on_subscription(
        &self,
        method: reqwest::Method,
        id: &str,
        tail: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        self.admin(
            method,
            &format!("/v1/webhooks/subscriptions/{id}{tail}"),
            body,
        )
        .await
    }

    /// Subscribes `receiver`'s endpoint `name` to `event_types` with `filter`, and has the
    /// endpoint verify with the new secret and answer as `behaviour` says (`{"mode": …}`; the
    /// secret is added to it); returns the subscription's id and secret.
    pub async fn subscribe_endpoint(
        &self,
        receiver: &Receiver,
        name: &str,
        event_types: &[&str],
        filter: Value,
        behaviour: Value,
    ) -> anyhow::Result<(String, String)> {
        let (id, secret) = self
            .subscribe(&receiver.url(name), event_types, filter)
            .await?;
        let mut config = behaviour;
        config["secrets"] = json!([secret]);
        receiver.configure(name, config).await?;
        Ok((id, secret))
    }

    pub async fn subscription(&self, id: &str) -> anyhow::Result<Value> {
        let (status, body) = self
            .on_subscription(reqwest::Method::GET, id, "", None)
            .await?;
        if status != 200 {
            bail!("reading subscription {id}: {status} {body}");
        }
        Ok(body)
    }

    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(self.url("/metrics"))
            .send()
            .await?
            .text()
            .await?)
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .context("the delivery service did not stop within 30 s")??
    }
}

/// Produces an output message as the engine's relay does (CloudEvents Kafka binding headers,
/// protobuf-JSON payload, keyed by customer id). Returns its `ce_id`.
pub async fn produce_output(
    producer: &TestProducer,
    topic: &str,
    customer: &str,
    ce_type: &str,
    data: Value,
) -> anyhow::Result<String> {
    let ce_id = uuid::Uuid::new_v4().to_string();
    let time = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    producer
        .send(
            topic,
            Some(customer),
            &serde_json::to_vec(&data)?,
            &[
                ("ce_specversion", b"1.0"),
                ("ce_id", ce_id.as_bytes()),
                ("ce_type", ce_type.as_bytes()),
                ("ce_source", b"kizuna/loyalty-engine"),
                ("ce_time", time.as_bytes()),
                ("ce_subject", customer.as_bytes()),
                ("content-type", b"application/json"),
            ],
        )
        .await?;
    Ok(ce_id)
}

/// Produces engine-format outputs to one environment's output topics (see [`produce_output`]).
#[derive(Debug, Clone)]
pub struct OutputFeed {
    pub producer: TestProducer,
    pub topics: kizuna::config::Topics,
}

impl OutputFeed {
    pub fn new(env: &TestEnv) -> anyhow::Result<Self> {
        Ok(Self {
            producer: env.producer()?,
            topics: env.settings.kafka.topics.clone(),
        })
    }

    /// A `TierChanged` of `customer` from `from` to `to`; returns its `ce_id`.
    pub async fn tier_changed(
        &self,
        customer: &str,
        from: &str,
        to: &str,
        seq: u32,
    ) -> anyhow::Result<String> {
        let data = tier_changed(customer, from, to, seq);
        let topic = &self.topics.tier_changed;
        produce_output(&self.producer, topic, customer, TIER_CHANGED, data).await
    }

    /// A `ChurnRiskChanged` of `customer` to `level`; returns its `ce_id`.
    pub async fn churn_changed(
        &self,
        customer: &str,
        level: &str,
        seq: u32,
    ) -> anyhow::Result<String> {
        let data = churn_changed(customer, level, seq);
        let topic = &self.topics.churn_risk;
        produce_output(&self.producer, topic, customer, CHURN_RISK_CHANGED, data).await
    }
}

pub const TIER_CHANGED: &str = "kizuna.v1.TierChanged";
pub const CHURN_RISK_CHANGED: &str = "kizuna.v1.ChurnRiskChanged";

/// A `TierChanged` payload.
pub fn tier_changed(customer: &str, from: &str, to: &str, seq: u32) -> Value {
    json!({"customerId": customer, "previousTier": from, "newTier": to,
           "kind": "TIER_CHANGE_KIND_UPGRADE", "reason": format!("step {seq}"),
           "causedBy": format!("evt-{seq}"), "effectiveAt": Utc::now().to_rfc3339()})
}

/// A `ChurnRiskChanged` payload.
pub fn churn_changed(customer: &str, level: &str, seq: u32) -> Value {
    json!({"customerId": customer, "previousLevel": "CHURN_LEVEL_LOW", "newLevel": level,
           "score": 0.5, "play": "PLAY_SERVICE_RECOVERY", "reason": format!("step {seq}"),
           "causedBy": format!("evt-{seq}"), "effectiveAt": Utc::now().to_rfc3339()})
}

/// Seconds since the epoch as the receiver records them, for comparisons.
pub fn epoch(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

pub use crate::logs::LogCapture;
