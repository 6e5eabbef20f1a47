//! Builds and runs the whole service: consume loop, dispatcher, housekeeping and HTTP server.
//! Tests use the same builder with port 0 and read back the port it got.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::announce::Announcer;
use crate::config::Settings;
use crate::consumer::{ConsumeLoop, OutputConsumer, SeekToStored};
use crate::dispatcher::{Dispatcher, http_client};
use crate::housekeeping::Housekeeping;
use crate::http::{AppState, router};
use crate::metrics::Metrics;

/// A running instance.
#[derive(Debug)]
pub struct Application {
    port: u16,
    stop: CancellationToken,
    consume: JoinHandle<anyhow::Result<()>>,
    dispatch: JoinHandle<anyhow::Result<()>>,
    http: JoinHandle<anyhow::Result<()>>,
    background: CancellationToken,
}

/// Creates `kafka.topics.webhooks` when it does not exist.
async fn ensure_topic(settings: &Settings) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = settings
        .kafka_config()
        .create()
        .context("creating the Kafka admin client")?;
    let topic = NewTopic::new(
        &settings.kafka.topics.webhooks,
        1,
        TopicReplication::Fixed(settings.kafka.replication_factor),
    );
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics([&topic], &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("creating topic {name}: {code}"),
        }
    }
    Ok(())
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let metrics = Metrics::new();
        let pool = kizuna::store::pool(settings.database_url(), settings.database.max_connections)?;
        if settings.database.migrate_on_start {
            kizuna::startup::migrate_with_retry(&pool).await?;
        }
        // Wrong credentials or an untrusted certificate stop start-up here with a message
        // naming them; a broker that does not answer within 15 s too.
        let (config, security) = (
            settings.kafka_config(),
            kizuna::kafka::Security {
                brokers: settings.kafka.brokers.clone(),
                properties: settings.kafka.properties.clone(),
                secret_keys: settings.kafka.secret_properties.keys().cloned().collect(),
            },
        );
        tokio::task::spawn_blocking(move || {
            kizuna::kafka::require_with(config, &security, Duration::from_secs(15))
        })
        .await
        .context("the broker probe panicked")??;
        ensure_topic(&settings).await?;

        let topics: Vec<String> = settings
            .kafka
            .topics
            .consumed()
            .iter()
            .map(|t| (*t).to_owned())
            .collect();
        // The positions that count are in PostgreSQL, with the queue.
        let consumer: OutputConsumer = kizuna::kafka::offsets_in_postgres(
            settings.kafka_config(),
            &settings.kafka.group_id,
            settings.kafka.session_timeout_ms,
        )
        .create_with_context(SeekToStored {
            database_url: SecretString::from(settings.database_url().to_owned()),
            group_id: settings.kafka.group_id.clone(),
            topics: topics.clone(),
        })
        .context("creating the Kafka consumer")?;
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&refs)
            .context("subscribing to the output topics")?;
        let producer: FutureProducer = settings
            .kafka_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "30000")
            .create()
            .context("creating the Kafka producer")?;

        let wake = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let background = CancellationToken::new();
        let consume = ConsumeLoop {
            consumer: Arc::new(consumer),
            pool: pool.clone(),
            group_id: settings.kafka.group_id.clone(),
            metrics: metrics.clone(),
            batch_max: settings.kafka.batch_max_messages,
            linger: Duration::from_millis(settings.kafka.batch_linger_ms),
            queued: wake.clone(),
        };
        let dispatcher = Arc::new(Dispatcher::new(
            pool.clone(),
            http_client(&settings.delivery)?,
            settings.delivery.clone(),
            metrics.clone(),
            Announcer::new(producer, settings.kafka.topics.webhooks.clone()),
            wake.clone(),
        ));
        let housekeeping = Housekeeping {
            pool: pool.clone(),
            metrics: metrics.clone(),
            every: Duration::from_secs(settings.metrics.refresh_secs),
            log_retention_days: settings.delivery.log_retention_days,
        };

        let listener = TcpListener::bind(settings.http.bind)
            .await
            .with_context(|| format!("binding the HTTP server to {}", settings.http.bind))?;
        let port = listener.local_addr()?.port();
        let app = router(AppState {
            pool: pool.clone(),
            metrics: metrics.clone(),
            admin_token: settings.http.admin_token.clone(),
            delivery: settings.delivery.clone(),
            wake: wake.clone(),
        });
        let http_stop = background.clone();
        let http = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { http_stop.cancelled().await })
                .await
                .context("HTTP server failed")
        });
        let consume = tokio::spawn(consume.run(stop.clone()));
        let dispatch = tokio::spawn(dispatcher.run(stop.clone()));
        tokio::spawn(housekeeping.run(background.clone()));
        tracing::info!(port, "kizuna-webhooks started");
        Ok(Self {
            port,
            stop,
            consume,
            dispatch,
            http,
            background,
        })
    }

    /// The port of the admin API, `/metrics` and the probes.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cancelling this token stops the service gracefully.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Runs until stopped: the consume loop and the dispatcher finish (requests in flight get
    /// their answer or time out), then the HTTP server stops.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let consume = self.consume.await.context("consume task panicked")?;
        self.stop.cancel();
        let dispatch = self.dispatch.await.context("dispatcher task panicked")?;
        self.background.cancel();
        let http = self.http.await.context("HTTP task panicked")?;
        consume.and(dispatch).and(http)
    }
}
