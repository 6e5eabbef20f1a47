//! The Schema Registry client: the Confluent-compatible REST API (Confluent Schema Registry;
//! Apicurio Registry under `/apis/ccompat/v7`). Thin I/O over `inputs::frame`, which parses
//! and checks what comes back.
//!
//! - `schema(id)`: `GET /schemas/ids/{id}`, cached by id (an id's schema never changes) in a
//!   bounded cache. An unknown id is `NotFound` (the message goes to the dead letters); a
//!   registry that does not answer after `registry.attempts` is `RegistryUnavailable`, a
//!   transient failure: the batch waits and is retried, nothing is dead-lettered for it.
//! - `register` / `lookup`: `POST /subjects/{subject}/versions` and `POST /subjects/{subject}`,
//!   for the output schemas.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::config::RegistrySettings;
use crate::inputs::frame::ProtoSchema;
use crate::metrics::Metrics;

/// The registry's media type.
const MEDIA_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// The registry did not answer usefully after every attempt (down, timing out, 5xx, refusing
/// our credentials). Transient: retried like a database outage, never a dead letter.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the schema registry is unavailable: {0}")]
pub struct RegistryUnavailable(pub String);

/// Why a schema could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LookupError {
    #[error("schema id {0} is not registered")]
    NotFound(u32),
    #[error(transparent)]
    Unavailable(#[from] RegistryUnavailable),
}

/// A registered schema, as far as Kizuna can use it. Both are cached: an id's schema never
/// changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    Proto(ProtoSchema),
    /// Not a protobuf schema (AVRO, JSON), or one that does not parse: why.
    Unusable(String),
}

#[derive(Debug, Deserialize)]
struct SchemaById {
    schema: String,
    /// Absent means AVRO in Confluent's API.
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct IdAnswer {
    id: u32,
}

/// Schemas by id, bounded: the oldest entry goes first.
#[derive(Debug)]
struct Cache {
    by_id: HashMap<u32, Arc<Registered>>,
    order: VecDeque<u32>,
    capacity: usize,
}

impl Cache {
    fn new(capacity: usize) -> Self {
        Self {
            by_id: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    fn get(&self, id: u32) -> Option<Arc<Registered>> {
        self.by_id.get(&id).cloned()
    }

    fn insert(&mut self, id: u32, schema: Arc<Registered>) {
        if self.by_id.insert(id, schema).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
    }
}

pub struct SchemaRegistry {
    http: reqwest::Client,
    base: String,
    username: Option<String>,
    password: Option<SecretString>,
    attempts: u32,
    cache: Mutex<Cache>,
    metrics: Option<Metrics>,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// What one HTTP exchange gave.
enum Answer {
    Ok(String),
    NotFound(String),
}

impl SchemaRegistry {
    /// The client of `settings.url`; None when no registry is configured.
    pub fn from_settings(settings: &RegistrySettings) -> anyhow::Result<Option<Arc<Self>>> {
        Self::build(settings, None)
    }

    /// The client of `settings.url`, counting its lookups in `metrics`
    /// (`kizuna_schema_registry_lookups_total`).
    pub fn with_metrics(
        settings: &RegistrySettings,
        metrics: &Metrics,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        Self::build(settings, Some(metrics.clone()))
    }

    fn build(
        settings: &RegistrySettings,
        metrics: Option<Metrics>,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        let Some(url) = settings.url.as_deref() else {
            return Ok(None);
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.request_timeout_ms))
            .connect_timeout(Duration::from_millis(settings.request_timeout_ms))
            .build()
            .context("creating the schema registry client")?;
        Ok(Some(Arc::new(Self {
            http,
            base: url.trim_end_matches('/').to_owned(),
            username: settings.username.clone(),
            password: settings.password.clone(),
            attempts: settings.attempts.max(1),
            cache: Mutex::new(Cache::new(settings.cache_size)),
            metrics,
        })))
    }

    fn count(&self, outcome: &str) {
        if let Some(m) = &self.metrics {
            m.registry_lookup(outcome);
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The schema of `id` if it is cached: no I/O.
    pub fn cached(&self, id: u32) -> Option<Arc<Registered>> {
        self.cache.lock().ok()?.get(id)
    }

    /// The schema of `id`, from the cache or the registry.
    pub async fn schema(&self, id: u32) -> Result<Arc<Registered>, LookupError> {
        if let Some(hit) = self.cached(id) {
            return Ok(hit);
        }
        let answer = self
            .exchange(reqwest::Method::GET, &format!("/schemas/ids/{id}"), None)
            .await
            .inspect_err(|_| self.count("unavailable"))?;
        let body = match answer {
            Answer::Ok(body) => body,
            Answer::NotFound(_) => {
                self.count("not_found");
                return Err(LookupError::NotFound(id));
            }
        };
        let registered = match serde_json::from_str::<SchemaById>(&body) {
            Err(e) => {
                self.count("unavailable");
                return Err(RegistryUnavailable(format!(
                    "GET /schemas/ids/{id}: not a schema answer: {e}"
                ))
                .into());
            }
            Ok(s) => match s.schema_type.as_deref() {
                Some("PROTOBUF") => match ProtoSchema::parse(&s.schema) {
                    Ok(p) => Registered::Proto(p),
                    Err(e) => Registered::Unusable(format!("its .proto does not parse: {e}")),
                },
                Some(other) => Registered::Unusable(format!("a {other} schema, not PROTOBUF")),
                // Confluent omits the type for AVRO; some registries omit it for every type.
                None => match ProtoSchema::parse(&s.schema) {
                    Ok(p) => Registered::Proto(p),
                    Err(_) => {
                        Registered::Unusable("an AVRO schema (no schemaType), not PROTOBUF".into())
                    }
                },
            },
        };
        self.count("found");
        let registered = Arc::new(registered);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(id, registered.clone());
        }
        Ok(registered)
    }

    /// Registers `proto` (PROTOBUF) under `subject` and returns its id; registering the same
    /// schema again returns the same id.
    pub async fn register(&self, subject: &str, proto: &str) -> anyhow::Result<u32> {
        let body = serde_json::json!({"schemaType": "PROTOBUF", "schema": proto});
        match self
            .exchange(
                reqwest::Method::POST,
                &format!("/subjects/{subject}/versions"),
                Some(&body),
            )
            .await?
        {
            Answer::Ok(text) => Ok(serde_json::from_str::<IdAnswer>(&text)
                .with_context(|| format!("registering {subject}: unexpected answer"))?
                .id),
            Answer::NotFound(text) => bail!("registering {subject}: 404 {text}"),
        }
    }

    /// The id of `proto` under `subject`, if it is registered there.
    pub async fn lookup(&self, subject: &str, proto: &str) -> anyhow::Result<Option<u32>> {
        let body = serde_json::json!({"schemaType": "PROTOBUF", "schema": proto});
        match self
            .exchange(
                reqwest::Method::POST,
                &format!("/subjects/{subject}"),
                Some(&body),
            )
            .await?
        {
            Answer::Ok(text) => Ok(Some(
                serde_json::from_str::<IdAnswer>(&text)
                    .with_context(|| format!("looking {subject} up: unexpected answer"))?
                    .id,
            )),
            Answer::NotFound(_) => Ok(None),
        }
    }

    /// One request, tried up to `attempts` times while the failure may pass (no answer, a
    /// timeout, 5xx, 429). 404 is an answer, not a failure.
    async fn exchange(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, RegistryUnavailable> {
        let url = format!("{}{path}", self.base);
        let mut last = String::new();
        for attempt in 0..self.attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 * (1 << attempt.min(5)))).await;
            }
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header(reqwest::header::ACCEPT, MEDIA_TYPE);
            if let Some(user) = &self.username {
                request = request.basic_auth(
                    user,
                    self.password.as_ref().map(|p| p.expose_secret().to_owned()),
                );
            }
            if let Some(body) = body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE)
                    .body(body.to_string());
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = format!("{} {path}: {e}", method.as_str());
                    continue;
                }
            };
            let status = response.status();
            let text = match response.text().await {
                Ok(t) => t,
                Err(e) => {
                    last = format!("{} {path}: reading the answer: {e}", method.as_str());
                    continue;
                }
            };
            if status.is_success() {
                return Ok(Answer::Ok(text));
            }
            if status == reqwest::StatusCode::NOT_FOUND {
                return Ok(Answer::NotFound(text));
            }
            let short: String = text.chars().take(200).collect();
            last = format!("{} {path}: HTTP {status}: {short}", method.as_str());
            if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
                // Our request or our credentials are wrong: retrying now will not help, but
                // it is not the message's fault either.
                break;
            }
        }
        tracing::warn!(registry = %self.base, error = %last, "schema registry request failed");
        Err(RegistryUnavailable(last))
    }
}

/// The Confluent subject of a topic's values (TopicNameStrategy).
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> RegistrySettings {
        RegistrySettings {
            url: Some(url.into()),
            username: None,
            password: None,
            request_timeout_ms: 200,
            attempts: 2,
            cache_size: 2,
        }
    }

    #[tokio::test]
    async fn a_registry_that_does_not_answer_is_unavailable_not_unknown() {
        // A port nothing listens on: bind, note the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let registry =
            SchemaRegistry::from_settings(&settings(&format!("http://127.0.0.1:{port}")))
                .expect("client")
                .expect("configured");
        let err = registry.schema(1).await.expect_err("nothing listens");
        assert!(matches!(err, LookupError::Unavailable(_)), "{err}");
        assert!(registry.cached(1).is_none());
    }

    #[test]
    fn the_cache_is_bounded_and_drops_the_oldest_first() {
        let mut cache = Cache::new(2);
        let schema = |n: &str| Arc::new(Registered::Unusable(n.to_owned()));
        cache.insert(1, schema("a"));
        cache.insert(2, schema("b"));
        cache.insert(1, schema("a again"));
        cache.insert(3, schema("c"));
        assert!(cache.get(1).is_none(), "the oldest went first");
        assert!(cache.get(2).is_some() && cache.get(3).is_some());
        assert_eq!(cache.by_id.len(), 2);
        assert_eq!(cache.order.len(), 2);
    }

    #[test]
    fn no_url_no_client() {
        let mut s = settings("http://x");
        s.url = None;
        assert!(SchemaRegistry::from_settings(&s).expect("ok").is_none());
        assert_eq!(value_subject("purchases"), "purchases-value");
    }
}
