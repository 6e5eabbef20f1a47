//! Builds and runs the gateway. Tests use the same builder with port 0 and read back the port.

use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::mapping::Mapping;
use crate::metrics::Metrics;
use crate::produce::Producer;
use crate::routes::{AppState, router};

/// How long start-up waits for a broker to answer before it starts anyway (not ready).
const BROKER_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    port: u16,
    stop: CancellationToken,
    http: JoinHandle<anyhow::Result<()>>,
    producer: Producer,
}

impl Gateway {
    /// Builds the gateway from its settings and the engine's (brokers, topics, input limits,
    /// programme), binds its port and starts serving.
    pub async fn build(
        settings: Settings,
        engine: kizuna::config::Settings,
    ) -> anyhow::Result<Self> {
        settings.check()?;
        engine
            .check()
            .context("the engine configuration the gateway shares")?;
        let mapping = Mapping::load(settings.mapping_file.as_deref())?;
        let programme = engine.load_programme()?;
        let limits = kizuna::inputs::validate::Limits::new(&engine, &programme);
        // Wrong credentials or an untrusted certificate stop start-up with a message naming
        // them; a broker that is merely unreachable is a readiness matter (`/readyz`, 503s).
        let kafka = engine.kafka.clone();
        let probe = tokio::task::spawn_blocking(move || {
            kizuna::kafka::probe_brokers(
                &kafka,
                BROKER_PROBE_TIMEOUT,
                kizuna::kafka::WhenDown::Return,
            )
        })
        .await
        .context("the broker probe panicked")??;
        if let kizuna::kafka::Reach::Unreachable(why) = probe {
            tracing::warn!(
                brokers = %engine.kafka.brokers,
                reason = %why,
                "no Kafka broker answered at start-up; not ready until one does"
            );
        }
        let producer = Producer::new(&engine.kafka, &settings.kafka)?;
        let metrics = Metrics::new();
        let listener = TcpListener::bind(settings.http.bind)
            .await
            .with_context(|| format!("binding the gateway to {}", settings.http.bind))?;
        let port = listener.local_addr()?.port();
        let state = AppState::new(
            settings,
            mapping,
            limits,
            engine.ingest.max_message_bytes,
            producer.clone(),
            metrics,
        );
        let stop = CancellationToken::new();
        let http_stop = stop.clone();
        let app = router(state);
        let http = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { http_stop.cancelled().await })
                .await
                .context("the gateway's HTTP server failed")
        });
        tracing::info!(
            port,
            topics = ?engine.kafka.topics.inputs(),
            currency = %programme.currency,
            "kizuna-gateway started"
        );
        Ok(Self {
            port,
            stop,
            http,
            producer,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cancelling this token stops the gateway: no new requests, requests in flight finish.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let result = self.http.await.context("the HTTP task panicked")?;
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10)))
            .await
            .ok();
        result
    }
}
