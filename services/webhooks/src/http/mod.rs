//! The HTTP server: `/metrics`, `/healthz`, `/readyz` and the admin API under
//! `/v1/webhooks/subscriptions`, behind a bearer token (`http.admin_token`).

pub mod api;

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;

use self::api::*;
use crate::config::DeliverySettings;
use crate::event::OutputEvent;
use crate::metrics::Metrics;
use crate::signing::Secret;
use crate::store::subscriptions::{self, NewSubscription};
use crate::store::{attempts, dead_letters, queue, replay};
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

pub fn router(state: AppState) -> Router {
    let admin = Router::new()
        .route("/v1/webhooks/subscriptions", post(create).get(list))
        .route("/v1/webhooks/subscriptions/{id}", get(show).delete(remove))
        .route("/v1/webhooks/subscriptions/{id}/pause", post(pause))
        .route("/v1/webhooks/subscriptions/{id}/resume", post(resume))
        .route("/v1/webhooks/subscriptions/{id}/secret", get(secret))
        .route(
            "/v1/webhooks/subscriptions/{id}/rotate-secret",
            post(rotate_secret),
        )
        .route("/v1/webhooks/subscriptions/{id}/replay", post(replay))
        .route("/v1/webhooks/subscriptions/{id}/attempts", get(attempt_log))
        .route(
            "/v1/webhooks/subscriptions/{id}/dead-letters",
            get(dead_letter_list),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize))
        .fallback(not_found);
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .merge(admin)
        .with_state(state)
}

async fn not_found() -> Problem {
    Problem::not_found("resource")
}

/// The bearer token, compared in constant time.
async fn authorize(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let Some(expected) = &state.admin_token else {
        return Problem::admin_disabled().into_response();
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let expected = expected.expose_secret().as_bytes();
    let same = given.len() == expected.len()
        && given
            .bytes()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same && !expected.is_empty() {
        next.run(req).await
    } else {
        Problem::unauthorized().into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn readyz(State(state): State<AppState>) -> StatusCode {
    if kizuna::store::ping(&state.pool).await {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

fn subscription_id(raw: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw).map_err(|_| Problem::not_found("subscription"))
}

fn parse_secret(text: Option<String>) -> Result<Secret, Problem> {
    match text {
        None => Ok(Secret::generate()),
        Some(t) => {
            Secret::parse(&t).map_err(|e| Problem::invalid(422, Some("secret"), e.to_string()))
        }
    }
}

async fn create(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateSubscription>,
) -> Result<Response, Problem> {
    let invalid = |e: crate::subscription::Invalid| Problem::invalid(422, Some(e.field), e.message);
    let url = parse_url(&req.url, state.delivery.allow_private_networks).map_err(invalid)?;
    let event_types = parse_event_types(&req.event_types).map_err(invalid)?;
    let filter = req.filter.parse().map_err(invalid)?;
    if req.description.len() > 1024 {
        return Err(Problem::invalid(
            422,
            Some("description"),
            "at most 1024 characters",
        ));
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

async fn list(State(state): State<AppState>) -> Result<ApiJson<SubscriptionList>, Problem> {
    let subs = subscriptions::list(&state.pool).await?;
    Ok(ApiJson(SubscriptionList {
        subscriptions: subs.iter().map(|s| SubscriptionView::of(s, None)).collect(),
    }))
}

async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<ApiJson<SubscriptionView>, Problem> {
    let id = subscription_id(&id)?;
    let sub = subscriptions::get(&state.pool, id)
        .await?
        .ok_or_else(|| Problem::not_found("subscription"))?;
    let pending = queue::pending_for(&state.pool, id).await?;
    Ok(ApiJson(SubscriptionView::of(&sub, Some(pending))))
}

async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let id = subscription_id(&id)?;
    if !subscriptions::delete(&state.pool, id).await? {
        return Err(Problem::not_found("subscription"));
    }
    update_gauges(&state).await;
    tracing::info!(subscription = %id, "webhook subscription deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<ApiJson<SubscriptionView>, Problem> {
    let id = subscription_id(&id)?;
    let sub = subscriptions::pause(&state.pool, id)
        .await?
        .ok_or_else(|| Problem::not_found("subscription"))?;
    update_gauges(&state).await;
    tracing::info!(subscription = %id, status = sub.status.as_str(), "webhook subscription paused");
    Ok(ApiJson(SubscriptionView::of(&sub, None)))
}

async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<ApiJson<SubscriptionView>, Problem> {
    let id = subscription_id(&id)?;
    let mut tx = state.pool.begin().await?;
    let sub = subscriptions::resume(&mut tx, id)
        .await?
        .ok_or_else(|| Problem::not_found("subscription"))?;
    tx.commit().await?;
    update_gauges(&state).await;
    state.wake.notify_one();
    tracing::info!(subscription = %id, "webhook subscription resumed");
    Ok(ApiJson(SubscriptionView::of(&sub, None)))
}

async fn secret(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<ApiJson<SecretView>, Problem> {
    let id = subscription_id(&id)?;
    let sub = subscriptions::get(&state.pool, id)
        .await?
        .ok_or_else(|| Problem::not_found("subscription"))?;
    Ok(ApiJson(SecretView {
        secret: sub.secret.expose(),
        previous_valid_until: sub.previous_secret_until.filter(|t| *t > Utc::now()),
    }))
}

async fn rotate_secret(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<ApiJson<SecretView>, Problem> {
    let id = subscription_id(&id)?;
    let req: RotateSecret = if body.is_empty() {
        RotateSecret::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| Problem::invalid(422, None, e.to_string()))?
    };
    let secret = parse_secret(req.secret)?;
    let until = Utc::now() + state.delivery.rotation_grace();
    let sub = subscriptions::rotate(&state.pool, id, &secret, until)
        .await?
        .ok_or_else(|| Problem::not_found("subscription"))?;
    tracing::info!(subscription = %id, "webhook secret rotated");
    Ok(ApiJson(SecretView {
        secret: sub.secret.expose(),
        previous_valid_until: Some(until),
    }))
}

/// Re-queues the subscription's events recorded in the engine's `output_log` in the interval,
/// through its current filter, in the engine's commit order.
async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ReplayRequest>,
) -> Result<Response, Problem> {
    let id = subscription_id(&id)?;
    let sub = subscriptions::get(&state.pool, id)
        .await?
        .ok_or_else(|| Problem::not_found("subscription"))?;
    if sub.status == Status::Disabled {
        return Err(Problem::conflict(
            "the subscription is disabled: resume it first",
        ));
    }
    let until = req.until.unwrap_or_else(Utc::now);
    if req.since >= until {
        return Err(Problem::invalid(
            422,
            Some("since"),
            "since must be before until",
        ));
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

async fn attempt_log(
    State(state): State<AppState>,
    Path(id): Path<String>,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<ApiJson<AttemptList>, Problem> {
    let id = subscription_id(&id)?;
    let Query(page) = page?;
    if subscriptions::get(&state.pool, id).await?.is_none() {
        return Err(Problem::not_found("subscription"));
    }
    let limit = page.limit();
    let rows = attempts::list(&state.pool, id, limit, page.before).await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|a| a.id))
        .flatten();
    Ok(ApiJson(AttemptList {
        attempts: rows.into_iter().map(AttemptView::from).collect(),
        next,
    }))
}

async fn dead_letter_list(
    State(state): State<AppState>,
    Path(id): Path<String>,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<ApiJson<DeadLetterList>, Problem> {
    let id = subscription_id(&id)?;
    let Query(page) = page?;
    if subscriptions::get(&state.pool, id).await?.is_none() {
        return Err(Problem::not_found("subscription"));
    }
    let limit = page.limit();
    let rows = dead_letters::list(&state.pool, id, limit, page.before).await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|d| d.id))
        .flatten();
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
