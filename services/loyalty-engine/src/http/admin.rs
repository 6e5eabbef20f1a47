//! Admin endpoints, behind a bearer token (`http.admin_token`).
//!
//! `POST /v1/customers/{id}/tier-override` `{"tier", "reason", "expires_at", "set_by"}` sets a
//! manual tier until `expires_at`; it is audited (`tier_overrides`), published as a
//! `TierChanged` of kind OVERRIDE, and the customer returns to the rules when it expires.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde_json::json;

use super::{AppState, error, view};
use crate::domain::apply::override_tier;
use crate::domain::ids::CustomerId;
use crate::domain::tier::TierOverride;
use crate::store::changes::{self, Evaluated};
use crate::store::{audit, customers};

/// Checks the bearer token in constant time.
pub fn authorized(state: &AppState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(expected) = &state.admin_token else {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "the admin API is disabled: set http.admin_token",
        )));
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
        Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required",
        )))
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct OverrideRequest {
    pub tier: String,
    pub reason: String,
    pub expires_at: DateTime<Utc>,
    /// Who sets it (an operator's name or email, for the audit trail).
    pub set_by: String,
}

pub async fn set_tier_override(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(req): Json<OverrideRequest>,
) -> Response {
    if let Err(denied) = authorized(&state, &headers) {
        return *denied;
    }
    let Ok(customer) = CustomerId::parse(&id, state.limits.max_id_len) else {
        return error(StatusCode::BAD_REQUEST, "invalid customer id");
    };
    if state.programme.tier_named(&req.tier).is_none() {
        return error(StatusCode::BAD_REQUEST, "unknown tier");
    }
    if req.reason.trim().is_empty() || req.set_by.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "reason and set_by are required");
    }
    match apply_override(&state, &customer, req).await {
        Ok(Some(body)) => Json(body).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "unknown customer"),
        Err(OverrideError::InThePast) => {
            error(StatusCode::BAD_REQUEST, "expires_at must be in the future")
        }
        Err(OverrideError::Store(e)) => {
            tracing::warn!(error = format!("{e:#}"), "tier override failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable",
            )
        }
    }
}

enum OverrideError {
    InThePast,
    Store(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for OverrideError {
    fn from(e: E) -> Self {
        OverrideError::Store(e.into())
    }
}

async fn apply_override(
    state: &AppState,
    customer: &CustomerId,
    req: OverrideRequest,
) -> Result<Option<serde_json::Value>, OverrideError> {
    let mut tx = state.pool.begin().await?;
    let now = state.clock.now(&mut tx, &state.group_id, None).await?;
    if req.expires_at <= now {
        return Err(OverrideError::InThePast);
    }
    let mut loaded = customers::load_for_update(&mut tx, &[customer]).await?;
    let Some(customers::Loaded {
        state: current,
        home_partition: home,
        version,
    }) = loaded.remove(customer)
    else {
        return Ok(None);
    };
    let previous_tier = current.tier().to_owned();
    let manual = TierOverride {
        tier: req.tier.clone(),
        reason: req.reason.clone(),
        expires_at: req.expires_at,
        set_at: now,
        set_by: req.set_by.clone(),
    };
    let (next, metrics, outputs) = override_tier(
        current,
        manual,
        &state.programme,
        state.model.get().as_deref(),
        now,
    );
    let body = view::customer(
        &next,
        &metrics,
        &state.programme,
        state.model.get().as_deref(),
        now,
    );
    let evaluated = [Evaluated {
        state: next,
        home_partition: home,
        metrics,
        outputs,
        replaces: version,
    }];
    changes::write(
        &mut tx,
        &evaluated,
        Vec::new(),
        &state.topics,
        &state.programme,
    )
    .await?;
    audit::record_override(
        &mut tx,
        customer.as_str(),
        &previous_tier,
        &req.tier,
        &req.reason,
        &req.set_by,
        now,
        req.expires_at,
    )
    .await?;
    tx.commit().await?;
    for out in &evaluated[0].outputs {
        state.metrics.output(out);
    }
    tracing::info!(tier = %req.tier, "manual tier override set");
    Ok(Some(json!({ "customer": body })))
}

/// The state of the recompute started through the admin API.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RecomputeJob {
    pub state: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub customers: u64,
    pub changed_tiers: u64,
    pub outputs: u64,
    pub error: Option<String>,
}

/// `POST /v1/admin/recompute`: starts `kizuna recompute` in the background (202), or says a
/// run is already going (409).
pub async fn start_recompute(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorized(&state, &headers) {
        return *denied;
    }
    {
        let Ok(mut job) = state.recompute.lock() else {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "recompute state unavailable",
            );
        };
        if job.state == "running" {
            return (
                StatusCode::CONFLICT,
                Json(json!({ "recompute": job.clone() })),
            )
                .into_response();
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
        let model = st.model.get();
        let result = crate::commands::recompute::run(
            &st.pool,
            &st.programme,
            model.as_deref(),
            &st.topics,
            now,
            500,
        )
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
    (StatusCode::ACCEPTED, Json(json!({ "recompute": job }))).into_response()
}

/// `GET /v1/admin/recompute`: the last recompute's state.
pub async fn recompute_status(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorized(&state, &headers) {
        return *denied;
    }
    let job = state
        .recompute
        .lock()
        .map(|j| j.clone())
        .unwrap_or_default();
    Json(json!({ "recompute": job })).into_response()
}
