//! Every request, response and error body of the admin API, in one place (so they can be
//! described for OpenAPI in one place too). Errors are RFC 9457 problem details
//! (`application/problem+json`), the framework's own extractor rejections included.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::attempts::Attempt;
use crate::store::dead_letters::DeadLetter;
use crate::store::subscriptions::Subscription;
use crate::subscription::Filter;

/// `POST /v1/webhooks/subscriptions`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    /// Where deliveries are posted: http or https.
    pub url: String,
    /// CloudEvents types, e.g. `kizuna.v1.TierChanged`.
    pub event_types: Vec<String>,
    #[serde(default)]
    pub filter: Filter,
    #[serde(default)]
    pub description: String,
    /// A secret of your own (`whsec_` + base64 of 24–64 bytes); by default one is generated.
    #[serde(default)]
    pub secret: Option<String>,
}

/// A subscription as the API shows it (without its secret).
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionView {
    pub id: Uuid,
    pub url: String,
    pub description: String,
    pub event_types: Vec<&'static str>,
    pub filter: Filter,
    /// `active`, `paused` or `disabled`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// The first failure of the current unbroken run of failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
    pub consecutive_failures: i32,
    /// Events waiting for delivery (on `GET` of one subscription).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl SubscriptionView {
    pub fn of(s: &Subscription, pending: Option<i64>) -> Self {
        Self {
            id: s.id,
            url: s.url.clone(),
            description: s.description.clone(),
            event_types: s.event_types.iter().map(|t| t.as_str()).collect(),
            filter: s.filter.clone(),
            status: s.status.as_str(),
            disabled_reason: s.disabled_reason.clone(),
            failing_since: s.failing_since,
            consecutive_failures: s.consecutive_failures,
            pending,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// The answer to a creation: the subscription and its secret (also at `GET …/secret`).
#[derive(Debug, Clone, Serialize)]
pub struct CreatedSubscription {
    #[serde(flatten)]
    pub subscription: SubscriptionView,
    pub secret: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionList {
    pub subscriptions: Vec<SubscriptionView>,
}

/// `GET /v1/webhooks/subscriptions/{id}/secret`.
#[derive(Debug, Clone, Serialize)]
pub struct SecretView {
    pub secret: String,
    /// The previous secret still signs deliveries until then, after a rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_valid_until: Option<DateTime<Utc>>,
}

/// `POST /v1/webhooks/subscriptions/{id}/rotate-secret` (the body is optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// A secret of your own; by default one is generated.
    #[serde(default)]
    pub secret: Option<String>,
}

/// `POST /v1/webhooks/subscriptions/{id}/replay`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Queue again the subscription's events the engine recorded from this time on…
    pub since: DateTime<Utc>,
    /// …until this time (default: now).
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayResult {
    /// Deliveries queued (events already waiting for the subscription are not queued twice).
    pub queued: u64,
    /// Outputs of the subscription's types read from the engine's log in the interval.
    pub scanned: u64,
}

/// `?limit=N&before=ID` of the delivery log and the dead letters.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Page {
    pub limit: Option<i64>,
    pub before: Option<i64>,
}

impl Page {
    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }
}

/// One attempt in the delivery log.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptView {
    pub id: i64,
    pub webhook_id: Uuid,
    #[serde(rename = "type")]
    pub ce_type: String,
    pub attempt: i32,
    /// Absent when no answer came back (see `error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub latency_ms: f64,
    pub attempted_at: DateTime<Utc>,
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        Self {
            id: a.id,
            webhook_id: a.ce_id,
            ce_type: a.ce_type,
            attempt: a.attempt,
            status_code: a.status_code,
            error: a.error,
            latency_ms: a.latency_ms,
            attempted_at: a.attempted_at,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptList {
    pub attempts: Vec<AttemptView>,
    /// `before` of the next page, when there may be one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// One dead letter: the event as it was sent, and how its delivery ended.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterView {
    pub id: i64,
    pub webhook_id: Uuid,
    #[serde(rename = "type")]
    pub ce_type: String,
    pub customer_id: String,
    /// The CloudEvent that was posted.
    pub event: serde_json::Value,
    pub attempts: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_attempt_at: Option<DateTime<Utc>>,
    pub dead_at: DateTime<Utc>,
}

impl From<DeadLetter> for DeadLetterView {
    fn from(d: DeadLetter) -> Self {
        Self {
            id: d.id,
            webhook_id: d.ce_id,
            ce_type: d.ce_type,
            customer_id: d.customer_id,
            event: serde_json::from_slice(&d.body).unwrap_or(serde_json::Value::Null),
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            first_attempt_at: d.first_attempt_at,
            dead_at: d.dead_at,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterList {
    pub dead_letters: Vec<DeadLetterView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// An RFC 9457 problem detail.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A URI naming the kind of problem (`about:blank` when the status says it all).
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// The request field to fix, for validation problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
}

/// `type` URIs of the problems this API answers.
pub mod problem_type {
    pub const UNAUTHORIZED: &str = "urn:kizuna:problem:unauthorized";
    pub const ADMIN_DISABLED: &str = "urn:kizuna:problem:admin-disabled";
    pub const NOT_FOUND: &str = "urn:kizuna:problem:not-found";
    pub const INVALID: &str = "urn:kizuna:problem:invalid-request";
    pub const CONFLICT: &str = "urn:kizuna:problem:conflict";
    pub const UNAVAILABLE: &str = "urn:kizuna:problem:unavailable";
}

impl Problem {
    pub fn unauthorized() -> Self {
        Self {
            kind: problem_type::UNAUTHORIZED,
            title: "Unauthorized",
            status: 401,
            detail: "a valid bearer token is required (Authorization: Bearer …)".into(),
            field: None,
        }
    }

    pub fn admin_disabled() -> Self {
        Self {
            kind: problem_type::ADMIN_DISABLED,
            title: "Admin API disabled",
            status: 403,
            detail: "the admin API is disabled: set http.admin_token".into(),
            field: None,
        }
    }

    pub fn not_found(what: &str) -> Self {
        Self {
            kind: problem_type::NOT_FOUND,
            title: "Not found",
            status: 404,
            detail: format!("no such {what}"),
            field: None,
        }
    }

    pub fn invalid(status: u16, field: Option<&'static str>, detail: impl Into<String>) -> Self {
        Self {
            kind: problem_type::INVALID,
            title: "Invalid request",
            status,
            detail: detail.into(),
            field,
        }
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self {
            kind: problem_type::CONFLICT,
            title: "Conflict",
            status: 409,
            detail: detail.into(),
            field: None,
        }
    }

    pub fn unavailable() -> Self {
        Self {
            kind: problem_type::UNAVAILABLE,
            title: "Service unavailable",
            status: 503,
            detail: "the database is unavailable".into(),
            field: None,
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"kizuna-webhooks\""),
            );
        }
        response
    }
}

impl From<sqlx::Error> for Problem {
    fn from(e: sqlx::Error) -> Self {
        tracing::warn!(error = %e, "admin API: database error");
        Problem::unavailable()
    }
}

impl From<JsonRejection> for Problem {
    fn from(r: JsonRejection) -> Self {
        let status = r.status().as_u16();
        Problem::invalid(status, None, r.body_text())
    }
}

impl From<QueryRejection> for Problem {
    fn from(r: QueryRejection) -> Self {
        Problem::invalid(400, None, r.body_text())
    }
}

/// `axum::Json`, with its rejections answered as problem details.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}
