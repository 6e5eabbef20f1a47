//! The HTTP server: `/metrics`, `/healthz`, `/readyz` and the admin API under
//! `/v1/webhooks/subscriptions`, behind a bearer token (`http.admin_token`).

pub mod api;
pub mod openapi;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Router, middleware};
use chrono::Utc;
use secrecy::SecretString;
use sqlx::PgPool;
use tokio::sync::Notify;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use kizuna::http::problem;

use self::api::*;
use crate::config::DeliverySettings;
use crate::event::OutputEvent;
use crate::metrics::Metrics;
use crate::signing::Secret;
use crate::store::attempts::Attempt;
use crate::store::dead_letters::DeadLetter;
use crate::store::subscriptions::{self, NewSubscription};
use crate::store::{log_page, queue, replay};
use crate::subscription::{EventType, Status, parse_event_types, parse_url};

#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub metrics: Metrics,
    pub admin_token: Option<SecretString>,
    pub delivery: DeliverySettings,
    /// Wakes the dispatcher (resume, replay).
    pub wake: Arc<Notify>,
}

/// The admin API, each route with its OpenAPI operation (`#[utoipa::path]` on the handler).
fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, remove))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(secret))
        .routes(routes!(rotate_secret))
        .routes(routes!(replay))
        .routes(routes!(attempt_log))
        .routes(routes!(dead_letter_list))
}

/// `/metrics`, the probes and the description, open to all.
fn open_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(metrics))
        .routes(routes!(kizuna::http::probes::healthz))
        .routes(routes!(readyz))
        .routes(routes!(openapi::serve))
}

/// The OpenAPI 3.1 document of the admin API (`docs/openapi/webhooks.json`).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    openapi::document(admin_routes().merge(open_routes()).split_for_parts().1)
}

pub fn router(state: AppState) -> Router {
    let (admin, _) = admin_routes().split_for_parts();
    let (open, _) = open_routes().split_for_parts();
    let admin = admin.route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    open.merge(admin)
        .fallback(problem::not_found)
        .layer(middleware::map_response(problem::errors_as_problems))
        .with_state(state)
}

/// The bearer token, compared in constant time.
async fn authorize(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    match kizuna::http::check_admin_token(state.admin_token.as_ref(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(problem) => problem.into_response(),
    }
}

/// Prometheus metrics, text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String)),
)]
async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Ready when the database answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready"),
        (status = 503, description = "The database does not answer", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn readyz(State(state): State<AppState>) -> StatusCode {
    if kizuna::store::ping(&state.pool).await {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

fn subscription_id(raw: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw).map_err(|_| no_subscription())
}

/// The subscription's id, once it is known to exist.
async fn existing_subscription(state: &AppState, raw: &str) -> Result<Uuid, Problem> {
    let id = subscription_id(raw)?;
    if subscriptions::get(&state.pool, id).await?.is_none() {
        return Err(no_subscription());
    }
    Ok(id)
}

/// `before` of the next page: the last row's id when the page is full.
fn next_page<T>(rows: &[T], limit: i64, id: impl Fn(&T) -> i64) -> Option<i64> {
    (rows.len() as i64 == limit)
        .then(|| rows.last().map(id))
        .flatten()
}

fn no_subscription() -> Problem {
    Problem::not_found("no such subscription")
}

fn parse_secret(text: Option<String>) -> Result<Secret, Problem> {
    match text {
        None => Ok(Secret::generate()),
        Some(t) => Secret::parse(&t).map_err(|e| Problem::invalid(e.to_string()).field("secret")),
    }
}

/// Creates a subscription; the answer carries its secret.
#[utoipa::path(
    post,
    path = "/v1/webhooks/subscriptions",
    tag = "subscriptions",
    request_body = CreateSubscription,
    security(("adminToken" = [])),
    responses(
        (status = 201, description = "Created", body = CreatedSubscription,
            headers(("Location" = String, description = "The subscription's URL"))),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is not acceptable (`field` names it)", body = Problem, content_type = "application/problem+json"),
        AdminProblems,
    ),
)]
async fn create(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateSubscription>,
) -> Result<Response, Problem> {
    let invalid = |e: crate::subscription::Invalid| Problem::invalid(e.message).field(e.field);
    let url = parse_url(&req.url, state.delivery.allow_private_networks).map_err(invalid)?;
    let event_types = parse_event_types(&req.event_types).map_err(invalid)?;
    let filter = req.filter.parse().map_err(invalid)?;
    if req.description.len() > 1024 {
        return Err(Problem::invalid("at most 1024 characters").field("description"));
    }
    let secret = parse_secret(req.secret)?;
    let sub = subscriptions::insert(
        &state.pool,
        &NewSubscription {
            url,
            description: req.description,
            event_types,
            filter,
            secret,
        },
    )
    .await?;
    update_gauges(&state).await;
    tracing::info!(subscription = %sub.id, endpoint = %crate::subscription::endpoint(&sub.url), "webhook subscription created");
    let location = format!("/v1/webhooks/subscriptions/{}", sub.id);
    let body = CreatedSubscription {
        subscription: SubscriptionView::of(&sub, Some(0)),
        secret: sub.secret.expose(),
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        ApiJson(body),
    )
        .into_response())
}

/// Every subscription (without secrets).
#[utoipa::path(
    get,
    path = "/v1/webhooks/subscriptions",
    tag = "subscriptions",
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The subscriptions", body = SubscriptionList),
        AdminProblems,
    ),
)]
async fn list(State(state): State<AppState>) -> Result<ApiJson<SubscriptionList>, Problem> {
    let subs = subscriptions::list(&state.pool).await?;
    Ok(ApiJson(SubscriptionList {
        subscriptions: subs.iter().map(|s| SubscriptionView::of(s, None)).collect(),
    }))
}

/// One subscription, with the number of events waiting for it.
#[utoipa::path(
    get,
    path = "/v1/webhooks/subscriptions/{id}",
    tag = "subscriptions",
    params(("id" = uuid::Uuid, Path, description = "The subscription id")),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The subscription", body = SubscriptionView),
        SubscriptionProblems,
    ),
)]
async fn show(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<SubscriptionView>, Problem> {
    let id = subscription_id(&id)?;
    let sub = subscriptions::get(&state.pool, id)
        .await?
        .ok_or_else(no_subscription)?;
    let pending = queue::pending_for(&state.pool, id).await?;
    Ok(ApiJson(SubscriptionView::of(&sub, Some(pending))))
}

/// Deletes a subscription and everything queued for it.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/subscriptions/{id}",
    tag = "subscriptions",
    params(("id" = uuid::Uuid, Path, description = "The subscription id")),
    security(("adminToken" = [])),
    responses(
        (status = 204, description = "Deleted"),
        SubscriptionProblems,
    ),
)]
async fn remove(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, Problem> {
    let id = subscription_id(&id)?;
    if !subscriptions::delete(&state.pool, id).await? {
        return Err(no_subscription());
    }
    update_gauges(&state).await;
    tracing::info!(subscription = %id, "webhook subscription deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Pauses deliveries; events keep queueing.
#[utoipa::path(
    post,
    path = "/v1/webhooks/subscriptions/{id}/pause",
    tag = "subscriptions",
    params(("id" = uuid::Uuid, Path, description = "The subscription id")),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "Paused", body = SubscriptionView),
        SubscriptionProblems,
    ),
)]
async fn pause(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<SubscriptionView>, Problem> {
    let id = subscription_id(&id)?;
    let sub = subscriptions::pause(&state.pool, id)
        .await?
        .ok_or_else(no_subscription)?;
    update_gauges(&state).await;
    tracing::info!(subscription = %id, status = sub.status.as_str(), "webhook subscription paused");
    Ok(ApiJson(SubscriptionView::of(&sub, None)))
}

/// Resumes a paused or disabled subscription.
#[utoipa::path(
    post,
    path = "/v1/webhooks/subscriptions/{id}/resume",
    tag = "subscriptions",
    params(("id" = uuid::Uuid, Path, description = "The subscription id")),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "Active", body = SubscriptionView),
        SubscriptionProblems,
    ),
)]
async fn resume(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<SubscriptionView>, Problem> {
    let id = subscription_id(&id)?;
    let mut tx = state.pool.begin().await?;
    let sub = subscriptions::resume(&mut tx, id)
        .await?
        .ok_or_else(no_subscription)?;
    tx.commit().await?;
    update_gauges(&state).await;
    state.wake.notify_one();
    tracing::info!(subscription = %id, "webhook subscription resumed");
    Ok(ApiJson(SubscriptionView::of(&sub, None)))
}

/// The signing secret.
#[utoipa::path(
    get,
    path = "/v1/webhooks/subscriptions/{id}/secret",
    tag = "subscriptions",
    params(("id" = uuid::Uuid, Path, description = "The subscription id")),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The secret", body = SecretView),
        SubscriptionProblems,
    ),
)]
async fn secret(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<SecretView>, Problem> {
    let id = subscription_id(&id)?;
    let sub = subscriptions::get(&state.pool, id)
        .await?
        .ok_or_else(no_subscription)?;
    Ok(ApiJson(SecretView {
        secret: sub.secret.expose(),
        previous_valid_until: sub.previous_secret_until.filter(|t| *t > Utc::now()),
    }))
}

/// Rotates the secret; the previous one keeps signing deliveries for delivery.rotation_grace.
#[utoipa::path(
    post,
    path = "/v1/webhooks/subscriptions/{id}/rotate-secret",
    tag = "subscriptions",
    params(("id" = uuid::Uuid, Path, description = "The subscription id")),
    request_body(content = Option<RotateSecret>, description = "Optional: a secret of your own"),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The new secret", body = SecretView),
        NoSuchSubscription,
        (status = 422, description = "Not an acceptable secret", body = Problem, content_type = "application/problem+json"),
        AdminProblems,
    ),
)]
async fn rotate_secret(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<ApiJson<SecretView>, Problem> {
    let id = subscription_id(&id)?;
    let req: RotateSecret = if body.is_empty() {
        RotateSecret::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| Problem::invalid(e.to_string()))?
    };
    let secret = parse_secret(req.secret)?;
    let until = Utc::now() + state.delivery.rotation_grace();
    let sub = subscriptions::rotate(&state.pool, id, &secret, until)
        .await?
        .ok_or_else(no_subscription)?;
    tracing::info!(subscription = %id, "webhook secret rotated");
    Ok(ApiJson(SecretView {
        secret: sub.secret.expose(),
        previous_valid_until: Some(until),
    }))
}

/// Re-queues the subscription's events recorded in the engine's `output_log` in the interval,
/// through its current filter, in the engine's commit order.
#[utoipa::path(
    post,
    path = "/v1/webhooks/subscriptions/{id}/replay",
    tag = "subscriptions",
    params(("id" = uuid::Uuid, Path, description = "The subscription id")),
    request_body = ReplayRequest,
    security(("adminToken" = [])),
    responses(
        (status = 202, description = "Queued", body = ReplayResult),
        NoSuchSubscription,
        (status = 409, description = "The subscription is disabled", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "since is not before until", body = Problem, content_type = "application/problem+json"),
        AdminProblems,
    ),
)]
async fn replay(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ReplayRequest>,
) -> Result<Response, Problem> {
    let id = subscription_id(&id)?;
    let sub = subscriptions::get(&state.pool, id)
        .await?
        .ok_or_else(no_subscription)?;
    if sub.status == Status::Disabled {
        return Err(Problem::conflict(
            "the subscription is disabled: resume it first",
        ));
    }
    let until = req.until.unwrap_or_else(Utc::now);
    if req.since >= until {
        return Err(Problem::invalid("since must be before until").field("since"));
    }
    let types: Vec<&str> = sub.event_types.iter().map(|t| t.as_str()).collect();
    let mut cursor: Option<replay::Cursor> = None;
    let (mut queued, mut scanned) = (0u64, 0u64);
    loop {
        let page =
            replay::page(&state.pool, &types, req.since, until, cursor.as_ref(), 1000).await?;
        let Some(last) = page.last() else { break };
        cursor = Some((
            last.created_at,
            last.customer_id.clone(),
            last.effective_at,
            last.ce_id,
        ));
        scanned += page.len() as u64;
        let rows: Vec<queue::NewDelivery> = page
            .into_iter()
            .filter_map(|logged| {
                let event = OutputEvent {
                    id: logged.ce_id,
                    event_type: EventType::parse(&logged.ce_type)?,
                    subject: logged.customer_id,
                    time: logged.effective_at,
                    data: logged.payload,
                };
                sub.wants(&event).then(|| queue::NewDelivery {
                    subscription_id: sub.id,
                    customer_id: event.subject.clone(),
                    ce_id: event.id,
                    ce_type: event.event_type.as_str(),
                    body: event.body(),
                })
            })
            .collect();
        let mut tx = state.pool.begin().await?;
        queued += queue::enqueue(&mut tx, &rows).await?;
        tx.commit().await?;
    }
    state.metrics.replayed(queued);
    state.wake.notify_one();
    tracing::info!(subscription = %id, since = %req.since.to_rfc3339(), until = %until.to_rfc3339(), queued, scanned, "webhook replay queued");
    Ok((
        StatusCode::ACCEPTED,
        ApiJson(ReplayResult { queued, scanned }),
    )
        .into_response())
}

/// The delivery log, newest first.
#[utoipa::path(
    get,
    path = "/v1/webhooks/subscriptions/{id}/attempts",
    tag = "subscriptions",
    params(("id" = uuid::Uuid, Path, description = "The subscription id"), Page),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "A page of attempts", body = AttemptList),
        (status = 400, description = "Bad query parameters", body = Problem, content_type = "application/problem+json"),
        SubscriptionProblems,
    ),
)]
async fn attempt_log(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<ApiJson<AttemptList>, Problem> {
    let id = existing_subscription(&state, &id).await?;
    let limit = page.limit();
    let rows: Vec<Attempt> = log_page(&state.pool, id, limit, page.before).await?;
    let next = next_page(&rows, limit, |a| a.id);
    Ok(ApiJson(AttemptList {
        attempts: rows.into_iter().map(AttemptView::from).collect(),
        next,
    }))
}

/// The subscription's dead letters, newest first.
#[utoipa::path(
    get,
    path = "/v1/webhooks/subscriptions/{id}/dead-letters",
    tag = "subscriptions",
    params(("id" = uuid::Uuid, Path, description = "The subscription id"), Page),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "A page of dead letters", body = DeadLetterList),
        (status = 400, description = "Bad query parameters", body = Problem, content_type = "application/problem+json"),
        SubscriptionProblems,
    ),
)]
async fn dead_letter_list(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<ApiJson<DeadLetterList>, Problem> {
    let id = existing_subscription(&state, &id).await?;
    let limit = page.limit();
    let rows: Vec<DeadLetter> = log_page(&state.pool, id, limit, page.before).await?;
    let next = next_page(&rows, limit, |d| d.id);
    Ok(ApiJson(DeadLetterList {
        dead_letters: rows.into_iter().map(DeadLetterView::from).collect(),
        next,
    }))
}

async fn update_gauges(state: &AppState) {
    if let Ok(by_status) = subscriptions::count_by_status(&state.pool).await {
        state.metrics.subscriptions(&by_status);
    }
}
