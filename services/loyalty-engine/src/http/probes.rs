//! Probes and metrics.

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::AppState;
use crate::store;

/// Prometheus metrics, text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String)),
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.core.metrics.render(),
    )
}

/// The process is alive.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "`ok`", content_type = "text/plain", body = String)),
)]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness, as the probe reads it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// The database answers.
    pub database: bool,
    /// Batches are committing.
    pub ingest: bool,
    /// Tasks of the engine that ended (each takes readiness down).
    pub ended_tasks: Vec<String>,
}

/// Ready to do work: the database answers, batches are committing and every task of the
/// engine runs.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready (the same body, saying what is not)", body = Readiness),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let db = tokio::time::timeout(Duration::from_secs(2), store::ping(&state.core.pool))
        .await
        .unwrap_or(false);
    let ingest = state.health.ingest_ok();
    let ended = state.health.ended_tasks();
    let ready = db && ingest && ended.is_empty();
    state.core.metrics.readiness(ready);
    let body = Readiness {
        ready,
        database: db,
        ingest,
        ended_tasks: ended.into_iter().map(|t| t.to_string()).collect(),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}
