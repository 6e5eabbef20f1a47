//! Probes and metrics.

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::AppState;
use crate::store;

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
pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready to do work: the database answers, batches are committing and every task of the
/// engine runs.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let db = tokio::time::timeout(Duration::from_secs(2), store::ping(&state.core.pool))
        .await
        .unwrap_or(false);
    let ingest = state.health.ingest_ok();
    let ended = state.health.ended_tasks();
    let ready = db && ingest && ended.is_empty();
    state.core.metrics.readiness(ready);
    let body = serde_json::json!({
        "ready": ready,
        "database": db,
        "ingest": ingest,
        "ended_tasks": ended,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}
