//! Configuration in layers: built-in defaults, then an optional TOML file, then `KIZUNA_…`
//! environment variables (`KIZUNA_KAFKA__BROKERS`, `KIZUNA_DATABASE__URL`, …; a double
//! underscore separates section and key). Impossible combinations are refused at start-up.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

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
    pub log: LogSettings,
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
    #[serde(default, serialize_with = "redacted_map")]
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
    pub tier_changed: String,
    pub churn_risk: String,
    pub segment_changed: String,
    pub dead_letter: String,
}

impl Topics {
    pub fn inputs(&self) -> [&str; 3] {
        [&self.purchases, &self.support_tickets, &self.surveys]
    }

    pub fn outputs(&self) -> [&str; 4] {
        [
            &self.tier_changed,
            &self.churn_risk,
            &self.segment_changed,
            &self.dead_letter,
        ]
    }

    pub fn outputs_mut(&mut self) -> [&mut String; 4] {
        [
            &mut self.tier_changed,
            &mut self.churn_risk,
            &mut self.segment_changed,
            &mut self.dead_letter,
        ]
    }

    /// Puts `prefix` before every topic name (isolated topics for tests and benchmarks).
    pub fn add_prefix(&mut self, prefix: &str) {
        let Self {
            purchases,
            support_tickets,
            surveys,
            ..
        } = self;
        for topic in [purchases, support_tickets, surveys] {
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
    #[serde(serialize_with = "redacted_url")]
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
    /// refused (reason too_old): they could not be deduplicated. 0 keeps everything.
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
    /// Bearer token of the admin endpoints (manual tier override, recompute). Unset: they are
    /// disabled. Like every secret, it may be given as `file:/path`.
    #[serde(default, serialize_with = "redacted_option")]
    pub admin_token: Option<SecretString>,
    /// A separate address for `/metrics` and the probes. Unset: they share `bind`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_bind: Option<SocketAddr>,
}

/// The marketer console under `/console/` on the HTTP server (`http.bind`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ConsoleSettings {
    /// Login token of the viewer role (reads every page). Unset: no viewer can log in.
    #[serde(serialize_with = "redacted_option")]
    pub viewer_token: Option<SecretString>,
    /// Login token of the admin role (also the tier override and the programme what-if).
    /// Unset: no admin can log in. With neither token the console is closed.
    #[serde(serialize_with = "redacted_option")]
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
    #[serde(default, serialize_with = "redacted_option")]
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

const DEFAULTS: &str = include_str!("../config/default.toml");

impl Settings {
    /// The programme named in `programme_file`, or the built-in example programme.
    pub fn load_programme(&self) -> anyhow::Result<crate::domain::programme::Programme> {
        use crate::domain::programme::Programme;
        match &self.programme_file {
            Some(path) => Ok(Programme::load(path)?),
            None => Programme::parse(include_str!("../config/programme.toml"))
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
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(path) = file {
            if !path.exists() {
                bail!("config file {} does not exist", path.display());
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("KIZUNA")
                .prefix_separator("_")
                .separator("__")
                .source(env),
        );
        let mut settings: Settings = builder
            .build()
            .context("reading configuration")?
            .try_deserialize()
            .context("configuration is not valid")?;
        settings.read_secret_files()?;
        let prefix = std::mem::take(&mut settings.kafka.topic_prefix);
        settings.kafka.topics.add_prefix(&prefix);
        settings.check()?;
        Ok(settings)
    }

    /// Secrets may be given as `file:/path` (Kubernetes and Docker secrets): the file's content,
    /// trimmed of trailing newlines, is the secret.
    fn read_secret_files(&mut self) -> anyhow::Result<()> {
        fn resolve(what: &str, secret: &mut SecretString) -> anyhow::Result<()> {
            if let Some(path) = secret.expose_secret().strip_prefix("file:") {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the secret file of {what} ({path})"))?;
                *secret = SecretString::from(text.trim_end_matches(['\n', '\r']).to_owned());
            }
            Ok(())
        }
        for (key, secret) in self.secrets_mut() {
            resolve(&key, secret)?;
        }
        Ok(())
    }

    /// Every secret of the settings, with its key: the one list of them.
    fn secrets_mut(&mut self) -> Vec<(String, &mut SecretString)> {
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
        for (key, value) in self.kafka.secret_properties.iter_mut() {
            out.push((format!("kafka.secret_properties.{key}"), value));
        }
        out
    }

    /// Refuses combinations that cannot work.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.ingest.writers == 0 || self.ingest.writers > 16 {
            bail!("ingest.writers must be between 1 and 16");
        }
        if self.ingest.batch_max_events == 0 {
            bail!("ingest.batch_max_events must be at least 1");
        }
        let session = self.kafka.session_timeout_ms;
        if self.ingest.batch_linger_ms * 2 >= session {
            bail!(
                "ingest.batch_linger_ms ({}) must stay well under kafka.session_timeout_ms ({session}) so a rebalance can finish the in-flight batch in time",
                self.ingest.batch_linger_ms
            );
        }
        if let Some(drain) = self.ingest.revoke_drain_ms
            && drain * 2 >= session
        {
            bail!(
                "ingest.revoke_drain_ms ({drain}) must stay under half of kafka.session_timeout_ms ({session}): a rebalance must finish before the session expires"
            );
        }
        let inputs = self.kafka.topics.inputs();
        for out in self.kafka.topics.outputs() {
            if inputs.contains(&out) {
                bail!("topic {out:?} is configured as both an input and an output");
            }
        }
        if self.kafka.partitions < 1 {
            bail!("kafka.partitions must be at least 1");
        }
        if self.ledger.prune_interval_secs == 0 {
            bail!("ledger.prune_interval_secs must be positive");
        }
        if self.metrics.refresh_secs == 0
            || self.metrics.population_refresh_secs == 0
            || self.metrics.model_refresh_secs == 0
        {
            bail!(
                "metrics.refresh_secs, population_refresh_secs and model_refresh_secs must be positive"
            );
        }
        if self.sweep.batch_size < 1 || self.sweep.interval_ms == 0 {
            bail!("sweep.batch_size and sweep.interval_ms must be positive");
        }
        if self.console.refresh_secs == 0 || self.console.session_hours == 0 {
            bail!("console.refresh_secs and console.session_hours must be positive");
        }
        if let (Some(v), Some(a)) = (&self.console.viewer_token, &self.console.admin_token)
            && v.expose_secret() == a.expose_secret()
        {
            bail!("console.viewer_token and console.admin_token must differ");
        }
        if self.relay.batch_size < 1 {
            bail!("relay.batch_size must be at least 1");
        }
        self.check_registry()
    }

    fn check_registry(&self) -> anyhow::Result<()> {
        let r = &self.registry;
        if let Some(url) = &r.url {
            let Some((scheme, rest)) = url.split_once("://") else {
                bail!("registry.url {url:?} is not an http(s) URL");
            };
            if !matches!(scheme, "http" | "https") || rest.is_empty() {
                bail!("registry.url {url:?} is not an http(s) URL");
            }
            if rest
                .split('/')
                .next()
                .is_some_and(|host| host.contains('@'))
            {
                bail!(
                    "registry.url must not carry credentials; set registry.username and registry.password"
                );
            }
        }
        if r.password.is_some() != r.username.is_some() {
            bail!("registry.username and registry.password go together");
        }
        if r.request_timeout_ms == 0 || r.attempts == 0 || r.cache_size == 0 {
            bail!("registry.request_timeout_ms, attempts and cache_size must be positive");
        }
        if self.outputs.format == OutputFormat::ConfluentProtobuf && r.url.is_none() {
            bail!("outputs.format = \"confluent-protobuf\" needs registry.url");
        }
        Ok(())
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

    /// The configuration as TOML, every secret redacted (`kizuna config`).
    pub fn redacted_toml(&self) -> anyhow::Result<String> {
        toml::to_string_pretty(self).context("printing the configuration")
    }

    /// The `KIZUNA_*` environment variables that configure an engine exactly like these
    /// settings (secrets included: for child processes, never for printing). Tests and the
    /// bench start engines with them. librdkafka properties (`kafka.properties`,
    /// `kafka.secret_properties`) have dots in their names, which environment keys cannot
    /// carry: settings with any are refused here (give them in a file).
    pub fn to_env(&self) -> anyhow::Result<Vec<(String, String)>> {
        if !self.kafka.properties.is_empty() || !self.kafka.secret_properties.is_empty() {
            bail!(
                "kafka.properties and kafka.secret_properties cannot be passed as environment variables; use a config file"
            );
        }
        let mut value = toml::Value::try_from(self).context("serialising the settings")?;
        if let Some(kafka) = value.get_mut("kafka").and_then(toml::Value::as_table_mut) {
            kafka.remove("properties");
            kafka.remove("secret_properties");
        }
        let mut out = Vec::new();
        flatten("KIZUNA_", &value, &mut out);
        let mut exposed = self.clone();
        for (key, secret) in exposed.secrets_mut() {
            let name = format!("KIZUNA_{}", key.replace('.', "__").to_uppercase());
            let secret = secret.expose_secret().to_owned();
            match out.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = secret,
                None => out.push((name, secret)),
            }
        }
        Ok(out)
    }
}

/// `KIZUNA_SECTION__KEY=value` for every leaf of `value`.
fn flatten(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(table) => {
            for (key, v) in table {
                let sep = if prefix.ends_with('_') { "" } else { "__" };
                flatten(&format!("{prefix}{sep}{}", key.to_uppercase()), v, out);
            }
        }
        toml::Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

fn redacted_url<S: serde::Serializer>(url: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(url.expose_secret()))
}

fn redacted_option<S: serde::Serializer>(
    secret: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => s.serialize_str("<redacted>"),
        None => s.serialize_none(),
    }
}

fn redacted_map<S: serde::Serializer>(
    map: &BTreeMap<String, SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(map.len()))?;
    for key in map.keys() {
        m.serialize_entry(key, "<redacted>")?;
    }
    m.end()
}

/// Replaces the password of a `scheme://user:password@host/…` URL.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<redacted>".into();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:<redacted>@{host}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_pass_their_own_checks() {
        let s = Settings::load(None).expect("defaults are valid");
        assert_eq!(s.kafka.topics.purchases, "purchases");
        assert!(s.ingest.batch_max_events > 1);
    }

    #[test]
    fn dump_redacts_secrets() {
        let mut s = Settings::load(None).expect("defaults are valid");
        s.database.url = SecretString::from("postgres://kizuna:hunter2@db:5432/kizuna");
        s.kafka
            .secret_properties
            .insert("sasl.password".into(), SecretString::from("s3cr3t"));
        s.console.viewer_token = Some(SecretString::from("viewer-t0ken"));
        s.console.admin_token = Some(SecretString::from("admin-t0ken"));
        let dump = s.redacted_toml().expect("printable");
        assert!(!dump.contains("hunter2"), "{dump}");
        assert!(!dump.contains("viewer-t0ken"), "{dump}");
        assert!(!dump.contains("admin-t0ken"), "{dump}");
        assert!(!dump.contains("s3cr3t"), "{dump}");
        assert!(
            dump.contains("postgres://kizuna:<redacted>@db:5432/kizuna"),
            "{dump}"
        );
        assert!(dump.contains("sasl.password"), "{dump}");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn secrets_can_come_from_files() {
        let dir = std::env::temp_dir().join(format!("kizuna-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("db_url");
        std::fs::write(&file, "postgres://app:from-a-file@db/kizuna\n").expect("write secret");
        let mut s = Settings::load(None).expect("defaults are valid");
        s.database.url = SecretString::from(format!("file:{}", file.display()));
        s.read_secret_files().expect("readable");
        assert_eq!(s.database_url(), "postgres://app:from-a-file@db/kizuna");
        assert!(
            !s.redacted_toml()
                .expect("printable")
                .contains("from-a-file")
        );
        s.http.admin_token = Some(SecretString::from("file:/nonexistent/token".to_owned()));
        let err = s.read_secret_files().expect_err("missing file").to_string();
        assert!(err.contains("http.admin_token"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn settings_round_trip_through_the_environment_and_print_every_key() {
        let mut s = Settings::load(None).expect("defaults are valid");
        s.kafka.brokers = "broker-a:9092,broker-b:9092".into();
        s.kafka.topics.add_prefix("t1.");
        s.database.url = SecretString::from("postgres://app:pw@db:5432/kizuna");
        s.http.admin_token = Some(SecretString::from("token-1".to_owned()));
        s.ingest.revoke_drain_ms = Some(1_000);
        s.ingest.writers = 3;
        s.clock = Clock::EventTime;
        s.log.format = LogFormat::Json;
        s.http.metrics_bind = Some("127.0.0.1:9100".parse().expect("address"));
        s.registry.url = Some("http://registry:8081/apis/ccompat/v7".into());
        s.registry.username = Some("kizuna".into());
        s.registry.password = Some(SecretString::from("registry-pw".to_owned()));
        s.registry.cache_size = 17;
        s.outputs.format = OutputFormat::ConfluentProtobuf;
        let env: std::collections::HashMap<String, String> =
            s.to_env().expect("to env").into_iter().collect();
        assert_eq!(env["KIZUNA_KAFKA__TOPICS__PURCHASES"], "t1.purchases");
        assert_eq!(env["KIZUNA_HTTP__ADMIN_TOKEN"], "token-1");
        assert_eq!(env["KIZUNA_REGISTRY__PASSWORD"], "registry-pw");
        assert_eq!(env["KIZUNA_OUTPUTS__FORMAT"], "confluent-protobuf");
        let back = Settings::load_from(None, Some(env)).expect("loads back");
        let printed = |s: &Settings| s.redacted_toml().expect("printable");
        assert_eq!(printed(&back), printed(&s));
        assert_eq!(back.database_url(), "postgres://app:pw@db:5432/kizuna");
        assert_eq!(
            back.http
                .admin_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
            Some("token-1".to_owned())
        );
        // Every key of the defaults file is printed by `kizuna config`: the printout is the
        // settings' own serialisation, so it cannot miss one.
        let defaults: toml::Table = DEFAULTS.parse().expect("defaults parse");
        let shown: toml::Table = printed(&s).parse().expect("printout parses");
        for (section, keys) in &defaults {
            if let toml::Value::Table(keys) = keys {
                for key in keys.keys() {
                    assert!(
                        shown.get(section).and_then(|t| t.get(key)).is_some(),
                        "kizuna config misses {section}.{key}"
                    );
                }
            }
        }
        assert!(printed(&s).contains("revoke_drain_ms = 1000"));
        assert!(!printed(&s).contains("registry-pw"));
        assert_eq!(
            back.registry
                .password
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
            Some("registry-pw".to_owned())
        );
    }

    #[test]
    fn registry_settings_that_cannot_work_are_refused() {
        let mut s = Settings::load(None).expect("defaults are valid");
        s.outputs.format = OutputFormat::ConfluentProtobuf;
        let err = s.check().expect_err("no registry").to_string();
        assert!(err.contains("registry.url"), "{err}");
        s.registry.url = Some("http://user:pw@registry:8081".into());
        let err = s.check().expect_err("credentials in the url").to_string();
        assert!(err.contains("registry.username"), "{err}");
        s.registry.url = Some("registry:8081".into());
        assert!(s.check().is_err());
        s.registry.url = Some("https://registry.example.com/apis/ccompat/v7".into());
        assert!(s.check().is_ok());
        s.registry.username = Some("kizuna".into());
        assert!(s.check().is_err(), "a username without a password");
    }

    #[test]
    fn a_topic_prefix_applies_to_every_topic() {
        let env = std::collections::HashMap::from([(
            "KIZUNA_KAFKA__TOPIC_PREFIX".to_owned(),
            "demo-1.".to_owned(),
        )]);
        let s = Settings::load_from(None, Some(env)).expect("loads");
        let t = &s.kafka.topics;
        for topic in t.inputs().into_iter().chain(t.outputs()) {
            assert!(topic.starts_with("demo-1."), "{topic}");
        }
    }

    #[test]
    fn linger_longer_than_the_session_is_refused() {
        let mut s = Settings::load(None).expect("defaults are valid");
        s.ingest.batch_linger_ms = s.kafka.session_timeout_ms;
        let err = s.check().expect_err("must be refused").to_string();
        assert!(err.contains("session_timeout_ms"), "{err}");
    }

    #[test]
    fn a_revoke_drain_beyond_half_the_session_is_refused() {
        let mut s = Settings::load(None).expect("defaults are valid");
        s.ingest.revoke_drain_ms = Some(s.kafka.session_timeout_ms / 2);
        let err = s.check().expect_err("must be refused").to_string();
        assert!(err.contains("revoke_drain_ms"), "{err}");
        s.ingest.revoke_drain_ms = None;
        assert!(s.check().is_ok());
        assert_eq!(
            s.revoke_drain().as_millis() as u64,
            s.kafka.session_timeout_ms / 3
        );
    }

    #[test]
    fn an_input_topic_cannot_be_an_output() {
        let mut s = Settings::load(None).expect("defaults are valid");
        s.kafka.topics.dead_letter = s.kafka.topics.purchases.clone();
        assert!(s.check().is_err());
    }
}
