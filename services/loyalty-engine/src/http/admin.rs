//! Admin endpoints, behind the admin role (`auth::Admin`).
//!
//! `POST /v1/customers/{id}/tier-override` `{"tier", "reason", "expires_at", "set_by"}` sets a
//! manual tier until `expires_at`; it is audited (`tier_overrides`, `set_by` recording the
//! caller's name, then the body's `set_by` if given), published as a `TierChanged` of kind
//! OVERRIDE, and the customer returns to the rules when it expires.
//!
//! [`check_admin_token`] is the single-token check kizuna-webhooks guards its admin API with.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use super::auth::Admin;
use super::problem::{AdminRoleProblems, ApiJson, ApiPath, DatabaseUnavailable, Problem};
use super::{AppState, view};
use crate::domain::ids::CustomerId;
use crate::engine::overrides::{OverrideError, OverrideRequest, set_override};

/// Checks the bearer token in constant time: 403 when no token is configured, 401 with
/// `WWW-Authenticate: Bearer realm="kizuna"` when it is missing or wrong.
/// kizuna-webhooks guards its admin API with it too.
pub fn check_admin_token(token: Option<&SecretString>, headers: &HeaderMap) -> Result<(), Problem> {
    let Some(expected) = token else {
        return Err(Problem::admin_disabled());
    };
    let given = headers
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
        Ok(())
    } else {
        Err(Problem::bearer_required())
    }
}

/// The customer after the override.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Overridden<'a> {
    pub customer: view::CustomerView<'a>,
}

/// Sets a manual tier until `expires_at`: audited (`set_by` records the caller's name, then the
/// body's `set_by` if given), published as a `TierChanged` of kind OVERRIDE; the customer
/// returns to the rules when it expires. Needs the admin role.
#[utoipa::path(
    post,
    path = "/v1/customers/{id}/tier-override",
    tag = "admin",
    params(("id" = String, Path, description = "The customer id")),
    request_body = OverrideRequest,
    security(("bearerToken" = []), ("jwt" = [])),
    responses(
        (status = 200, description = "The override is set", body = Overridden),
        (status = 400, description = "Unknown tier, missing reason, expires_at in the past, invalid id", body = Problem, content_type = "application/problem+json"),
        AdminRoleProblems,
        (status = 404, description = "Unknown customer", body = Problem, content_type = "application/problem+json"),
        DatabaseUnavailable,
    ),
)]
pub async fn set_tier_override(
    Admin(caller): Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(mut req): ApiJson<OverrideRequest>,
) -> Result<Response, Problem> {
    req.set_by = caller.audit_name(Some(&req.set_by));
    let Ok(customer) = CustomerId::parse(&id, state.limits.max_id_len) else {
        return Err(Problem::malformed("invalid customer id").field("id"));
    };
    match set_override(&state.core, &customer, &req).await {
        Ok(done) => {
            let model = state.core.model.get();
            let body = Overridden {
                customer: view::customer(
                    &done.state,
                    &done.metrics,
                    &state.core.programme,
                    model.as_deref(),
                    done.now,
                ),
            };
            Ok(ApiJson(body).into_response())
        }
        Err(OverrideError::UnknownTier) => Err(Problem::malformed("unknown tier").field("tier")),
        Err(OverrideError::MissingReason) => {
            Err(Problem::malformed("a reason is required").field("reason"))
        }
        Err(OverrideError::UnknownCustomer) => Err(Problem::not_found("unknown customer")),
        Err(OverrideError::InThePast) => {
            Err(Problem::malformed("expires_at must be in the future").field("expires_at"))
        }
        Err(OverrideError::Store(e)) => {
            tracing::warn!(error = format!("{e:#}"), "tier override failed");
            Err(Problem::unavailable("the database is unavailable"))
        }
    }
}

/// The state of the recompute started through the admin API.
#[derive(Debug, Default, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RecomputeJob {
    /// `running`, `finished` or `failed` (`""` before the first run).
    pub state: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub customers: u64,
    pub changed_tiers: u64,
    pub outputs: u64,
    pub error: Option<String>,
}

/// The admin API's answer about a recompute.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RecomputeStatus {
    pub recompute: RecomputeJob,
}

fn job_answer(status: StatusCode, job: RecomputeJob) -> Response {
    (status, ApiJson(RecomputeStatus { recompute: job })).into_response()
}

/// Starts `kizuna recompute` in the background (202), or says a run is already going (409).
/// Needs the admin role.
#[utoipa::path(
    post,
    path = "/v1/admin/recompute",
    tag = "admin",
    security(("bearerToken" = []), ("jwt" = [])),
    responses(
        (status = 202, description = "Started", body = RecomputeStatus),
        (status = 409, description = "A recompute is already running (its state)", body = RecomputeStatus),
        AdminRoleProblems,
    ),
)]
pub async fn start_recompute(_: Admin, State(state): State<AppState>) -> Result<Response, Problem> {
    {
        let Ok(mut job) = state.recompute.lock() else {
            return Err(Problem::internal("recompute state unavailable"));
        };
        if job.state == "running" {
            return Ok(job_answer(StatusCode::CONFLICT, job.clone()));
        }
        *job = RecomputeJob {
            state: "running".into(),
            started_at: Some(Utc::now()),
            ..Default::default()
        };
    }
    let st = state.clone();
    tokio::spawn(async move {
        let now = match st.now().await {
            Ok(t) => t,
            Err(_) => Utc::now(),
        };
        let result = crate::engine::recompute::run(&st.core, now, 500, |done, _| {
            if let Ok(mut job) = st.recompute.lock() {
                job.customers = done;
            }
        })
        .await;
        if let Ok(mut job) = st.recompute.lock() {
            job.finished_at = Some(Utc::now());
            match result {
                Ok(report) => {
                    job.state = "finished".into();
                    job.customers = report.customers;
                    job.changed_tiers = report.changed_tiers;
                    job.outputs = report.outputs;
                }
                Err(e) => {
                    job.state = "failed".into();
                    job.error = Some(format!("{e:#}"));
                }
            }
        }
    });
    tracing::info!("recompute started through the admin API");
    let job = state
        .recompute
        .lock()
        .map(|j| j.clone())
        .unwrap_or_default();
    Ok(job_answer(StatusCode::ACCEPTED, job))
}

/// The last recompute's state. Needs the admin role.
#[utoipa::path(
    get,
    path = "/v1/admin/recompute",
    tag = "admin",
    security(("bearerToken" = []), ("jwt" = [])),
    responses(
        (status = 200, description = "The last recompute's state", body = RecomputeStatus),
        AdminRoleProblems,
    ),
)]
pub async fn recompute_status(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Response, Problem> {
    let job = state
        .recompute
        .lock()
        .map(|j| j.clone())
        .unwrap_or_default();
    Ok(job_answer(StatusCode::OK, job))
}
