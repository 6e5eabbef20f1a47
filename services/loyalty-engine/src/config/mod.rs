//! Configuration in layers: built-in defaults, then an optional TOML file, then `KIZUNA_…`
//! environment variables (`KIZUNA_KAFKA__BROKERS`, `KIZUNA_DATABASE__URL`, …; a double
//! underscore separates section and key). Impossible combinations are refused at start-up.
//!
//! The settings' types are here; `layers` reads them (and serves kizuna-gateway and
//! kizuna-webhooks too), `check` refuses what cannot work, `serialise` prints them with secrets
//! redacted and turns them into `KIZUNA_*` variables.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

pub mod access;
mod check;
mod layers;
mod serialise;
#[cfg(test)]
mod tests;

pub use layers::{load_layers, resolve_secret_file};

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub database: DatabaseSettings,
    pub ingest: IngestSettings,
    pub relay: RelaySettings,
    pub sweep: SweepSettings,
    pub ledger: LedgerSettings,
    pub metrics: MetricsSettings,
    pub http: HttpSettings,
    #[serde(default)]
    pub console: ConsoleSettings,
    #[serde(default)]
    pub privacy: PrivacySettings,
    pub log: LogSettings,
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    pub registry: RegistrySettings,
    pub outputs: OutputsSettings,
    /// Path of the tier programme file (TOML). Unset: the built-in example programme
    /// (`services/loyalty-engine/config/programme.toml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programme_file: Option<PathBuf>,
    /// "wall" (production) or "event-time" (backfills, simulations: the largest event time
    /// seen is "now").
    pub clock: Clock,
}

/// Wall time in production; for backfills and simulations, the largest event time seen, so a
/// replay of last year behaves as it did then (see `engine::clock`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Clock {
    Wall,
    EventTime,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct KafkaSettings {
    /// Bootstrap servers, comma separated.
    pub brokers: String,
    pub group_id: String,
    pub client_id: String,
    pub session_timeout_ms: u64,
    pub topics: Topics,
    /// Partitions per topic when `kizuna topics create` creates them.
    pub partitions: i32,
    pub replication_factor: i32,
    /// Extra librdkafka properties passed through unchanged, e.g. `security.protocol`,
    /// `sasl.mechanism`, `ssl.ca.location`. Secrets among them belong in `secret_properties`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties that hold secrets (e.g. `sasl.password`). Never printed.
    #[serde(default, serialize_with = "serialise::redacted_map")]
    pub secret_properties: BTreeMap<String, SecretString>,
    /// Put before every topic name at load (isolated topics for a demo, a test or a tenant).
    /// The topics above are shown with it.
    #[serde(default, skip_serializing)]
    pub topic_prefix: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Topics {
    pub purchases: String,
    pub support_tickets: String,
    pub surveys: String,
    /// Redemptions (and their cancels) recorded at the till.
    #[serde(default = "default_redemptions_topic")]
    pub redemptions: String,
    pub tier_changed: String,
    pub churn_risk: String,
    pub segment_changed: String,
    /// `PointsChanged` and `PointsWillExpire`.
    #[serde(default = "default_points_topic")]
    pub points: String,
    /// `CustomerErased`, the receipt of an erasure.
    #[serde(default = "default_privacy_topic")]
    pub privacy: String,
    pub dead_letter: String,
}

fn default_redemptions_topic() -> String {
    "redemptions".to_owned()
}

fn default_points_topic() -> String {
    "loyalty.points".to_owned()
}

fn default_privacy_topic() -> String {
    "loyalty.privacy".to_owned()
}

impl Topics {
    pub fn inputs(&self) -> [&str; 4] {
        [
            &self.purchases,
            &self.support_tickets,
            &self.surveys,
            &self.redemptions,
        ]
    }

    /// The topics of the output events (all outputs but the dead letters): the ones framed
    /// and registered in the Schema Registry with `outputs.format = "confluent-protobuf"`.
    pub fn events(&self) -> [&str; 5] {
        [
            &self.tier_changed,
            &self.churn_risk,
            &self.segment_changed,
            &self.points,
            &self.privacy,
        ]
    }

    pub fn outputs(&self) -> [&str; 6] {
        [
            &self.tier_changed,
            &self.churn_risk,
            &self.segment_changed,
            &self.points,
            &self.privacy,
            &self.dead_letter,
        ]
    }

    pub fn outputs_mut(&mut self) -> [&mut String; 6] {
        [
            &mut self.tier_changed,
            &mut self.churn_risk,
            &mut self.segment_changed,
            &mut self.points,
            &mut self.privacy,
            &mut self.dead_letter,
        ]
    }

    /// Puts `prefix` before every topic name (isolated topics for tests and benchmarks).
    pub fn add_prefix(&mut self, prefix: &str) {
        let Self {
            purchases,
            support_tickets,
            surveys,
            redemptions,
            ..
        } = self;
        for topic in [purchases, support_tickets, surveys, redemptions] {
            *topic = format!("{prefix}{topic}");
        }
        for topic in self.outputs_mut() {
            *topic = format!("{prefix}{topic}");
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DatabaseSettings {
    /// e.g. `postgres://kizuna:kizuna@127.0.0.1:5432/kizuna`. Secret: it may hold a password
    /// (shown with the password redacted).
    #[serde(serialize_with = "serialise::redacted_url")]
    pub url: SecretString,
    pub max_connections: u32,
    /// Apply pending migrations when the engine starts.
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct IngestSettings {
    /// A batch closes at this many messages…
    pub batch_max_events: usize,
    /// …or this long after its first message, whichever comes first.
    pub batch_linger_ms: u64,
    /// Messages larger than this go to the dead-letter topic.
    pub max_message_bytes: usize,
    pub max_id_len: usize,
    /// Largest accepted single amount, minor units.
    pub max_amount_minor: i64,
    /// Events dated further than this into the future are refused.
    pub max_future_skew_secs: i64,
    /// Events dated before this are refused (`invalid_timestamp`): an unset timestamp decodes
    /// to 1970. The default, 1980-01-01, accepts any plausible commerce history.
    pub earliest_event_time: chrono::DateTime<chrono::Utc>,
    /// Parallel database writers; each commits the batches of its share of the partitions.
    pub writers: usize,
    /// How long a partition revocation waits for the batch being committed. Unset: a third of
    /// the Kafka session timeout. It must stay under half the session timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_drain_ms: Option<u64>,
    /// Longest free-text field (sku, category, coupon, channel); survey comments may be 16×.
    pub max_text_len: usize,
    /// Most line items in one purchase.
    pub max_line_items: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RelaySettings {
    /// Rows published per round trip.
    pub batch_size: i64,
    /// Fallback poll interval; new rows are normally announced with LISTEN/NOTIFY.
    pub poll_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SweepSettings {
    /// How often the sweeper looks for customers whose next check is due.
    pub interval_ms: u64,
    /// Customers re-evaluated per transaction.
    pub batch_size: i64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LedgerSettings {
    /// Days of events kept in the event ledger (the event-id deduplication, the timeline and
    /// `recompute`'s source). Older rows are pruned by a job, and events older than this are
    /// refused (reason too_old): they could not be deduplicated. The engine judges age against
    /// the wall clock, `kizuna backfill` against its input's newest event time. 0 keeps
    /// everything.
    pub retention_days: u32,
    /// How often the pruning job runs (on one instance at a time).
    pub prune_interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MetricsSettings {
    /// How often consumer lag and the pool gauges are refreshed.
    pub refresh_secs: u64,
    /// How often the population gauges (customers by tier, segment, churn level: a scan of
    /// the customers table) are refreshed.
    pub population_refresh_secs: u64,
    /// How often the churn model version is checked.
    pub model_refresh_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HttpSettings {
    /// Address of `/metrics`, the health probes and the customer API. Port 0 picks a free port.
    pub bind: SocketAddr,
    /// Deprecated: an admin bearer token given in clear, the token named `admin`. Prefer
    /// `tokens`. Like every secret, it may be given as `file:/path`.
    #[serde(default, serialize_with = "serialise::redacted_option")]
    pub admin_token: Option<SecretString>,
    /// Bearer tokens by name (`a-z 0-9 _ -`), each with its role and the token's SHA-256
    /// (`kizuna hash-token`). The name is what the audit records.
    #[serde(default)]
    pub tokens: BTreeMap<String, access::TokenSettings>,
    /// JWTs from an identity provider, checked against its JWKS. Unset: bearer tokens only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<access::JwtSettings>,
    /// Largest request body; a larger one is answered 413.
    pub max_body_bytes: usize,
    /// A request not answered within this is answered 503.
    pub request_timeout_ms: u64,
    /// Requests per minute each caller (by token or JWT name) may make to the admin endpoints;
    /// beyond it (and `admin_burst`) 429 with `Retry-After`. 0: no limit.
    pub admin_requests_per_minute: u32,
    pub admin_burst: u32,
    /// A separate address for `/metrics` and the probes. Unset: they share `bind`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_bind: Option<SocketAddr>,
}

/// The marketer console under `/console/` on the HTTP server (`http.bind`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ConsoleSettings {
    /// Login token of the viewer role (reads every page). Unset: no viewer can log in.
    #[serde(serialize_with = "serialise::redacted_option")]
    pub viewer_token: Option<SecretString>,
    /// Login token of the admin role (also the tier override and the programme what-if).
    /// Unset: no admin can log in. With neither token the console is closed.
    #[serde(serialize_with = "serialise::redacted_option")]
    pub admin_token: Option<SecretString>,
    /// Hours a console session lasts.
    pub session_hours: u32,
    /// Seconds between refreshes of the overview's figures (population counts by tier, grid
    /// cell and churn level, grid moves, alerts, dead letters): one set of queries in the
    /// background, never one per page view.
    pub refresh_secs: u64,
    /// Mark the session cookie `Secure` (set it when the console is served over HTTPS).
    pub secure_cookie: bool,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            viewer_token: None,
            admin_token: None,
            session_hours: 12,
            refresh_secs: 15,
            secure_cookie: false,
        }
    }
}

/// Erasure (`kizuna erase`, `DELETE /v1/customers/{id}`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct PrivacySettings {
    /// Key of the keyed hash (HMAC-SHA256) that stands for an erased customer's id: in the
    /// `CustomerErased` receipt, in the list of erased ids, and in the pseudonyms other
    /// customers' records keep. Share it with subscribers that must erase what they hold.
    /// Unset: a random key is made at the first erasure and kept in the database
    /// (`privacy_keys`); setting it here keeps it out of database backups.
    #[serde(serialize_with = "serialise::redacted_option")]
    pub erasure_key: Option<SecretString>,
    /// What a later event for an erased id does: `refuse` (a dead letter with reason `erased`,
    /// for `refuse_days` after the erasure) or `new-customer` (it starts a new customer).
    pub after_erasure: AfterErasure,
    /// Days after an erasure during which the id's events are refused (`after_erasure =
    /// "refuse"`); after them an event starts a new customer.
    pub refuse_days: u32,
}

impl Default for PrivacySettings {
    fn default() -> Self {
        Self {
            erasure_key: None,
            after_erasure: AfterErasure::Refuse,
            refuse_days: 365,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AfterErasure {
    Refuse,
    NewCustomer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LogSettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive, e.g. `info,kizuna=debug`. `RUST_LOG` overrides it.
    pub level: String,
}

/// OpenTelemetry traces (README, "Traces"): off unless `otlp_endpoint` is set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct TelemetrySettings {
    /// Base URL of an OTLP/HTTP receiver (an OpenTelemetry Collector, Jaeger), e.g.
    /// `http://127.0.0.1:4318`; spans are posted to `<endpoint>/v1/traces` as protobuf. Unset:
    /// no exporter and no spans.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the spans.
    pub service_name: String,
    /// Share of the traces this engine starts that are kept (0 to 1). A span continuing an
    /// input's or a request's `traceparent` follows the producer's sampled flag instead.
    pub sampling_ratio: f64,
    /// Timeout of one export request.
    pub export_timeout_ms: u64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "kizuna-loyalty-engine".to_owned(),
            sampling_ratio: 1.0,
            export_timeout_ms: 10_000,
        }
    }
}

/// A Schema Registry with the Confluent-compatible REST API (Confluent Schema Registry, or
/// Apicurio Registry at `…/apis/ccompat/v7`). It resolves the schema ids of registry-framed
/// input messages, and holds the output schemas when `outputs.format = "confluent-protobuf"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RegistrySettings {
    /// Base URL of the Confluent-compatible API, e.g. `http://127.0.0.1:8081/apis/ccompat/v7`.
    /// Unset: a registry-framed input is dead-lettered (`registry_not_configured`). Credentials
    /// go in `username`/`password`, never in the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// HTTP basic authentication, with `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Secret (may be `file:/path`); never printed.
    #[serde(default, serialize_with = "serialise::redacted_option")]
    pub password: Option<SecretString>,
    /// Timeout of one request to the registry.
    pub request_timeout_ms: u64,
    /// Attempts of one lookup before it counts as a transient failure (the batch then waits
    /// and retries, like a database outage; nothing is dead-lettered for it).
    pub attempts: u32,
    /// Schemas kept by id (they never change under an id); the oldest is dropped beyond this.
    pub cache_size: usize,
}

/// How outputs are published.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OutputsSettings {
    pub format: OutputFormat,
}

/// The payload format of the output topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputFormat {
    /// The protobuf JSON mapping, `content-type: application/json` (the default).
    Json,
    /// Binary protobuf in Confluent's Schema Registry framing (magic byte, schema id of the
    /// subject `<topic>-value`, message indexes), `content-type: application/x-protobuf`.
    ConfluentProtobuf,
}

const DEFAULTS: &str = include_str!("../../config/default.toml");

impl Settings {
    /// The programme named in `programme_file`, or the built-in example programme.
    pub fn load_programme(&self) -> anyhow::Result<crate::domain::programme::Programme> {
        use crate::domain::programme::Programme;
        match &self.programme_file {
            Some(path) => Ok(Programme::load(path)?),
            None => Programme::parse(include_str!("../../config/programme.toml"))
                .map_err(|e| anyhow::anyhow!("built-in programme: {e}")),
        }
    }

    /// Loads defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_from(file, None)
    }

    /// Like `load`, with the `KIZUNA_*` variables taken from `env` instead of the process's
    /// environment when given.
    pub fn load_from(
        file: Option<&Path>,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> anyhow::Result<Self> {
        let mut settings: Settings = load_layers(DEFAULTS, file, "KIZUNA", env, "configuration")?;
        settings.read_secret_files()?;
        let prefix = std::mem::take(&mut settings.kafka.topic_prefix);
        settings.kafka.topics.add_prefix(&prefix);
        settings.check()?;
        Ok(settings)
    }

    /// Secrets may be given as `file:/path` (Kubernetes and Docker secrets): the file's content,
    /// trimmed of trailing newlines, is the secret.
    fn read_secret_files(&mut self) -> anyhow::Result<()> {
        for (key, secret) in self.secrets_mut() {
            resolve_secret_file(&key, secret)?;
        }
        Ok(())
    }

    /// Every secret of the settings, with its key: the one list of them.
    pub(crate) fn secrets_mut(&mut self) -> Vec<(String, &mut SecretString)> {
        let mut out = vec![("database.url".to_owned(), &mut self.database.url)];
        if let Some(token) = self.http.admin_token.as_mut() {
            out.push(("http.admin_token".to_owned(), token));
        }
        if let Some(password) = self.registry.password.as_mut() {
            out.push(("registry.password".to_owned(), password));
        }
        if let Some(token) = self.console.viewer_token.as_mut() {
            out.push(("console.viewer_token".to_owned(), token));
        }
        if let Some(token) = self.console.admin_token.as_mut() {
            out.push(("console.admin_token".to_owned(), token));
        }
        if let Some(key) = self.privacy.erasure_key.as_mut() {
            out.push(("privacy.erasure_key".to_owned(), key));
        }
        for (key, value) in self.kafka.secret_properties.iter_mut() {
            out.push((format!("kafka.secret_properties.{key}"), value));
        }
        out
    }

    /// The ledger retention, if events are ever pruned.
    pub fn ledger_retention(&self) -> Option<chrono::Duration> {
        (self.ledger.retention_days > 0)
            .then(|| chrono::Duration::days(i64::from(self.ledger.retention_days)))
    }

    /// How long a revocation waits for the batch in flight.
    pub fn revoke_drain(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            self.ingest
                .revoke_drain_ms
                .unwrap_or(self.kafka.session_timeout_ms / 3),
        )
    }

    pub fn database_url(&self) -> &str {
        self.database.url.expose_secret()
    }
}
