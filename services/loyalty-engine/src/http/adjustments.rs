//! `POST /v1/customers/{id}/points/adjustments`: points granted (goodwill) or taken back (a
//! grant made by mistake) by an operator, behind the admin role. The movement records the
//! caller's name, then the `X-Kizuna-Operator` header if given.
//!
//! The request becomes an input event (`adjustment:<key>`, [`EventBody::Adjustment`]) handled in
//! the same transaction as a redemption (`redemptions::run`: the key claimed, the customer's row
//! locked, the event recorded in the event ledger so `recompute` keeps it, applied, the answer
//! stored). The domain turns it into one `Adjust` movement, `adjust:<key>`; a deduction beyond
//! the spendable points is refused (409 `insufficient-points`), never turned into debt.
//!
//! The reason is the operator's free text: it is stored and shown in the points history, never
//! logged.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};

use super::AppState;
use super::auth::Admin;
use super::problem::{AdminRoleProblems, ApiJson, ApiPath, DatabaseUnavailable, Problem};
use super::redemptions::{self, AdjustmentAnswer, InsufficientPoints, Operation};
use crate::domain::event::{Adjustment, EventBody};

/// The header that names who made the adjustment, after the caller's name (optional).
pub const OPERATOR: &str = "X-Kizuna-Operator";

/// Longest operator name, in characters.
const MAX_OPERATOR_LEN: usize = 100;

/// Most points one adjustment may grant or take back.
pub const MAX_POINTS: i64 = 1_000_000;

/// Longest reason, in characters.
pub const MAX_REASON_LEN: usize = 500;

/// Points granted (positive) or taken back (negative) by hand.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentRequest {
    /// Whole points, non-zero, at most 1,000,000 either way: positive grants a lot spendable at
    /// once, negative takes points back from the soonest-expiring lots (never more than are
    /// spendable).
    #[schema(example = 500)]
    pub points: i64,
    /// Why (1 to 500 characters): shown in the points history, never logged.
    #[schema(example = "sorry for the late parcel")]
    pub reason: String,
    /// When granted points expire (after now); without it, the programme's expiry rules from
    /// now. Only with positive points.
    pub expires_at: Option<DateTime<Utc>>,
}

fn invalid(detail: String, reason: &'static str, field: &str) -> Problem {
    Problem::invalid(detail).reason(reason).field(field)
}

/// Checks what the domain is not asked about: the size of the points, the reason, the expiry.
fn check(req: &AdjustmentRequest) -> Result<(), Problem> {
    if req.points == 0 {
        return Err(invalid(
            "an adjustment of 0 points changes nothing".into(),
            "points_zero",
            "points",
        ));
    }
    if req.points.unsigned_abs() > MAX_POINTS.unsigned_abs() {
        return Err(invalid(
            format!("an adjustment is at most {MAX_POINTS} points either way"),
            "points_too_large",
            "points",
        ));
    }
    let len = req.reason.trim().chars().count();
    if len == 0 || req.reason.chars().count() > MAX_REASON_LEN {
        return Err(invalid(
            format!("a reason of 1 to {MAX_REASON_LEN} characters is required"),
            "invalid_reason",
            "reason",
        ));
    }
    if req.points < 0 && req.expires_at.is_some() {
        return Err(invalid(
            "expires_at is only for points granted".into(),
            "expires_at_with_deduction",
            "expires_at",
        ));
    }
    Ok(())
}

/// The [`OPERATOR`] header, if given.
fn operator(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(OPERATOR) else {
        return Ok(None);
    };
    let bad = || {
        Problem::malformed(format!(
            "the {OPERATOR} header is 1 to {MAX_OPERATOR_LEN} visible ASCII characters"
        ))
        .field(OPERATOR)
    };
    let name = value.to_str().map_err(|_| bad())?.trim();
    if name.is_empty() || name.chars().count() > MAX_OPERATOR_LEN {
        return Err(bad());
    }
    Ok(Some(name.to_owned()))
}

/// Grants or takes back points by hand, with a reason. Needs the admin role and an
/// `Idempotency-Key`: the same key again returns the first answer unchanged. The movement
/// records the caller's name, then `X-Kizuna-Operator` if given.
#[utoipa::path(
    post,
    path = "/v1/customers/{id}/points/adjustments",
    tag = "admin",
    params(
        ("id" = String, Path, description = "The customer id"),
        ("Idempotency-Key" = String, Header, description = "Names this adjustment (1 to 128 visible ASCII characters); a retry with the same key gets the first answer"),
        ("X-Kizuna-Operator" = Option<String>, Header, description = "Who makes the adjustment, recorded in its reason after the caller's token name"),
    ),
    request_body = AdjustmentRequest,
    security(("bearerToken" = []), ("jwt" = [])),
    responses(
        (status = 201, description = "Adjusted: the points granted or taken back and the balance after", body = AdjustmentAnswer),
        (status = 400, description = "No or an invalid Idempotency-Key or X-Kizuna-Operator, invalid customer id, a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        AdminRoleProblems,
        (status = 404, description = "Unknown customer", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`insufficient-points`: more taken back than is spendable (with the balance), or `points-disabled`", body = InsufficientPoints, content_type = "application/problem+json"),
        (status = 422, description = "A body of the wrong shape (unknown fields included), `points_zero`, `points_too_large`, `invalid_reason`, `expires_at_with_deduction`, `expires_before_grant` (the problem's `reason`), or `idempotency-key-reused`: the key was used for a different request", body = Problem, content_type = "application/problem+json"),
        DatabaseUnavailable,
    ),
)]
pub async fn adjust(
    Admin(caller): Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<AdjustmentRequest>,
) -> Result<Response, Problem> {
    let customer = redemptions::customer_id(&state, &id)?;
    let key = redemptions::idempotency_key(&headers)?;
    check(&req)?;
    let by = caller.audit_name(operator(&headers)?.as_deref());
    let request = serde_json::to_value(&req).unwrap_or_default();
    let points = req.points;
    let body = EventBody::Adjustment(Adjustment {
        adjustment_id: key.clone(),
        points,
        reason: req.reason,
        expires_at: req.expires_at,
        by,
    });
    let response =
        redemptions::run(&state, &customer, Operation::Adjust, &key, request, body).await?;
    if response.status() == StatusCode::CREATED {
        // Never the reason nor the operator: free text.
        tracing::info!(customer = customer.as_str(), points, "points adjusted");
    }
    Ok(response)
}
