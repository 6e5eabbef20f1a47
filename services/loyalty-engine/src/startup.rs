//! Builds and runs the whole application: ingest loop, outbox relay and HTTP server. Tests use
//! the same builder with port 0 and read back the port it got.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::Consumer;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::domain::programme::Programme;
use crate::gauges::Gauges;
use crate::health::Health;
use crate::http::{AppState, metrics_only, router};
use crate::ingest::batch::Processor;
use crate::ingest::consumer::{IngestConsumer, IngestLoop};
use crate::ingest::ownership::Ownership;
use crate::ingest::rebalance::IngestContext;
use crate::ingest::validate::Limits;
use crate::metrics::Metrics;
use crate::model_cache::ModelCache;
use crate::pruner::Pruner;
use crate::relay::Relay;
use crate::sweeper::Sweeper;
use crate::{kafka, store};

/// A running Kizuna instance.
#[derive(Debug)]
pub struct Application {
    port: u16,
    metrics_port: u16,
    stop: CancellationToken,
    ingest: JoinHandle<anyhow::Result<()>>,
    relay: JoinHandle<anyhow::Result<()>>,
    sweeper: JoinHandle<anyhow::Result<()>>,
    http: JoinHandle<anyhow::Result<()>>,
    background: CancellationToken,
}

/// Loads the programme named in the settings, or the built-in example programme.
pub fn load_programme(settings: &Settings) -> anyhow::Result<Programme> {
    match &settings.programme_file {
        Some(path) => Ok(Programme::load(path)?),
        None => Programme::parse(include_str!("../config/programme.toml"))
            .map_err(|e| anyhow::anyhow!("built-in programme: {e}")),
    }
}

/// The input bounds from the settings and the programme currency.
pub fn limits(settings: &Settings, programme: &Programme) -> Limits {
    Limits {
        max_id_len: settings.ingest.max_id_len,
        max_amount_minor: settings.ingest.max_amount_minor,
        max_future_skew: chrono::Duration::seconds(settings.ingest.max_future_skew_secs),
        currency: programme.currency,
        max_text_len: settings.ingest.max_text_len,
        max_line_items: settings.ingest.max_line_items,
        max_age: settings.ledger_retention(),
    }
}

/// Waits for the database at start-up, so a stack that is still starting is not an error.
async fn migrate_with_retry(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match store::migrate(pool).await {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "database not ready; retrying migrations"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let programme = Arc::new(load_programme(&settings)?);
        let metrics = Metrics::new();
        let model = ModelCache::default();
        let health = Health::default();
        let pool = store::pool(settings.database_url(), settings.database.max_connections)?;
        if settings.database.migrate_on_start {
            migrate_with_retry(&pool).await?;
        }

        let kafka_settings = settings.kafka.clone();
        let partitions =
            tokio::task::spawn_blocking(move || kafka::check_input_partitions(&kafka_settings))
                .await
                .context("partition check panicked")??;

        let ownership = Ownership::default();
        let inputs: Vec<String> = settings
            .kafka
            .topics
            .inputs()
            .iter()
            .map(|t| (*t).to_owned())
            .collect();
        let context = IngestContext {
            ownership: ownership.clone(),
            in_flight: Default::default(),
            high_watermarks: Default::default(),
            revoke_drain: settings.revoke_drain(),
            database_url: SecretString::from(settings.database_url().to_owned()),
            group_id: settings.kafka.group_id.clone(),
            topics: inputs.clone(),
            metrics: metrics.clone(),
        };
        let consumer: IngestConsumer = kafka::base_config(&settings.kafka)
            .set("group.id", &settings.kafka.group_id)
            // The positions that count are in PostgreSQL; Kafka gets a copy at most once a
            // second (see `IngestLoop::commit_to_kafka`) for lag tools.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                settings.kafka.session_timeout_ms.to_string(),
            )
            .set("partition.assignment.strategy", "range")
            // Bound the prefetch (librdkafka's defaults: a 64 MiB queue, 50 MiB fetches):
            // queued messages pin the whole fetch response they came in, so smaller fetches
            // keep memory flat when a backlog builds up.
            .set("queued.max.messages.kbytes", "16384")
            .set("fetch.max.bytes", "4194304")
            .set("max.partition.fetch.bytes", "524288")
            .set(
                "statistics.interval.ms",
                (settings.metrics.refresh_secs * 1000).to_string(),
            )
            .create_with_context(context)
            .context("creating the Kafka consumer")?;
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        consumer
            .subscribe(&refs)
            .context("subscribing to the input topics")?;

        let limits = limits(&settings, &programme);
        let processor = Processor {
            pool: pool.clone(),
            group_id: settings.kafka.group_id.clone(),
            topics: settings.kafka.topics.clone(),
            programme: programme.clone(),
            metrics: metrics.clone(),
            clock: settings.clock,
            model: model.clone(),
            publish: true,
            partitions,
        };
        let stop = CancellationToken::new();
        let background = CancellationToken::new();
        let consumer = Arc::new(consumer);
        let gauges = Gauges {
            pool: pool.clone(),
            metrics: metrics.clone(),
            group_id: settings.kafka.group_id.clone(),
            every: Duration::from_secs(settings.metrics.refresh_secs),
            populations_every: Duration::from_secs(settings.metrics.population_refresh_secs),
        };
        tokio::spawn(gauges.run(consumer.clone(), background.clone()));
        let ingest = IngestLoop {
            consumer,
            processor,
            settings: settings.ingest.clone(),
            limits: limits.clone(),
            kinds: IngestLoop::kinds(&settings.kafka.topics),
            health: health.clone(),
            mirror: Default::default(),
        };
        let sweeper = Sweeper {
            pool: pool.clone(),
            ownership: ownership.clone(),
            programme: programme.clone(),
            topics: settings.kafka.topics.clone(),
            group_id: settings.kafka.group_id.clone(),
            clock: settings.clock,
            metrics: metrics.clone(),
            settings: settings.sweep.clone(),
            model: model.clone(),
        };
        let relay = Relay {
            pool: pool.clone(),
            producer: kafka::producer(&settings.kafka)?,
            kafka: settings.kafka.clone(),
            ownership,
            settings: settings.relay.clone(),
            metrics: metrics.clone(),
        };

        let listener = TcpListener::bind(settings.http.bind)
            .await
            .with_context(|| format!("binding the HTTP server to {}", settings.http.bind))?;
        let port = listener.local_addr()?.port();
        let metrics_listener = match settings.http.metrics_bind {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the metrics server to {addr}"))?,
            ),
            None => None,
        };
        let metrics_port = match &metrics_listener {
            Some(l) => l.local_addr()?.port(),
            None => port,
        };
        let app_state = AppState {
            pool: pool.clone(),
            metrics: metrics.clone(),
            health,
            programme: programme.clone(),
            topics: settings.kafka.topics.clone(),
            group_id: settings.kafka.group_id.clone(),
            clock: settings.clock,
            limits: limits.clone(),
            admin_token: settings.http.admin_token.clone(),
            model: model.clone(),
            recompute: Default::default(),
        };
        if let Some(l) = metrics_listener {
            let app = metrics_only(app_state.clone());
            let stop_metrics = background.clone();
            tokio::spawn(async move {
                axum::serve(l, app)
                    .with_graceful_shutdown(async move { stop_metrics.cancelled().await })
                    .await
            });
        }
        let app = router(app_state, settings.http.metrics_bind.is_none());

        let http_stop = background.clone();
        let http = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { http_stop.cancelled().await })
                .await
                .context("HTTP server failed")
        });
        let ingest = tokio::spawn(ingest.run(stop.clone()));
        let relay = tokio::spawn(relay.run(background.clone()));
        let sweeper = tokio::spawn(sweeper.run(stop.clone()));
        if let Err(e) = model.refresh(&pool, &metrics).await {
            tracing::warn!(error = format!("{e:#}"), "no churn model loaded yet");
        }
        if let Some(retention) = settings.ledger_retention() {
            let pruner = Pruner {
                pool: pool.clone(),
                retention,
                every: Duration::from_secs(settings.ledger.prune_interval_secs),
                metrics: metrics.clone(),
            };
            tokio::spawn(pruner.run(background.clone()));
        }
        tokio::spawn(model.run(
            pool.clone(),
            metrics.clone(),
            Duration::from_secs(settings.metrics.model_refresh_secs),
            background.clone(),
        ));
        tracing::info!(port, "kizuna started");
        Ok(Self {
            port,
            metrics_port,
            stop,
            ingest,
            relay,
            sweeper,
            http,
            background,
        })
    }

    /// The port the HTTP server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of `/metrics` (the API's port unless `http.metrics_bind` is set).
    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    /// Cancelling this token stops the application gracefully.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Runs until stopped: ingest finishes or abandons its batch, then the relay flushes, then
    /// the HTTP server stops.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            stop,
            ingest,
            relay,
            sweeper,
            http,
            background,
            ..
        } = self;
        let ingest_result = ingest.await.context("ingest task panicked")?;
        stop.cancel();
        let sweeper_result = sweeper.await.context("sweeper task panicked")?;
        background.cancel();
        let relay_result = relay.await.context("relay task panicked")?;
        let http_result = http.await.context("HTTP task panicked")?;
        ingest_result
            .and(sweeper_result)
            .and(relay_result)
            .and(http_result)
    }
}
