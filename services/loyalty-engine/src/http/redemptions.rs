//! `POST /v1/customers/{id}/redemptions` and `POST /v1/customers/{id}/redemptions/{key}/cancel`:
//! points spent on a reward, and given back, without double spend. Manual adjustments
//! (`adjustments`) go through the same transaction.
//!
//! Each request is one transaction:
//! 1. its `Idempotency-Key` is claimed in `points_redemptions` (a second request with the same
//!    key waits for the first to end, then gets its stored answer, byte for byte; the same key
//!    with a different request is refused);
//! 2. the customer's row is locked (`FOR UPDATE`, the lock ingest takes too), so concurrent
//!    redemptions and ingest batches for one customer run one after the other; "now" is read
//!    under the lock and never before the customer's last movement (the fold ignores movements
//!    after its moment, so an earlier date would not see a redemption committed meanwhile);
//! 3. the request becomes an input event (`redemption:<key>` / `redemption-cancel:<key>`),
//!    recorded in the event ledger (so `recompute` keeps it) and applied like any event: the
//!    domain decides, on the points folded at that moment;
//! 4. an accepted redemption that would add debt (points spent that were not there) is
//!    refused with a 500 and rolled back: the fold turns an overspend into debt, which the
//!    `points_available >= 0` constraint cannot see;
//! 5. the state, its outputs (`PointsChanged`) and the answer are written; commit.
//!
//! Refusals that depend on the points (409 `insufficient_points`, 422 `unknown_reward`, …) are
//! stored like acceptances; refusals that change nothing (404 unknown customer or redemption,
//! 503) are not, so a retry after the cause has gone can succeed.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::auth::Operator;
use super::problem::{ApiJson, ApiPath, DatabaseUnavailable, PROBLEM_JSON, Problem, RoleProblems};
use crate::domain::event::{DomainEvent, EventBody, EventMeta, Redemption, RedemptionCancel};
use crate::domain::ids::{CustomerId, EventId};
use crate::domain::points::redeem::RedeemError;
use crate::domain::points::{Folded, Outcome, PointsRules, Refusal};
use crate::engine::apply::apply_events;
use crate::engine::write;
use crate::store::customers;
use crate::store::ledger::{self, LedgerRow};
use crate::store::points::{self, Claim};

/// The request header that names a redemption (and makes retries safe).
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// Longest `Idempotency-Key`, in bytes (visible ASCII only).
pub const MAX_KEY_LEN: usize = 128;

/// Points to spend, on a reward of the catalogue or at the till.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedemptionRequest {
    /// Whole points, positive; a reward's cost when `reward` is given.
    #[schema(example = 300)]
    pub points: i64,
    /// A reward id of the programme's catalogue (`[[points.reward]]`); absent for points spent
    /// at the till.
    #[schema(example = "coffee")]
    pub reward: Option<String>,
}

/// A customer's points after a redemption, a cancel or an adjustment.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PointsAfter {
    /// Spendable points after it.
    pub available: i64,
    /// Points still inside their pending period.
    pub pending: i64,
    /// Points owed (clawbacks of points already spent), paid from future earns first.
    pub debt: i64,
    /// The balance as the programme shows it (`available`, or `available − debt` with
    /// `negative_balance = "negative"`).
    pub balance: i64,
}

impl PointsAfter {
    fn of(folded: &Folded, rules: &PointsRules) -> Self {
        Self {
            available: folded.available,
            pending: folded.pending,
            debt: folded.debt,
            balance: folded.balance(rules.earn.negative_balance),
        }
    }
}

/// A redemption accepted (or a cancel applied), with the customer's points after it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RedemptionAnswer {
    /// The `Idempotency-Key` of the redemption.
    pub redemption_id: String,
    /// `redeemed` or `cancelled`.
    pub status: &'static str,
    /// Points taken (a redemption) or given back (a cancel).
    pub points: i64,
    #[serde(flatten)]
    pub after: PointsAfter,
}

/// An adjustment applied, with the customer's points after it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AdjustmentAnswer {
    /// The `Idempotency-Key` of the adjustment.
    pub adjustment_id: String,
    /// `adjusted`.
    pub status: &'static str,
    /// Points granted (positive) or taken back (negative).
    pub points: i64,
    #[serde(flatten)]
    pub after: PointsAfter,
}

/// The 409 `insufficient-points` problem: RFC 9457 details with the balance.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct InsufficientPoints {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// `insufficient_points`
    pub reason: String,
    /// The points asked for.
    pub requested: i64,
    /// What could be spent: available points less any debt.
    pub available: i64,
    pub pending: i64,
    pub debt: i64,
}

/// What is being done: the idempotency table's `operation` and the event's id prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operation {
    Redeem,
    Cancel,
    /// A manual adjustment (`adjustments`).
    Adjust,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Redeem => "redeem",
            Operation::Cancel => "cancel",
            Operation::Adjust => "adjust",
        }
    }

    fn event_id(self, key: &str) -> String {
        match self {
            Operation::Redeem => format!("redemption:{key}"),
            Operation::Cancel => format!("redemption-cancel:{key}"),
            Operation::Adjust => format!("adjustment:{key}"),
        }
    }
}

/// An answer as stored: its status and its body's bytes.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: StatusCode,
    body: String,
}

impl Answer {
    fn json(status: StatusCode, body: &impl serde::Serialize) -> Self {
        Self {
            status,
            body: serde_json::to_string(body).unwrap_or_default(),
        }
    }

    /// A problem, with extension members added to its details.
    fn problem(problem: &Problem, extra: Value) -> Self {
        let mut body = serde_json::to_value(problem).unwrap_or_default();
        if let (Some(obj), Value::Object(more)) = (body.as_object_mut(), extra) {
            obj.extend(more);
        }
        Self::json(problem.status_code(), &body)
    }

    fn into_response(self) -> Response {
        let content_type = if self.status.is_client_error() || self.status.is_server_error() {
            PROBLEM_JSON
        } else {
            "application/json"
        };
        let mut response = (self.status, self.body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    }
}

/// 409 `points-disabled`: no points to redeem.
fn points_disabled() -> Problem {
    super::points::points_disabled(StatusCode::CONFLICT)
}

/// 1 to [`MAX_KEY_LEN`] visible ASCII characters.
fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic())
}

/// The `Idempotency-Key` header: present, 1 to [`MAX_KEY_LEN`] visible ASCII characters.
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<String, Problem> {
    let missing = || {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "idempotency-key-required",
            "An Idempotency-Key is required",
            format!(
                "the {IDEMPOTENCY_KEY} header is required: 1 to {MAX_KEY_LEN} visible ASCII characters naming this request"
            ),
        )
        .field(IDEMPOTENCY_KEY)
        .reason("idempotency_key")
    };
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(missing)?;
    if !is_valid_key(key) {
        return Err(missing());
    }
    Ok(key.to_owned())
}

fn valid_key(key: &str) -> Result<(), Problem> {
    if !is_valid_key(key) {
        return Err(Problem::malformed(format!(
            "a redemption id is 1 to {MAX_KEY_LEN} visible ASCII characters"
        ))
        .field("key"));
    }
    Ok(())
}

/// Spends points: on a reward of the catalogue (its cost, the customer's tier at least its
/// lowest tier) or at the till. Needs an `Idempotency-Key`: the same key again returns the
/// first answer unchanged, whatever happened since. Needs the operator role.
#[utoipa::path(
    post,
    path = "/v1/customers/{id}/redemptions",
    tag = "points",
    params(
        ("id" = String, Path, description = "The customer id"),
        ("Idempotency-Key" = String, Header, description = "Names this redemption (1 to 128 visible ASCII characters); a retry with the same key gets the first answer"),
    ),
    request_body = RedemptionRequest,
    security(("bearerToken" = []), ("jwt" = [])),
    responses(
        (status = 201, description = "Redeemed: the points taken and the balance after", body = RedemptionAnswer),
        (status = 400, description = "No or an invalid Idempotency-Key, invalid customer id, malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown customer", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`insufficient-points` (with the balance), or `points-disabled`", body = InsufficientPoints, content_type = "application/problem+json"),
        (status = 422, description = "`unknown_reward`, `reward_cost_mismatch`, `tier_too_low`, `points_not_positive` (the problem's `reason`), or `idempotency-key-reused`: the key was used for a different request", body = Problem, content_type = "application/problem+json"),
        RoleProblems,
        DatabaseUnavailable,
    ),
)]
pub async fn redeem(
    _: Operator,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<RedemptionRequest>,
) -> Result<Response, Problem> {
    let customer = customer_id(&state, &id)?;
    let key = idempotency_key(&headers)?;
    if let Some(reward) = &req.reward
        && (reward.is_empty() || reward.len() > MAX_KEY_LEN)
    {
        return Err(Problem::malformed("invalid reward id").field("reward"));
    }
    let request = serde_json::to_value(&req).unwrap_or_default();
    let body = EventBody::Redemption(Redemption {
        redemption_id: key.clone(),
        points: req.points,
        reward: req.reward,
    });
    run(&state, &customer, Operation::Redeem, &key, request, body).await
}

/// Cancels a redemption: its points go back to the lots they came from (or expire at once if
/// those lots have expired since). Idempotent: cancelling twice answers the first cancel.
/// Needs the operator role.
#[utoipa::path(
    post,
    path = "/v1/customers/{id}/redemptions/{key}/cancel",
    tag = "points",
    params(
        ("id" = String, Path, description = "The customer id"),
        ("key" = String, Path, description = "The redemption's Idempotency-Key"),
    ),
    security(("bearerToken" = []), ("jwt" = [])),
    responses(
        (status = 200, description = "Cancelled: the points given back and the balance after", body = RedemptionAnswer),
        (status = 400, description = "Invalid customer id or key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown customer, or no such redemption (`unknown_redemption`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`points-disabled`", body = Problem, content_type = "application/problem+json"),
        RoleProblems,
        DatabaseUnavailable,
    ),
)]
pub async fn cancel(
    _: Operator,
    State(state): State<AppState>,
    ApiPath((id, key)): ApiPath<(String, String)>,
) -> Result<Response, Problem> {
    let customer = customer_id(&state, &id)?;
    valid_key(&key)?;
    let body = EventBody::RedemptionCancel(RedemptionCancel {
        redemption_id: key.clone(),
    });
    run(
        &state,
        &customer,
        Operation::Cancel,
        &key,
        json!({ "cancel": key }),
        body,
    )
    .await
}

pub(super) fn customer_id(state: &AppState, id: &str) -> Result<CustomerId, Problem> {
    CustomerId::parse(id, state.limits.max_id_len)
        .map_err(|_| Problem::malformed("invalid customer id").field("id"))
}

fn unavailable(e: anyhow::Error) -> Problem {
    tracing::warn!(error = format!("{e:#}"), "redemption failed");
    Problem::unavailable("the database is unavailable").retry_after(1)
}

/// One redemption, cancel or adjustment, in one transaction (see the module's description).
pub(super) async fn run(
    state: &AppState,
    customer: &CustomerId,
    operation: Operation,
    key: &str,
    request: Value,
    body: EventBody,
) -> Result<Response, Problem> {
    let core = &state.core;
    let Some(rules) = core.programme.points_rules() else {
        return Err(points_disabled());
    };
    let event_id = EventId::parse(&operation.event_id(key), state.limits.max_id_len)
        .map_err(|_| Problem::malformed("the key is too long").field(IDEMPOTENCY_KEY))?;
    let mut tx = core.pool.begin().await?;

    match points::claim(&mut tx, customer.as_str(), operation.name(), key, &request)
        .await
        .map_err(unavailable)?
    {
        Claim::Answered {
            request: first,
            status,
            answer,
        } => {
            if first != request {
                return Err(Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency-key-reused",
                    "The Idempotency-Key was used for another request",
                    "this Idempotency-Key was used for a different request: use a new key",
                )
                .field(IDEMPOTENCY_KEY)
                .reason("idempotency_key_reused"));
            }
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            return Ok(Answer {
                status,
                body: answer,
            }
            .into_response());
        }
        Claim::New => {}
    }

    let locked = customers::load_for_update(&mut tx, &[customer])
        .await
        .map_err(unavailable)?;
    let Some(before) = locked.get(customer) else {
        // Rolled back on drop: the key is free again.
        return Err(Problem::not_found("unknown customer"));
    };
    // "Now" is read under the lock, and never before the customer's last movement: the fold
    // ignores movements after the moment it is made for, so a redemption dated before one
    // that committed while it waited would not see it, and would spend the same points again.
    let latest = before.state.points.movements.iter().map(|m| m.at).max();
    let now = core
        .clock
        .now(&mut *tx)
        .await?
        .max(latest.unwrap_or_default());
    let event = DomainEvent {
        meta: EventMeta {
            event_id: event_id.clone(),
            customer_id: customer.clone(),
            occurred_at: now,
        },
        body,
    };
    let row = LedgerRow {
        event: &event,
        source: format!("http:{}", operation.name()),
    };
    ledger::insert_new(&mut tx, &[row])
        .await
        .map_err(unavailable)?;
    let evaluated = apply_events(&mut tx, core, &[&event], now, None)
        .await
        .map_err(unavailable)?;
    let Some(done) = evaluated.iter().find(|e| e.state.customer_id == *customer) else {
        return Err(Problem::internal("the customer was not evaluated"));
    };
    let Some(decision) = done
        .state
        .points
        .decisions
        .iter()
        .find(|d| d.event_id == event_id.as_str())
    else {
        return Err(Problem::internal("no decision about the redemption"));
    };
    let folded = done.state.points.fold(rules, now);
    // The last line of defence: the fold turns points spent twice into debt, which the
    // `points_available >= 0` constraint cannot see. Both folds are made at the latest
    // movement, so a redemption dated before another is judged with it. Rolled back on drop.
    let horizon = done
        .state
        .points
        .movements
        .iter()
        .map(|m| m.at)
        .max()
        .map_or(now, |t| t.max(now));
    let debt_after = if horizon == now {
        folded.debt
    } else {
        done.state.points.fold(rules, horizon).debt
    };
    let debt_before = before.state.points.fold(rules, horizon).debt;
    if matches!(decision.outcome, Outcome::Accepted { .. })
        && matches!(operation, Operation::Redeem | Operation::Adjust)
        && debt_after > debt_before
    {
        tracing::error!(
            operation = operation.name(),
            debt_before,
            debt_after,
            "a redemption or adjustment would have spent points the customer did not have; refused"
        );
        return Err(Problem::internal(
            "the redemption could not be applied safely",
        ));
    }
    let answer = match (&decision.outcome, operation) {
        (Outcome::Accepted { points } | Outcome::AlreadyDone { points }, Operation::Adjust) => {
            Answer::json(
                StatusCode::CREATED,
                &AdjustmentAnswer {
                    adjustment_id: key.to_owned(),
                    status: "adjusted",
                    points: *points,
                    after: PointsAfter::of(&folded, rules),
                },
            )
        }
        (Outcome::Accepted { points } | Outcome::AlreadyDone { points }, _) => Answer::json(
            match operation {
                Operation::Cancel => StatusCode::OK,
                Operation::Redeem | Operation::Adjust => StatusCode::CREATED,
            },
            &RedemptionAnswer {
                redemption_id: key.to_owned(),
                status: match operation {
                    Operation::Cancel => "cancelled",
                    Operation::Redeem | Operation::Adjust => "redeemed",
                },
                points: *points,
                after: PointsAfter::of(&folded, rules),
            },
        ),
        (Outcome::Refused(Refusal::UnknownRedemption(_)), _) => {
            // Nothing changes: not recorded, not stored.
            return Err(
                Problem::not_found(format!("no redemption {key:?} to cancel"))
                    .reason("unknown_redemption"),
            );
        }
        (Outcome::Refused(Refusal::NoPoints), _) => return Err(points_disabled()),
        (Outcome::Refused(refusal), _) => refused(refusal, &folded),
    };
    write::write_outputs(&mut tx, core, &evaluated, Vec::new())
        .await
        .map_err(unavailable)?;
    points::store_answer(
        &mut tx,
        customer.as_str(),
        operation.name(),
        key,
        answer.status.as_u16(),
        &answer.body,
    )
    .await
    .map_err(unavailable)?;
    tx.commit().await?;
    for e in &evaluated {
        for out in &e.outputs {
            core.metrics.output(out);
        }
    }
    core.metrics
        .points_request(operation.name(), decision_label(&decision.outcome));
    Ok(answer.into_response())
}

fn decision_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Accepted { .. } => "accepted",
        Outcome::AlreadyDone { .. } => "already_done",
        Outcome::Refused(r) => r.code(),
    }
}

/// The stored problem of a refused redemption.
fn refused(refusal: &Refusal, folded: &Folded) -> Answer {
    let code = refusal.code();
    match refusal {
        Refusal::Redeem(RedeemError::Insufficient {
            requested,
            available,
        }) => {
            let p = Problem::new(
                StatusCode::CONFLICT,
                "insufficient-points",
                "Not enough points",
                refusal.to_string(),
            )
            .reason(code);
            Answer::problem(
                &p,
                json!({
                    "requested": requested,
                    "available": available,
                    "pending": folded.pending,
                    "debt": folded.debt,
                }),
            )
        }
        Refusal::Redeem(RedeemError::UnknownReward(_) | RedeemError::CostMismatch { .. }) => {
            let p = Problem::invalid(refusal.to_string())
                .reason(code)
                .field("reward");
            Answer::problem(&p, json!({}))
        }
        Refusal::Redeem(RedeemError::NotPositive(_)) | Refusal::ZeroAdjustment => {
            let p = Problem::invalid(refusal.to_string())
                .reason(code)
                .field("points");
            Answer::problem(&p, json!({}))
        }
        Refusal::ExpiresBeforeGrant { .. } => {
            let p = Problem::invalid(refusal.to_string())
                .reason(code)
                .field("expires_at");
            Answer::problem(&p, json!({}))
        }
        _ => Answer::problem(
            &Problem::invalid(refusal.to_string()).reason(code),
            json!({}),
        ),
    }
}
