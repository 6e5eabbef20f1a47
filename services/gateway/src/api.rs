//! Every type the HTTP API reads or writes, in one place: the sources, the 2xx answer, and the
//! RFC 9457 problem details of every refusal. Handlers build these and nothing else, so an
//! OpenAPI description can be derived from this module alone.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Where a request came from; one endpoint each. A low-cardinality metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// `POST /webhooks/shopify`
    Shopify,
    /// `POST /webhooks/zendesk`
    Zendesk,
    /// `POST /webhooks/typeform`
    Typeform,
    /// `POST /v1/events`: Kizuna's own `InputEvent` JSON, one or JSON lines.
    Kizuna,
}

impl Source {
    pub const ALL: [Source; 4] = [
        Source::Shopify,
        Source::Zendesk,
        Source::Typeform,
        Source::Kizuna,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Shopify => "shopify",
            Source::Zendesk => "zendesk",
            Source::Typeform => "typeform",
            Source::Kizuna => "kizuna",
        }
    }
}

/// One event the request produced, as the broker acknowledged it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProducedEvent {
    /// The kizuna `eventId`: deterministic, so a resent delivery produces the same id and the
    /// engine counts it once.
    pub event_id: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// The 200 answer: every event below is durable (acknowledged by all in-sync replicas).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// Number of kizuna.v1 events produced (0 when the payload carries nothing Kizuna records).
    pub accepted: usize,
    pub events: Vec<ProducedEvent>,
    /// Why nothing was produced, when `accepted` is 0 (e.g. a Zendesk event type that is not
    /// mapped, an order update without refunds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
}

impl IntoResponse for Accepted {
    fn into_response(self) -> Response {
        (StatusCode::OK, axum::Json(self)).into_response()
    }
}

/// What became of a request, for `kizuna_gateway_requests_total{source,outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Accepted,
    Ignored,
    Malformed,
    Unauthorized,
    NotEnabled,
    TooLarge,
    Unprocessable,
    RateLimited,
    Unavailable,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Accepted,
        Outcome::Ignored,
        Outcome::Malformed,
        Outcome::Unauthorized,
        Outcome::NotEnabled,
        Outcome::TooLarge,
        Outcome::Unprocessable,
        Outcome::RateLimited,
        Outcome::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Ignored => "ignored",
            Outcome::Malformed => "malformed",
            Outcome::Unauthorized => "unauthorized",
            Outcome::NotEnabled => "not_enabled",
            Outcome::TooLarge => "too_large",
            Outcome::Unprocessable => "unprocessable",
            Outcome::RateLimited => "rate_limited",
            Outcome::Unavailable => "unavailable",
        }
    }
}

/// The kinds of refusal, each with its own problem `type`, status and title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// 400: not JSON, a missing header the scheme needs, no delivery id.
    MalformedRequest,
    /// 401: the signature (or bearer token) is missing, wrong or stale.
    InvalidSignature,
    /// 404: the source has no secret configured, so its endpoint is off.
    SourceNotEnabled,
    /// 404: no such endpoint.
    NotFound,
    /// 413: the body is larger than `http.max_body_bytes`.
    PayloadTooLarge,
    /// 422: the payload cannot be mapped to kizuna.v1, or the engine would refuse the result.
    UnmappablePayload,
    /// 429: over the source's request rate.
    RateLimited,
    /// 503: the broker did not acknowledge in time; nothing this request produced is promised.
    BrokerUnavailable,
}

/// Base of the problem `type` URIs: the README's table of problem types.
pub use kizuna::http::problem::{PROBLEM_JSON, TYPE_BASE as PROBLEM_TYPE_BASE};

impl ProblemKind {
    pub fn slug(self) -> &'static str {
        match self {
            ProblemKind::MalformedRequest => "malformed-request",
            ProblemKind::InvalidSignature => "invalid-signature",
            ProblemKind::SourceNotEnabled => "source-not-enabled",
            ProblemKind::NotFound => "not-found",
            ProblemKind::PayloadTooLarge => "payload-too-large",
            ProblemKind::UnmappablePayload => "unmappable-payload",
            ProblemKind::RateLimited => "rate-limited",
            ProblemKind::BrokerUnavailable => "broker-unavailable",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ProblemKind::MalformedRequest => StatusCode::BAD_REQUEST,
            ProblemKind::InvalidSignature => StatusCode::UNAUTHORIZED,
            ProblemKind::SourceNotEnabled | ProblemKind::NotFound => StatusCode::NOT_FOUND,
            ProblemKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProblemKind::UnmappablePayload => StatusCode::UNPROCESSABLE_ENTITY,
            ProblemKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ProblemKind::BrokerUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            ProblemKind::MalformedRequest => "The request is malformed",
            ProblemKind::InvalidSignature => "The signature is missing or invalid",
            ProblemKind::SourceNotEnabled => "This source is not enabled",
            ProblemKind::NotFound => "No such endpoint",
            ProblemKind::PayloadTooLarge => "The payload is too large",
            ProblemKind::UnmappablePayload => "The payload cannot be mapped to kizuna.v1",
            ProblemKind::RateLimited => "Too many requests",
            ProblemKind::BrokerUnavailable => "The broker did not acknowledge in time",
        }
    }

    pub fn outcome(self) -> Outcome {
        match self {
            ProblemKind::MalformedRequest => Outcome::Malformed,
            ProblemKind::InvalidSignature => Outcome::Unauthorized,
            ProblemKind::SourceNotEnabled | ProblemKind::NotFound => Outcome::NotEnabled,
            ProblemKind::PayloadTooLarge => Outcome::TooLarge,
            ProblemKind::UnmappablePayload => Outcome::Unprocessable,
            ProblemKind::RateLimited => Outcome::RateLimited,
            ProblemKind::BrokerUnavailable => Outcome::Unavailable,
        }
    }
}

/// The refusals of a platform webhook that are not about its signature (400, 404, 422), for
/// `#[utoipa::path(responses(...))]`.
#[derive(Debug)]
pub struct WebhookRefusals;

/// The refusals of every endpoint that produces events (413, 429, 503), for
/// `#[utoipa::path(responses(...))]`.
#[derive(Debug)]
pub struct LoadRefusals;

impl utoipa::IntoResponses for WebhookRefusals {
    fn responses() -> Responses {
        refusals(&[400, 404, 422])
    }
}

impl utoipa::IntoResponses for LoadRefusals {
    fn responses() -> Responses {
        refusals(&[413, 429, 503])
    }
}

type Responses =
    std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>>;

/// The documented refusals of the given statuses: problem details, and `Retry-After` where the
/// client should wait.
fn refusals(statuses: &[u16]) -> Responses {
    use utoipa::PartialSchema;
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    const REFUSALS: [(u16, &str, bool); 6] = [
        (400, "Not JSON, no delivery id", false),
        (404, "The source has no secret configured", false),
        (
            422,
            "The payload cannot be mapped to kizuna.v1 (`field` names it)",
            false,
        ),
        (413, "The body is larger than http.max_body_bytes", false),
        (429, "Over the source's request rate", true),
        (503, "The broker did not acknowledge in time", true),
    ];
    REFUSALS
        .iter()
        .filter(|(status, ..)| statuses.contains(status))
        .map(|&(status, description, retry_after)| {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build();
            let mut response = ResponseBuilder::new()
                .description(description)
                .content(PROBLEM_JSON, content);
            if retry_after {
                let header = HeaderBuilder::new().schema(Some(u64::schema())).build();
                response = response.header("Retry-After", header);
            }
            (status.to_string(), response.build().into())
        })
        .collect()
}

/// An RFC 9457 problem details body (`application/problem+json`): `type`, `title`, `status`
/// and `detail`, plus the extensions `field`, `reason` and `line`.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub kind: ProblemKind,
    pub detail: String,
    /// Extension: the payload field (a dotted path, or a header name) the refusal is about.
    pub field: Option<String>,
    /// Extension: a low-cardinality reason, the engine's dead-letter reason where one applies
    /// (e.g. `missing_field`, `currency_mismatch`, `too_old`).
    pub reason: Option<&'static str>,
    /// Extension (on JSON lines): the 1-based line the refusal is about.
    pub line: Option<usize>,
    /// `WWW-Authenticate` of a 401.
    pub www_authenticate: Option<&'static str>,
    /// `Retry-After` (seconds) of a 429 or 503.
    pub retry_after_secs: Option<u64>,
}

impl Problem {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            field: None,
            reason: None,
            line: None,
            www_authenticate: None,
            retry_after_secs: None,
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }

    pub fn line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs.max(1));
        self
    }

    /// A 401 with the challenge of the source's scheme.
    pub fn unauthorized(challenge: &'static str, detail: impl Into<String>) -> Self {
        let mut p = Self::new(ProblemKind::InvalidSignature, detail);
        p.www_authenticate = Some(challenge);
        p
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    pub fn outcome(&self) -> Outcome {
        self.kind.outcome()
    }

    /// The shared RFC 9457 body and headers of this refusal.
    pub fn shared(&self) -> kizuna::http::Problem {
        let mut p = kizuna::http::Problem::new(
            self.kind.status(),
            self.kind.slug(),
            self.kind.title(),
            self.detail.clone(),
        );
        if let Some(field) = &self.field {
            p = p.field(field.clone());
        }
        if let Some(reason) = self.reason {
            p = p.reason(reason);
        }
        if let Some(line) = self.line {
            p = p.line(line);
        }
        if let Some(challenge) = self.www_authenticate {
            p = p.challenge(challenge);
        }
        if let Some(secs) = self.retry_after_secs {
            p = p.retry_after(secs);
        }
        p
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        self.shared().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, header};

    #[test]
    fn a_problem_is_rfc_9457_json_with_its_headers() {
        let response = Problem::unauthorized("HMAC realm=\"shopify\"", "bad signature")
            .field("X-Shopify-Hmac-Sha256")
            .into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static(PROBLEM_JSON))
        );
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
        let p = Problem::new(ProblemKind::UnmappablePayload, "customer.id is missing")
            .field("customer.id")
            .reason("missing_field");
        let json = serde_json::to_value(p.shared()).expect("serializes");
        assert_eq!(json["status"], 422);
        assert_eq!(json["field"], "customer.id");
        assert_eq!(
            json["type"],
            format!("{PROBLEM_TYPE_BASE}unmappable-payload")
        );
        assert!(json.get("line").is_none());
        let r = Problem::new(ProblemKind::RateLimited, "slow down")
            .retry_after(0)
            .into_response();
        assert_eq!(
            r.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from(1u64))
        );
    }
}
