//! The HTTP server: `/metrics`, `/healthz`, `/readyz`, the customer API, the admin API and
//! its OpenAPI 3.1 description at `/v1/openapi.json`. Every error is an RFC 9457 problem
//! ([`problem`]), the framework's own rejections included. The marketer console (`/console/`)
//! answers in HTML, its own refusals included, so it sits outside the problem mapping.
//! Every `/v1/` endpoint but the description needs a role ([`auth`]); every request meets the
//! body and time limits and gets the security headers of [`hygiene`].

mod adjustments;
mod admin;
pub mod auth;
pub mod console;
mod customers;
mod erasure;
mod evaluate;
mod export;
pub mod hygiene;
mod jwks;
pub mod openapi;
pub mod points;
pub mod probes;
pub mod problem;
mod redemptions;
pub mod testing;
#[cfg(test)]
mod tests;
mod timeline;
mod view;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use tracing::Instrument as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::HttpSettings;
use crate::engine::Core;
use crate::health::Health;
use crate::inputs::validate::Limits;

pub use admin::check_admin_token;
pub use auth::Principal;
pub use problem::Problem;

#[derive(Debug, Clone)]
pub struct AppState {
    pub core: Core,
    pub health: Health,
    pub limits: Limits,
    /// Who may call what (`http.tokens`, `http.jwt`, `http.admin_token`).
    pub access: Arc<auth::Access>,
    /// Body and time limits of every request.
    pub http_limits: hygiene::HttpLimits,
    /// The last recompute started through the admin API.
    pub recompute: Arc<std::sync::Mutex<admin::RecomputeJob>>,
    /// The console, served under `/console/` when set.
    pub console: Option<console::ConsoleState>,
}

impl AppState {
    /// The state of the HTTP server, with the access rules and limits of `http`.
    pub fn new(
        core: Core,
        health: Health,
        limits: Limits,
        http: &HttpSettings,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            core,
            health,
            limits,
            access: Arc::new(auth::Access::new(http)?),
            http_limits: hygiene::HttpLimits::new(http),
            recompute: Arc::default(),
            console: None,
        })
    }

    /// Serves the console too.
    pub fn with_console(mut self, console: console::ConsoleState) -> Self {
        self.console = Some(console);
        self
    }

    /// The engine's "now" (`engine::clock`), or 503 when the database cannot say.
    async fn now(&self) -> Result<DateTime<Utc>, Problem> {
        self.core
            .clock
            .now(&self.core.pool)
            .await
            .map_err(|_| Problem::unavailable("the database is unavailable"))
    }
}

/// The API's routes, each with its OpenAPI operation (`#[utoipa::path]` on the handler), so
/// the description cannot list a route the router does not serve, or miss one.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(customers::get_customer, erasure::erase_customer))
        .routes(routes!(timeline::timeline))
        .routes(routes!(export::export_customer))
        .routes(routes!(points::get_points))
        .routes(routes!(redemptions::redeem))
        .routes(routes!(redemptions::cancel))
        .routes(routes!(adjustments::adjust))
        .routes(routes!(points::liability))
        .routes(routes!(admin::set_tier_override))
        .routes(routes!(evaluate::evaluate))
        .routes(routes!(admin::start_recompute, admin::recompute_status))
        .routes(routes!(openapi::serve))
}

/// `/metrics` and the probes, documented like the API.
fn probe_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(probes::metrics))
        .routes(routes!(probes::healthz))
        .routes(routes!(probes::readyz))
}

/// The OpenAPI 3.1 document of the engine's HTTP API (`docs/openapi/engine.json`).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    openapi::document(api_routes().merge(probe_routes()).split_for_parts().1)
}

/// The API, with `/metrics` and the probes unless they are served separately.
pub fn router(state: AppState, with_metrics: bool) -> Router {
    let (api, _) = api_routes().split_for_parts();
    let base = if with_metrics {
        metrics_router()
    } else {
        Router::new()
            .route("/healthz", get(probes::healthz))
            .route("/readyz", get(probes::readyz))
    };
    let limits = state.http_limits;
    // The console's pages are timed like the API's; its refusals stay HTML (not problems).
    let console = state.console.clone().map(|c| {
        console::router(c)
            .layer(DefaultBodyLimit::max(limits.max_body_bytes))
            .layer(middleware::from_fn_with_state(state.clone(), track))
            .layer(middleware::from_fn_with_state(limits, hygiene::timeout))
            .layer(middleware::map_response(hygiene::console_headers))
    });
    let app = base
        .merge(api)
        .fallback(problem::not_found)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(middleware::from_fn_with_state(limits, hygiene::timeout))
        .layer(middleware::map_response(problem::errors_as_problems))
        .layer(middleware::map_response(hygiene::api_headers))
        .with_state(state);
    match console {
        Some(c) => app.merge(c),
        None => app,
    }
}

fn metrics_router() -> Router<AppState> {
    probe_routes().split_for_parts().0
}

/// `/metrics` and the probes alone, for `http.metrics_bind`.
pub fn metrics_only(state: AppState) -> Router {
    metrics_router()
        .fallback(problem::not_found)
        .layer(middleware::map_response(problem::errors_as_problems))
        .layer(middleware::map_response(hygiene::api_headers))
        .with_state(state)
}

/// Records request durations by route template (never by raw path: ids are not labels), and
/// traces each request (`kizuna.http`, continuing its `traceparent`) while traces are on.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let span = crate::telemetry::spans::http(
        req.method().as_str(),
        &route,
        req.headers()
            .get(crate::telemetry::traceparent::HEADER)
            .map(|v| v.as_bytes()),
    );
    let started = Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    state.core.metrics.http_request(
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
