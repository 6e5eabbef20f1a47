//! Builds and runs the whole application: ingest loop, rebalance coordinator, outbox relay,
//! sweeper, gauges, pruner, churn-model refresher and HTTP server. Each component is built by
//! its constructor and runs as a task this module owns: a task that ends while the engine is not
//! stopping is logged and takes readiness down. Tests use the same builder with port 0 and read
//! back the port it got.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::FutureExt;
use rdkafka::consumer::Consumer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{OutputFormat, Settings};
use crate::engine::Core;
use crate::engine::batch::Processor;
use crate::engine::ownership::Ownership;
use crate::gauges::Gauges;
use crate::health::Health;
use crate::http::console::{ConsoleState, Snapshots};
use crate::http::{AppState, metrics_only, router};
use crate::ingest::consumer::{Decoder, IngestLoop};
use crate::ingest::gate::Gate;
use crate::ingest::rebalance::{Coordinator, IngestContext};
use crate::ingest::source::{IngestConsumer, KafkaSource};
use crate::inputs::validate::Limits;
use crate::metrics::Metrics;
use crate::pruner::Pruner;
use crate::registry::SchemaRegistry;
use crate::relay::{OutputFraming, Relay};
use crate::sweeper::Sweeper;
use crate::{kafka, store};

/// A running Kizuna instance.
#[derive(Debug)]
pub struct Application {
    port: u16,
    metrics_port: u16,
    /// Stops consumption: ingest finishes or abandons its batches, then the sweeper stops.
    stop: CancellationToken,
    /// Stops the rest once ingest is done: the relay flushes, the servers close.
    background: CancellationToken,
    ingest: Task,
    sweeper: Task,
    /// The relay, the HTTP servers and the periodic jobs.
    others: Vec<Task>,
}

/// The process's exit status: failure, with the error and its causes on stderr, when `result`
/// is an error. `program` prefixes the message.
pub fn exit_code(program: &str, result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Cancels `stop` on Ctrl-C or SIGTERM (in a task of its own).
pub fn stop_on_shutdown_signal(stop: CancellationToken) {
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested");
        stop.cancel();
    });
}

/// Resolves on Ctrl-C or SIGTERM: when the engine, the gateway and kizuna-webhooks stop.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Waits for the database at start-up, so a stack that is still starting is not an error.
/// kizuna-webhooks migrates the same database the same way.
pub async fn migrate_with_retry(pool: &sqlx::PgPool) -> anyhow::Result<()> {
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

/// How long start-up waits for a broker to answer before it gives up.
const BROKER_PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// One owned task.
#[derive(Debug)]
struct Task {
    name: &'static str,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl Task {
    /// Spawns `work`. If it ends (returns, fails or panics) before `stopping` is cancelled,
    /// that is logged and readiness goes down: the instance no longer does all its work.
    fn spawn(
        name: &'static str,
        health: &Health,
        stopping: &CancellationToken,
        work: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) -> Self {
        let health = health.clone();
        let stopping = stopping.clone();
        let handle = tokio::spawn(async move {
            let result = std::panic::AssertUnwindSafe(work)
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the {name} task panicked")));
            if !stopping.is_cancelled() {
                match &result {
                    Ok(()) => tracing::error!(task = name, "a task ended on its own; not ready"),
                    Err(e) => tracing::error!(
                        task = name,
                        error = format!("{e:#}"),
                        "a task failed; not ready"
                    ),
                }
                health.task_ended(name);
            }
            result
        });
        Self { name, handle }
    }

    async fn join(self) -> anyhow::Result<()> {
        self.handle
            .await
            .with_context(|| format!("the {} task could not be joined", self.name))?
            .with_context(|| format!("the {} task failed", self.name))
    }
}

/// The Kafka consumer of the input topics, its context signalling rebalances to `events`.
fn consumer(
    settings: &Settings,
    ownership: &Ownership,
    events: tokio::sync::mpsc::UnboundedSender<crate::ingest::rebalance::RebalanceEvent>,
) -> anyhow::Result<IngestConsumer> {
    let context = IngestContext {
        ownership: ownership.clone(),
        events,
        revoke_wait: settings.revoke_drain() + Duration::from_secs(1),
    };
    // Kafka gets a copy of the positions at most once a second (see
    // `IngestLoop::mirror_offsets`).
    let consumer: IngestConsumer = kafka::offsets_in_postgres(
        kafka::base_config(&settings.kafka),
        &settings.kafka.group_id,
        settings.kafka.session_timeout_ms,
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
    let inputs = settings.kafka.topics.inputs();
    consumer
        .subscribe(&inputs)
        .context("subscribing to the input topics")?;
    Ok(consumer)
}

/// Binds `addr`, naming what for in the error.
async fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} to {addr}"))
}

/// Serves `app` on `listener` until `stop`.
async fn serve(
    listener: TcpListener,
    app: axum::Router,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .context("HTTP server failed")
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let programme = Arc::new(settings.load_programme()?);
        let metrics = Metrics::new();
        let health = Health::default();
        let pool = store::pool(settings.database_url(), settings.database.max_connections)?;
        if settings.database.migrate_on_start {
            migrate_with_retry(&pool).await?;
        }
        let kafka_settings = settings.kafka.clone();
        // Wrong credentials or an untrusted certificate stop start-up here, with a message
        // naming them, instead of librdkafka retrying quietly.
        let partitions = tokio::task::spawn_blocking(move || {
            kafka::require_brokers(&kafka_settings, BROKER_PROBE_TIMEOUT)?;
            kafka::check_input_partitions(&kafka_settings)
        })
        .await
        .context("partition check panicked")??;
        let core = Core::new(
            &settings,
            pool.clone(),
            programme.clone(),
            metrics.clone(),
            partitions,
        );
        if let Err(e) = core.model.refresh(&pool, &metrics).await {
            tracing::warn!(error = format!("{e:#}"), "no churn model loaded yet");
        }

        let ownership = Ownership::default();
        let gate = Gate::default();
        let (events, rebalances) = tokio::sync::mpsc::unbounded_channel();
        let coordinator = Coordinator {
            pool: pool.clone(),
            group_id: settings.kafka.group_id.clone(),
            topics: settings
                .kafka
                .topics
                .inputs()
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
            ownership: ownership.clone(),
            gate: gate.clone(),
            metrics: metrics.clone(),
            drain: settings.revoke_drain(),
        };
        let source = KafkaSource {
            consumer: Arc::new(consumer(&settings, &ownership, events)?),
        };
        let limits = Limits::new(&settings, &programme);
        let registry = SchemaRegistry::with_metrics(&settings.registry, &metrics)?;
        let framing = match (&registry, settings.outputs.format) {
            (Some(registry), OutputFormat::ConfluentProtobuf) => Some(OutputFraming::new(
                registry.clone(),
                &settings.kafka.topics,
            )?),
            _ => None,
        };
        let ingest = IngestLoop::new(
            source,
            Processor {
                core: core.clone(),
                publish: true,
            },
            Decoder::new(
                &settings.kafka.topics,
                limits.clone(),
                settings.ingest.max_message_bytes,
            )
            .with_registry(registry),
            settings.ingest.clone(),
            ownership.clone(),
            gate,
            health.clone(),
            metrics.clone(),
        );
        let sweeper = Sweeper::new(core.clone(), ownership.clone(), settings.sweep.clone());
        let relay = Relay::new(
            &settings.kafka,
            pool.clone(),
            ownership.clone(),
            settings.relay.clone(),
            metrics.clone(),
        )?
        .with_framing(framing);
        let gauges = Gauges {
            pool: pool.clone(),
            metrics: metrics.clone(),
            group_id: settings.kafka.group_id.clone(),
            ownership: ownership.clone(),
            every: Duration::from_secs(settings.metrics.refresh_secs),
            populations_every: Duration::from_secs(settings.metrics.population_refresh_secs),
            points_cost_per_point_minor: programme.points_rules().map(|r| r.cost_per_point_minor),
            clock: core.clock.clone(),
        };

        let listener = bind(settings.http.bind, "HTTP server").await?;
        let port = listener.local_addr()?.port();
        let metrics_listener = match settings.http.metrics_bind {
            Some(addr) => Some(bind(addr, "metrics server").await?),
            None => None,
        };
        let metrics_port = match &metrics_listener {
            Some(l) => l.local_addr()?.port(),
            None => port,
        };
        let console_figures = Snapshots::default();
        let console = ConsoleState::new(
            core.clone(),
            &settings.console,
            console_figures.clone(),
            limits.max_id_len,
        );
        let app_state = AppState::new(core.clone(), health.clone(), limits, &settings.http)?
            .with_console(console);
        log_access(&settings, &app_state);

        let stop = CancellationToken::new();
        let background = CancellationToken::new();
        let spawn = |name, work| Task::spawn(name, &health, &background, work);
        let mut others = vec![
            spawn(
                "rebalance coordinator",
                coordinator.run(rebalances, background.clone()).boxed(),
            ),
            spawn("relay", relay.run(background.clone()).boxed()),
            spawn("gauges", gauges.run(background.clone()).boxed()),
            spawn(
                "console figures",
                console_figures
                    .run(
                        core.clone(),
                        Duration::from_secs(settings.console.refresh_secs),
                        background.clone(),
                    )
                    .boxed(),
            ),
            spawn(
                "HTTP server",
                serve(
                    listener,
                    router(app_state.clone(), metrics_listener.is_none()),
                    background.clone(),
                )
                .boxed(),
            ),
            spawn(
                "churn model refresher",
                core.model
                    .clone()
                    .run(
                        pool.clone(),
                        metrics.clone(),
                        Duration::from_secs(settings.metrics.model_refresh_secs),
                        background.clone(),
                    )
                    .boxed(),
            ),
        ];
        if let Some(l) = metrics_listener {
            others.push(spawn(
                "metrics server",
                serve(l, metrics_only(app_state), background.clone()).boxed(),
            ));
        }
        if let Some(retention) = settings.ledger_retention() {
            let pruner = Pruner {
                pool: pool.clone(),
                retention,
                every: Duration::from_secs(settings.ledger.prune_interval_secs),
                metrics: metrics.clone(),
            };
            others.push(spawn(
                "ledger pruner",
                pruner.run(background.clone()).boxed(),
            ));
        }
        // Ingest and the sweeper stop first, on `stop`; ending on their own before it is a
        // failure like any other task's.
        let ingest = Task::spawn("ingest", &health, &stop, ingest.run(stop.clone()));
        let sweeper = Task::spawn("sweeper", &health, &stop, sweeper.run(stop.clone()));
        tracing::info!(port, "kizuna started");
        Ok(Self {
            port,
            metrics_port,
            stop,
            background,
            ingest,
            sweeper,
            others,
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

    /// Runs until stopped: ingest finishes or abandons its batch, then the sweeper stops, then
    /// the relay flushes and the servers and jobs stop. Returns the first failure.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            stop,
            background,
            ingest,
            sweeper,
            others,
            ..
        } = self;
        let mut result = ingest.join().await;
        stop.cancel();
        result = result.and(sweeper.join().await);
        background.cancel();
        for task in others {
            result = result.and(task.join().await);
        }
        result
    }
}

/// Says at start-up who may call the API, and warns when nobody can or a deprecated setting
/// is used (names and roles only, never a token).
fn log_access(settings: &Settings, state: &AppState) {
    if !state.access.configured() {
        tracing::warn!(
            "no HTTP access is configured: every /v1/ endpoint answers 403; set http.tokens (kizuna hash-token) or http.jwt"
        );
    } else {
        tracing::info!(access = state.access.describe(), "HTTP access");
    }
    if settings.http.admin_token.is_some() {
        tracing::warn!(
            "http.admin_token is deprecated: it is the admin token named \"admin\"; configure http.tokens with its hash instead"
        );
    }
}
