//! The secured Apache Kafka of the local stack: a second instance with a SASL_SSL listener
//! (SCRAM-SHA-512 users created at format time, a TLS certificate signed by a CA of its own),
//! started by `deploy/local/kafka-secure.sh` on 127.0.0.1:9096. The plain brokers are not
//! touched.
//!
//! [`SecuredKafka::start`] runs the script (idempotent: a running instance is reused; the first
//! start makes the CA, the certificate and the credentials) and reads the connection settings it
//! prints; [`SecuredKafka::apply`] puts them into the engine's Kafka settings, the way an
//! operator writes them in the configuration file.

use std::path::PathBuf;

use anyhow::Context;
use kizuna::config::KafkaSettings;
use secrecy::SecretString;

/// The connection settings `kafka-secure.sh` prints.
#[derive(Debug, Clone)]
pub struct SecuredKafka {
    /// `127.0.0.1:9096`
    pub bootstrap: String,
    /// `SCRAM-SHA-512`
    pub mechanism: String,
    /// The CA that signed the broker's certificate (PEM).
    pub ca: PathBuf,
    pub user: String,
    pub password: String,
}

/// The instance started by this test process, once: tests running in parallel share it.
static STARTED: std::sync::Mutex<Option<SecuredKafka>> = std::sync::Mutex::new(None);

impl SecuredKafka {
    /// Starts the secured instance (or finds it running) and returns its settings.
    pub async fn start() -> anyhow::Result<Self> {
        tokio::task::spawn_blocking(Self::start_blocking)
            .await
            .context("starting the secured Kafka panicked")?
    }

    fn start_blocking() -> anyhow::Result<Self> {
        let mut started = STARTED
            .lock()
            .map_err(|_| anyhow::anyhow!("a test panicked while starting the secured Kafka"))?;
        if let Some(s) = started.as_ref() {
            return Ok(s.clone());
        }
        let printed = crate::stack_script("kafka-secure.sh", "start")?;
        let get = |key: &str| {
            printed
                .get(key)
                .cloned()
                .with_context(|| format!("kafka-secure.sh start printed no {key}"))
        };
        let secured = Self {
            bootstrap: get("KIZUNA_SECURE_KAFKA")?,
            mechanism: get("KIZUNA_SECURE_KAFKA_MECHANISM")?,
            ca: PathBuf::from(get("KIZUNA_SECURE_KAFKA_CA")?),
            user: get("KIZUNA_SECURE_KAFKA_USER")?,
            password: get("KIZUNA_SECURE_KAFKA_PASSWORD")?,
        };
        *started = Some(secured.clone());
        Ok(secured)
    }

    /// The librdkafka properties an operator sets for this broker (all but the password).
    pub fn properties(&self) -> Vec<(String, String)> {
        [
            ("security.protocol", "SASL_SSL".to_owned()),
            ("sasl.mechanism", self.mechanism.clone()),
            ("sasl.username", self.user.clone()),
            ("ssl.ca.location", self.ca.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Points `kafka` at this broker with its credentials.
    pub fn apply(&self, kafka: &mut KafkaSettings) {
        kafka.brokers = self.bootstrap.clone();
        kafka.properties.extend(self.properties());
        kafka.secret_properties.insert(
            "sasl.password".into(),
            SecretString::from(self.password.clone()),
        );
    }
}
