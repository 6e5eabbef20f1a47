//! The HTTP server: `/metrics`, `/healthz`, `/readyz`, the customer API and the admin API.

mod admin;
mod customers;
mod evaluate;
mod probes;
mod timeline;
mod view;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::engine::Core;
use crate::health::Health;
use crate::inputs::validate::Limits;

#[derive(Debug, Clone)]
pub struct AppState {
    pub core: Core,
    pub health: Health,
    pub limits: Limits,
    pub admin_token: Option<SecretString>,
    /// The last recompute started through the admin API.
    pub recompute: Arc<std::sync::Mutex<admin::RecomputeJob>>,
}

impl AppState {
    pub fn new(
        core: Core,
        health: Health,
        limits: Limits,
        admin_token: Option<SecretString>,
    ) -> Self {
        Self {
            core,
            health,
            limits,
            admin_token,
            recompute: Arc::default(),
        }
    }

    /// The engine's "now" (`engine::clock`), or 503 when the database cannot say.
    async fn now(&self) -> Result<DateTime<Utc>, Response> {
        self.core.clock.now(&self.core.pool).await.map_err(|_| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable",
            )
        })
    }
}

/// A JSON error body.
fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// The API, with `/metrics` and the probes unless they are served separately.
pub fn router(state: AppState, with_metrics: bool) -> Router {
    let base = if with_metrics {
        metrics_router()
    } else {
        Router::new()
            .route("/healthz", get(probes::healthz))
            .route("/readyz", get(probes::readyz))
    };
    base.route("/v1/customers/{id}", get(customers::get_customer))
        .route("/v1/customers/{id}/timeline", get(timeline::timeline))
        .route(
            "/v1/customers/{id}/tier-override",
            post(admin::set_tier_override),
        )
        .route("/v1/evaluate", post(evaluate::evaluate))
        .route(
            "/v1/admin/recompute",
            post(admin::start_recompute).get(admin::recompute_status),
        )
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

fn metrics_router() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(probes::metrics))
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
}

/// `/metrics` and the probes alone, for `http.metrics_bind`.
pub fn metrics_only(state: AppState) -> Router {
    metrics_router().with_state(state)
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
    state.core.metrics.http_request(
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
