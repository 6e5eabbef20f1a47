//! RFC 9457 problem details (`application/problem+json`): the one error body of every Kizuna
//! HTTP API (the engine's, the gateway's and kizuna-webhooks'), the framework's own rejections
//! included.
//!
//! - [`Problem`]: `type`, `title`, `status`, `detail`, plus the extensions `field`, `reason`,
//!   `line` and `required_role`; a 401 carries `WWW-Authenticate`, a 429 or 503 may carry `Retry-After`.
//! - [`ApiJson`], [`ApiQuery`], [`ApiPath`]: axum's extractors with their rejections answered
//!   as problems (bad JSON, wrong content type, bad path or query parameters).
//! - [`not_found`] and [`method_not_allowed`]: the routers' fallbacks.
//! - [`errors_as_problems`]: a response mapper, the net under everything else: any error
//!   response that is neither a problem nor JSON (axum's plain-text rejections, an empty 405,
//!   a body-limit 413) is rewritten as a problem of its status, keeping its headers.
//! - [`add_default_problem_responses`]: documents the same in an OpenAPI document.
//! - [`AdminTokenProblems`], [`RoleProblems`], [`AdminRoleProblems`], [`DatabaseUnavailable`],
//!   [`AdminProblems`]: the responses many operations share, for
//!   `#[utoipa::path(responses(...))]`.
//!
//! `type` is a URI into the README's table of problem types ([`TYPE_BASE`] + slug).

use std::borrow::Cow;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// `application/problem+json`
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Base of the problem `type` URIs: the README's table of problem types.
pub const TYPE_BASE: &str = "https://github.com/kizuna-loyalty/kizuna/blob/main/README.md#problem-";

/// `WWW-Authenticate` of a 401 on an endpoint behind an admin bearer token.
pub const BEARER_CHALLENGE: &str = "Bearer realm=\"kizuna\"";

/// An RFC 9457 problem, boxed (it travels in `Err`s): its [`Details`] and the headers that go
/// with it. Serializes as its details.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem(Box<Details>);

impl Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl utoipa::PartialSchema for Problem {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <Details as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for Problem {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Problem")
    }
}

/// The 401 and 403 of an endpoint behind the admin bearer token (`http.admin_token`), for
/// `#[utoipa::path(responses(..., AdminTokenProblems))]`.
#[derive(Debug, utoipa::IntoResponses)]
pub enum AdminTokenProblems {
    #[response(status = 401, description = "No or a wrong bearer token", content_type = "application/problem+json",
        headers(("WWW-Authenticate" = String, description = "Bearer realm=\"kizuna\"")))]
    Unauthorized(Problem),
    #[response(
        status = 403,
        description = "The admin API is disabled (no http.admin_token)",
        content_type = "application/problem+json"
    )]
    Disabled(Problem),
}

/// The 401 and 403 of an endpoint behind a role (`http::auth`), for
/// `#[utoipa::path(responses(..., RoleProblems))]`.
#[derive(Debug, utoipa::IntoResponses)]
pub enum RoleProblems {
    #[response(status = 401, description = "No bearer token, or one that is not valid", content_type = "application/problem+json",
        headers(("WWW-Authenticate" = String, description = "Bearer realm=\"kizuna\" (with error=\"invalid_token\" for a token that is not valid)")))]
    Unauthorized(Problem),
    #[response(
        status = 403,
        description = "`role-required`: the caller's role is below the endpoint's (`required_role` names it); `access-not-configured`: no token and no JWT issuer is configured",
        content_type = "application/problem+json"
    )]
    Forbidden(Problem),
}

/// [`RoleProblems`] and the 429 of an admin endpoint (rate limited per caller), for
/// `#[utoipa::path(responses(..., AdminRoleProblems))]`.
#[derive(Debug)]
pub struct AdminRoleProblems;

/// The 429 of an admin endpoint.
#[derive(Debug, utoipa::IntoResponses)]
#[response(
    status = 429,
    description = "Over http.admin_requests_per_minute for this caller",
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait"))
)]
pub struct AdminRateLimited(pub Problem);

impl utoipa::IntoResponses for AdminRoleProblems {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        let mut responses = RoleProblems::responses();
        responses.extend(AdminRateLimited::responses());
        responses
    }
}

/// The 503 of an endpoint that needs the database, for
/// `#[utoipa::path(responses(..., DatabaseUnavailable))]`.
#[derive(Debug, utoipa::IntoResponses)]
#[response(
    status = 503,
    description = "The database is unavailable",
    content_type = "application/problem+json"
)]
pub struct DatabaseUnavailable(pub Problem);

/// [`AdminTokenProblems`] and [`DatabaseUnavailable`]: the problems of an admin endpoint that
/// reads or writes the database.
#[derive(Debug)]
pub struct AdminProblems;

impl utoipa::IntoResponses for AdminProblems {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        let mut responses = AdminTokenProblems::responses();
        responses.extend(DatabaseUnavailable::responses());
        responses
    }
}

/// An RFC 9457 problem details body (`application/problem+json`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(
    description = "RFC 9457 problem details (application/problem+json). `type` links to the README's table of problem types.",
    example = json!({
        "type": "https://github.com/kizuna-loyalty/kizuna/blob/main/README.md#problem-malformed-request",
        "title": "The request is malformed",
        "status": 400,
        "detail": "Failed to parse the request body as JSON: expected value at line 1 column 2"
    })
)]
pub struct Details {
    /// A URI naming the kind of problem: the README's anchor for it.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short summary of the kind of problem; the same for every problem of the type.
    pub title: Cow<'static, str>,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// Extension: the request field (a dotted path, or a header name) the problem is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Extension: a low-cardinality reason, the engine's dead-letter reason where one applies
    /// (e.g. `missing_field`, `currency_mismatch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Cow<'static, str>>,
    /// Extension (JSON lines bodies): the 1-based line the problem is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub line: Option<u64>,
    /// Extension (403 `role-required`): the role the endpoint needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_role: Option<&'static str>,
    #[serde(skip)]
    www_authenticate: Option<Cow<'static, str>>,
    #[serde(skip)]
    retry_after_secs: Option<u64>,
}

/// The slug and title of the generic problem of a status.
fn generic(status: StatusCode) -> Option<(&'static str, &'static str)> {
    Some(match status.as_u16() {
        400 => ("malformed-request", "The request is malformed"),
        401 => ("unauthorized", "Unauthorized"),
        403 => ("forbidden", "Forbidden"),
        404 => ("not-found", "Not found"),
        405 => ("method-not-allowed", "Method not allowed"),
        406 => ("not-acceptable", "Not acceptable"),
        408 => ("request-timeout", "Request timeout"),
        409 => ("conflict", "Conflict"),
        413 => ("payload-too-large", "The payload is too large"),
        415 => ("unsupported-media-type", "Unsupported media type"),
        422 => ("invalid-request", "Invalid request"),
        429 => ("rate-limited", "Too many requests"),
        500 => ("internal-error", "Internal error"),
        503 => ("unavailable", "Service unavailable"),
        _ => return None,
    })
}

impl Problem {
    /// A problem of its own type: `type` is [`TYPE_BASE`] + `slug`.
    pub fn new(
        status: StatusCode,
        slug: &str,
        title: impl Into<Cow<'static, str>>,
        detail: impl Into<String>,
    ) -> Self {
        Self(Box::new(Details {
            type_uri: format!("{TYPE_BASE}{slug}"),
            title: title.into(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            reason: None,
            line: None,
            required_role: None,
            www_authenticate: None,
            retry_after_secs: None,
        }))
    }

    /// The generic problem of a status (`malformed-request` for 400, `not-found` for 404, …);
    /// `about:blank` with the status' reason phrase for a status without one.
    pub fn status(status: StatusCode, detail: impl Into<String>) -> Self {
        match generic(status) {
            Some((slug, title)) => Self::new(status, slug, title, detail),
            None => {
                let mut p = Self::new(
                    status,
                    "",
                    status.canonical_reason().unwrap_or("Error"),
                    detail,
                );
                p.0.type_uri = "about:blank".into();
                p
            }
        }
    }

    /// 400 `malformed-request`.
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::status(StatusCode::BAD_REQUEST, detail)
    }

    /// 422 `invalid-request`: well-formed, but a value is not acceptable.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::status(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    /// 404 `not-found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::status(StatusCode::NOT_FOUND, detail)
    }

    /// 409 `conflict`.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::status(StatusCode::CONFLICT, detail)
    }

    /// 503 `unavailable`: the database (or the broker) did not answer.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::status(StatusCode::SERVICE_UNAVAILABLE, detail)
    }

    /// 500 `internal-error`.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::status(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }

    /// 401 `unauthorized` with `WWW-Authenticate: Bearer realm="kizuna"`: an endpoint behind an
    /// admin bearer token, called without it or with a wrong one.
    pub fn bearer_required() -> Self {
        Self::status(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required (Authorization: Bearer <token>)",
        )
        .challenge(BEARER_CHALLENGE)
    }

    /// 403 `admin-disabled`: no admin token is configured, so the admin API is off.
    pub fn admin_disabled() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "admin-disabled",
            "The admin API is disabled",
            "the admin API is disabled: set http.admin_token",
        )
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.0.field = Some(field.into());
        self
    }

    pub fn reason(mut self, reason: impl Into<Cow<'static, str>>) -> Self {
        self.0.reason = Some(reason.into());
        self
    }

    pub fn line(mut self, line: usize) -> Self {
        self.0.line = Some(line as u64);
        self
    }

    /// The role an endpoint needs (a 403 `role-required`).
    pub fn required_role(mut self, role: &'static str) -> Self {
        self.0.required_role = Some(role);
        self
    }

    /// `WWW-Authenticate` (a 401's challenge).
    pub fn challenge(mut self, challenge: impl Into<Cow<'static, str>>) -> Self {
        self.0.www_authenticate = Some(challenge.into());
        self
    }

    /// `Retry-After`, in seconds (at least 1).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.0.retry_after_secs = Some(secs.max(1));
        self
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The body.
    pub fn details(&self) -> &Details {
        &self.0
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (self.status_code(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(challenge) = self
            .0
            .www_authenticate
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Some(secs) = self.0.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<sqlx::Error> for Problem {
    /// A database error: logged, answered 503 `unavailable`.
    fn from(e: sqlx::Error) -> Self {
        tracing::warn!(error = %e, "HTTP API: database error");
        Problem::unavailable("the database is unavailable")
    }
}

impl From<JsonRejection> for Problem {
    fn from(r: JsonRejection) -> Self {
        // 400 not JSON, 415 no JSON content type, 422 JSON of the wrong shape, 413 too large.
        Problem::status(r.status(), r.body_text())
    }
}

impl From<QueryRejection> for Problem {
    fn from(r: QueryRejection) -> Self {
        Problem::status(StatusCode::BAD_REQUEST, r.body_text())
    }
}

impl From<PathRejection> for Problem {
    fn from(r: PathRejection) -> Self {
        Problem::status(r.status(), r.body_text())
    }
}

/// `axum::Json`, with its rejections answered as problems.
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

/// `axum::extract::Query`, with its rejections answered as problems.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    axum::extract::Query<T>: FromRequestParts<S, Rejection = QueryRejection>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// `axum::extract::Path`, with its rejections answered as problems.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    axum::extract::Path<T>: FromRequestParts<S, Rejection = PathRejection>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// The routers' fallback: 404 `not-found`.
pub async fn not_found(uri: axum::http::Uri) -> Problem {
    Problem::not_found(format!("no such endpoint: {}", uri.path()))
}

/// The routers' method fallback: 405 `method-not-allowed` (axum adds `Allow`).
pub async fn method_not_allowed(method: axum::http::Method) -> Problem {
    Problem::status(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on this endpoint (see Allow)"),
    )
}

/// Largest plain-text error body read back into a problem's `detail`.
const MAX_PLAIN_DETAIL: usize = 4096;

/// A response mapper (`axum::middleware::map_response`), the last layer of every router: an
/// error response (4xx, 5xx) that is neither `application/problem+json` nor JSON (a probe's
/// status) becomes the generic problem of its status, its text as `detail`, its other headers
/// (`Allow`, `WWW-Authenticate`, `Retry-After`) kept.
pub async fn errors_as_problems(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.trim().to_ascii_lowercase();
            ct.starts_with(PROBLEM_JSON) || ct.starts_with("application/json")
        });
    if json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_DETAIL)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let detail = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_owned()
    } else {
        text
    };
    let mut mapped = Problem::status(status, detail).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            mapped.headers_mut().append(name, value.clone());
        }
    }
    mapped
}

/// Documents in `doc` what [`errors_as_problems`] guarantees: every operation gets a `default`
/// response, a [`Problem`], besides the statuses it documents itself; the schema is added to
/// the components.
pub fn add_default_problem_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let components = doc.components.get_or_insert_with(Default::default);
    if !components.schemas.contains_key("Problem") {
        let mut schemas = Vec::new();
        <Problem as utoipa::ToSchema>::schemas(&mut schemas);
        components.schemas.insert(
            "Problem".to_owned(),
            <Problem as utoipa::PartialSchema>::schema(),
        );
        components.schemas.extend(schemas);
    }
    let response = ResponseBuilder::new()
        .description("Any other error: RFC 9457 problem details")
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build();
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            op.responses
                .responses
                .entry("default".to_owned())
                .or_insert_with(|| response.clone().into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_rfc_9457_json_with_its_headers() {
        let response = Problem::bearer_required().into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static(PROBLEM_JSON))
        );
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE),
            Some(&HeaderValue::from_static(BEARER_CHALLENGE))
        );
        let p = Problem::invalid("customer.id is missing")
            .field("customer.id")
            .reason("missing_field");
        let json = serde_json::to_value(&p).expect("serializes");
        assert_eq!(json["status"], 422);
        assert_eq!(json["title"], "Invalid request");
        assert_eq!(json["field"], "customer.id");
        assert_eq!(json["type"], format!("{TYPE_BASE}invalid-request"));
        assert!(json.get("line").is_none());
        let r = Problem::unavailable("later").retry_after(0).into_response();
        assert_eq!(
            r.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from(1u64))
        );
        let teapot = serde_json::to_value(Problem::status(StatusCode::IM_A_TEAPOT, "no"))
            .expect("serializes");
        assert_eq!(teapot["type"], "about:blank");
        assert_eq!(teapot["title"], "I'm a teapot");
    }
}
