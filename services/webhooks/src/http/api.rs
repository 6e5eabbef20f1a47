//! Every request, response and error body of the admin API, in one place (so they can be
//! described for OpenAPI in one place too). Errors are RFC 9457 problem details
//! (`application/problem+json`), the framework's own extractor rejections included.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::attempts::Attempt;
use crate::store::dead_letters::DeadLetter;
use crate::store::subscriptions::Subscription;
use crate::subscription::Filter;

/// `POST /v1/webhooks/subscriptions`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CreatedSubscription {
    #[serde(flatten)]
    pub subscription: SubscriptionView,
    pub secret: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SubscriptionList {
    pub subscriptions: Vec<SubscriptionView>,
}

/// `GET /v1/webhooks/subscriptions/{id}/secret`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SecretView {
    pub secret: String,
    /// The previous secret still signs deliveries until then, after a rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_valid_until: Option<DateTime<Utc>>,
}

/// `POST /v1/webhooks/subscriptions/{id}/rotate-secret` (the body is optional).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// A secret of your own; by default one is generated.
    #[serde(default)]
    pub secret: Option<String>,
}

/// `POST /v1/webhooks/subscriptions/{id}/replay`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Queue again the subscription's events the engine recorded from this time on…
    pub since: DateTime<Utc>,
    /// …until this time (default: now).
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReplayResult {
    /// Deliveries queued (events already waiting for the subscription are not queued twice).
    pub queued: u64,
    /// Outputs of the subscription's types read from the engine's log in the interval.
    pub scanned: u64,
}

/// `?limit=N&before=ID` of the delivery log and the dead letters.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Items per page, 1 to 1000 (default 100).
    pub limit: Option<i64>,
    /// The `next` of the previous page.
    pub before: Option<i64>,
}

impl Page {
    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }
}

/// One attempt in the delivery log.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttemptList {
    pub attempts: Vec<AttemptView>,
    /// `before` of the next page, when there may be one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// One dead letter: the event as it was sent, and how its delivery ended.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadLetterView {
    pub id: i64,
    pub webhook_id: Uuid,
    #[serde(rename = "type")]
    pub ce_type: String,
    pub customer_id: String,
    /// The CloudEvent that was posted.
    #[schema(value_type = Object)]
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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadLetterList {
    pub dead_letters: Vec<DeadLetterView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// Errors are the shared RFC 9457 problems; the extractors answer their rejections as problems.
pub use kizuna::http::problem::{AdminProblems, ApiJson, ApiPath, ApiQuery, Problem};

/// The problems of an operation on one subscription: its 404, and the admin API's.
#[derive(Debug)]
pub struct SubscriptionProblems;

impl utoipa::IntoResponses for SubscriptionProblems {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        let mut responses = NoSuchSubscription::responses();
        responses.extend(AdminProblems::responses());
        responses
    }
}

/// The 404 of an operation on a subscription that does not exist.
#[derive(Debug, utoipa::IntoResponses)]
#[response(
    status = 404,
    description = "No such subscription",
    content_type = "application/problem+json"
)]
pub struct NoSuchSubscription(pub Problem);
