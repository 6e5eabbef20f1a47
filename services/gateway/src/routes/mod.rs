//! The HTTP endpoints (here) and the one pipeline every webhook goes through (`pipeline`;
//! `fields` names the payload field a refusal is about):
//! enabled → rate limit → body (size limit) → signature on the raw body → map → event ids →
//! the engine's validation → produce and wait for every acknowledgement → 200.
//! Bodies are never logged; refusals are logged by source, outcome and field name only.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Router, middleware};
use kizuna::http::problem;
use kizuna::inputs::validate::Limits;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{Accepted, LoadRefusals, Problem, ProblemKind, Source, WebhookRefusals};
use crate::config::Settings;
use crate::mapping::Mapping;
use crate::metrics::Metrics;
use crate::produce::Producer;
use crate::rate_limit::RateLimits;

mod fields;
mod pipeline;

/// Everything a request needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: Settings,
    mapping: Mapping,
    limits: Limits,
    max_message_bytes: usize,
    producer: Producer,
    metrics: Metrics,
    rate: RateLimits,
}

impl AppState {
    pub fn new(
        settings: Settings,
        mapping: Mapping,
        limits: Limits,
        max_message_bytes: usize,
        producer: Producer,
        metrics: Metrics,
    ) -> Self {
        let rate = RateLimits::new(&settings.rate_limit);
        Self {
            inner: Arc::new(Inner {
                settings,
                mapping,
                limits,
                max_message_bytes,
                producer,
                metrics,
                rate,
            }),
        }
    }
}

/// The endpoints, each with its OpenAPI operation (`#[utoipa::path]` on the handler).
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(shopify))
        .routes(routes!(zendesk))
        .routes(routes!(typeform))
        .routes(routes!(events))
        .routes(routes!(kizuna::http::probes::healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(crate::openapi::serve))
}

/// The OpenAPI 3.1 document of the gateway (`docs/openapi/gateway.json`).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    crate::openapi::document(api_routes().split_for_parts().1)
}

pub fn router(state: AppState) -> Router {
    let (routes, _) = api_routes().split_for_parts();
    routes
        .fallback(not_found)
        .layer(middleware::map_response(problem::errors_as_problems))
        .with_state(state)
}

/// A Shopify order (`orders/paid`, `orders/create`) or refund (`refunds/create`) webhook,
/// verified with `X-Shopify-Hmac-Sha256` on the raw body.
#[utoipa::path(
    post,
    path = "/webhooks/shopify",
    tag = "webhooks",
    request_body(content = Object, description = "Shopify's webhook payload, as Shopify sends it", content_type = "application/json"),
    params(
        ("X-Shopify-Topic" = String, Header, description = "`orders/paid`, `orders/create`, `orders/updated` or `refunds/create`"),
        ("X-Shopify-Webhook-Id" = Option<String>, Header, description = "Shopify's delivery id: a retried delivery produces the same event ids"),
        ("Idempotency-Key" = Option<String>, Header, description = "Overrides the delivery id (1 to 255 characters)"),
    ),
    security(("shopifyHmac" = [])),
    responses(
        (status = 200, description = "Every event produced is acknowledged by the broker (acks=all)", body = Accepted),
        (status = 401, description = "The signature is missing, wrong or stale", body = kizuna::http::Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String))),
        WebhookRefusals,
        LoadRefusals,
    ),
)]
async fn shopify(State(s): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    s.handle(Source::Shopify, headers, body).await
}

/// A Zendesk ticket event (created, status changed, satisfaction rated, …), verified with
/// `X-Zendesk-Webhook-Signature` and `X-Zendesk-Webhook-Signature-Timestamp`.
#[utoipa::path(
    post,
    path = "/webhooks/zendesk",
    tag = "webhooks",
    request_body(content = Object, description = "Zendesk's event payload", content_type = "application/json"),
    params(
        ("X-Zendesk-Webhook-Signature-Timestamp" = String, Header, description = "Signed with the body; outside sources.zendesk.timestamp_tolerance_secs it is refused"),
        ("Idempotency-Key" = Option<String>, Header, description = "Overrides the event's `id`"),
    ),
    security(("zendeskSignature" = [])),
    responses(
        (status = 200, description = "Every event produced is acknowledged by the broker (acks=all)", body = Accepted),
        (status = 401, description = "The signature is missing, wrong or stale", body = kizuna::http::Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String))),
        WebhookRefusals,
        LoadRefusals,
    ),
)]
async fn zendesk(State(s): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    s.handle(Source::Zendesk, headers, body).await
}

/// A Typeform response with an NPS answer, verified with `Typeform-Signature`.
#[utoipa::path(
    post,
    path = "/webhooks/typeform",
    tag = "webhooks",
    request_body(content = Object, description = "Typeform's `form_response` payload", content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Overrides the payload's `event_id`"),
    ),
    security(("typeformSignature" = [])),
    responses(
        (status = 200, description = "Every event produced is acknowledged by the broker (acks=all)", body = Accepted),
        (status = 401, description = "The signature is missing or wrong", body = kizuna::http::Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String))),
        WebhookRefusals,
        LoadRefusals,
    ),
)]
async fn typeform(State(s): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    s.handle(Source::Typeform, headers, body).await
}

/// Kizuna's own events: one `InputEvent` in the protobuf JSON mapping, or JSON lines of them
/// (each must carry its own `eventId`).
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    request_body(content(
        (Object = "application/json"),
        (String = "application/x-ndjson"),
    ), description = "One kizuna.v1 `InputEvent` (`{\"purchase\": {…}}`, `{\"supportTicket\": {…}}` or `{\"surveyResponse\": {…}}`), or one per line"),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Events without an `eventId` get one derived from it"),
    ),
    security(("kizunaToken" = [])),
    responses(
        (status = 200, description = "Every event is acknowledged by the broker (acks=all)", body = Accepted),
        (status = 401, description = "No or a wrong bearer token", body = kizuna::http::Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "Bearer realm=\"kizuna-gateway\""))),
        (status = 404, description = "No token configured (sources.kizuna.token)", body = kizuna::http::Problem, content_type = "application/problem+json"),
        (status = 422, description = "An event the engine would refuse (`field`, `reason` and, for JSON lines, `line` say which)", body = kizuna::http::Problem, content_type = "application/problem+json"),
        LoadRefusals,
    ),
)]
async fn events(State(s): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    s.handle(Source::Kizuna, headers, body).await
}

/// Readiness: the broker answers and the input topics exist.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct Readiness {
    ready: bool,
    broker: bool,
}

/// 200 when the broker answers and the input topics exist, 503 otherwise.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready", body = Readiness),
    ),
)]
async fn readyz(State(s): State<AppState>) -> Response {
    let broker = s.inner.producer.ready().await;
    s.inner.metrics.readiness(broker);
    let status = if broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(Readiness {
            ready: broker,
            broker,
        }),
    )
        .into_response()
}

/// Prometheus metrics, text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String)),
)]
async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.inner.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> Response {
    Problem::new(
        ProblemKind::NotFound,
        "no such endpoint: POST /webhooks/shopify, /webhooks/zendesk, /webhooks/typeform or /v1/events",
    )
    .into_response()
}
