//! The HTTP server: `/metrics`, `/healthz`, `/readyz` and the customer API.

mod customers;
mod probes;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use sqlx::PgPool;

use crate::domain::programme::Programme;
use crate::health::Health;
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub metrics: Metrics,
    pub health: Health,
    pub programme: Arc<Programme>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(probes::metrics))
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route("/v1/customers/{id}", get(customers::get_customer))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Records request durations by route template (never by raw path: ids are not labels).
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let response = next.run(req).await;
    state.metrics.http_request(
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
