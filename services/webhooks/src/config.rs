//! Configuration in layers: built-in defaults (`config/default.toml`), then an optional TOML
//! file, then `KIZUNA_WEBHOOKS_…` environment variables (`KIZUNA_WEBHOOKS_DATABASE__URL`, …; a
//! double underscore separates section and key). Impossible combinations are refused at
//! start-up.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use kizuna::config::{LogSettings, load_layers, resolve_secret_file};
use rdkafka::ClientConfig;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub database: DatabaseSettings,
    pub delivery: DeliverySettings,
    pub metrics: MetricsSettings,
    pub http: HttpSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KafkaSettings {
    /// Bootstrap servers, comma separated.
    pub brokers: String,
    pub group_id: String,
    pub client_id: String,
    pub session_timeout_ms: u64,
    pub batch_max_messages: usize,
    pub batch_linger_ms: u64,
    /// Replication factor of `topics.webhooks` when it is created at start-up.
    pub replication_factor: i32,
    pub topics: Topics,
    /// Extra librdkafka properties passed through unchanged (`security.protocol`, …).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties that hold secrets (e.g. `sasl.password`). Never printed.
    #[serde(default)]
    pub secret_properties: BTreeMap<String, SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Topics {
    pub tier_changed: String,
    pub churn_risk: String,
    pub segment_changed: String,
    /// `PointsChanged` and `PointsWillExpire` (the engine's `kafka.topics.points`).
    #[serde(default = "default_points_topic")]
    pub points: String,
    /// `CustomerErased`, the receipts of erasures (the engine's `kafka.topics.privacy`).
    #[serde(default = "default_privacy_topic")]
    pub privacy: String,
    /// This service's own events (`WebhookSubscriptionDisabled`).
    pub webhooks: String,
}

impl Topics {
    /// The engine's output topics this service consumes.
    pub fn consumed(&self) -> [&str; 5] {
        [
            &self.tier_changed,
            &self.churn_risk,
            &self.segment_changed,
            &self.points,
            &self.privacy,
        ]
    }
}

fn default_points_topic() -> String {
    "loyalty.points".to_owned()
}

fn default_privacy_topic() -> String {
    "loyalty.privacy".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub max_connections: u32,
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeliverySettings {
    pub request_timeout_ms: u64,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub retry_period_secs: u64,
    pub disable_after_secs: u64,
    pub disable_min_failures: u32,
    pub max_in_flight: usize,
    pub max_in_flight_per_subscription: usize,
    pub poll_interval_ms: u64,
    pub rotation_grace_secs: u64,
    pub log_retention_days: u32,
    pub allow_private_networks: bool,
}

impl DeliverySettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn retry_period(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.retry_period_secs).unwrap_or(i64::MAX / 2))
    }

    pub fn disable_after(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.disable_after_secs).unwrap_or(i64::MAX / 2))
    }

    pub fn rotation_grace(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.rotation_grace_secs).unwrap_or(i64::MAX / 2))
    }

    /// How long a claimed delivery stays claimed: the request's time limit and a margin. An
    /// instance that dies mid-request leaves the claim to expire, and the event is tried again.
    pub fn lease(&self) -> Duration {
        self.request_timeout() + Duration::from_secs(30)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct MetricsSettings {
    pub refresh_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    pub bind: SocketAddr,
    #[serde(default)]
    pub admin_token: Option<SecretString>,
}

const DEFAULTS: &str = include_str!("../config/default.toml");

impl Settings {
    /// Loads defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut settings: Settings =
            load_layers(DEFAULTS, file, "KIZUNA_WEBHOOKS", None, "configuration")?;
        settings.read_secret_files()?;
        settings.check()?;
        Ok(settings)
    }

    /// Secrets may be given as `file:/path`: the file's content, trimmed of trailing newlines.
    fn read_secret_files(&mut self) -> anyhow::Result<()> {
        resolve_secret_file("database.url", &mut self.database.url)?;
        if let Some(token) = self.http.admin_token.as_mut() {
            resolve_secret_file("http.admin_token", token)?;
        }
        for (key, value) in self.kafka.secret_properties.iter_mut() {
            resolve_secret_file(&format!("kafka.secret_properties.{key}"), value)?;
        }
        Ok(())
    }

    /// Refuses combinations that cannot work.
    pub fn check(&self) -> anyhow::Result<()> {
        let d = &self.delivery;
        if d.request_timeout_ms == 0 {
            bail!("delivery.request_timeout_ms must be positive");
        }
        if d.backoff_initial_ms == 0 || d.backoff_max_ms < d.backoff_initial_ms {
            bail!(
                "delivery.backoff_initial_ms must be positive and at most delivery.backoff_max_ms"
            );
        }
        if d.retry_period_secs == 0 {
            bail!("delivery.retry_period_secs must be positive");
        }
        if d.max_in_flight == 0 || d.max_in_flight_per_subscription == 0 {
            bail!("delivery.max_in_flight and max_in_flight_per_subscription must be positive");
        }
        if d.max_in_flight_per_subscription > d.max_in_flight {
            bail!(
                "delivery.max_in_flight_per_subscription ({}) cannot exceed delivery.max_in_flight ({})",
                d.max_in_flight_per_subscription,
                d.max_in_flight
            );
        }
        if d.max_in_flight_per_subscription == d.max_in_flight && d.max_in_flight > 1 {
            bail!(
                "delivery.max_in_flight_per_subscription must stay below delivery.max_in_flight, or one hanging receiver can hold every request slot"
            );
        }
        if d.poll_interval_ms == 0 || self.metrics.refresh_secs == 0 {
            bail!("delivery.poll_interval_ms and metrics.refresh_secs must be positive");
        }
        if self.kafka.batch_max_messages == 0 {
            bail!("kafka.batch_max_messages must be at least 1");
        }
        if self.kafka.batch_linger_ms * 2 >= self.kafka.session_timeout_ms {
            bail!(
                "kafka.batch_linger_ms ({}) must stay well under kafka.session_timeout_ms ({})",
                self.kafka.batch_linger_ms,
                self.kafka.session_timeout_ms
            );
        }
        let consumed = self.kafka.topics.consumed();
        if consumed.contains(&self.kafka.topics.webhooks.as_str()) {
            bail!("kafka.topics.webhooks cannot be one of the consumed output topics");
        }
        Ok(())
    }

    pub fn database_url(&self) -> &str {
        self.database.url.expose_secret()
    }

    /// Settings every Kafka client shares: brokers, client id, pass-through properties.
    pub fn kafka_config(&self) -> ClientConfig {
        let k = &self.kafka;
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &k.brokers)
            .set("client.id", &k.client_id)
            .set("log_level", "4");
        for (key, value) in &k.properties {
            config.set(key, value);
        }
        for (key, value) in &k.secret_properties {
            config.set(key, value.expose_secret());
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_pass_their_own_checks() {
        let s = Settings::load(None).expect("defaults are valid");
        assert_eq!(s.delivery.retry_period_secs, 86_400);
        assert_eq!(s.kafka.topics.consumed()[0], "loyalty.tier-changed");
    }

    #[test]
    fn one_subscription_may_not_take_every_request_slot() {
        let mut s = Settings::load(None).expect("defaults are valid");
        s.delivery.max_in_flight_per_subscription = s.delivery.max_in_flight;
        let err = s.check().expect_err("refused").to_string();
        assert!(err.contains("hanging receiver"), "{err}");
    }

    #[test]
    fn secrets_do_not_print() {
        let mut s = Settings::load(None).expect("defaults are valid");
        s.http.admin_token = Some(SecretString::from("hunter2"));
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
