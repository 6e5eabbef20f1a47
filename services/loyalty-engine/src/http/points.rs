//! `GET /v1/customers/{id}/points[?as_of=TIME]`: a customer's points and why: the balances, the
//! open lots (which add up to available + pending) and every movement with its reason, source
//! event and programme version. `GET /v1/programme/liability`: the points outstanding over all
//! customers, as counts and as money, and what expires in the next 30/90/365 days.

use axum::extract::State;
use chrono::{DateTime, Utc};

use super::AppState;
use super::auth::Viewer;
use super::customers::AsOf;
use super::problem::{ApiJson, ApiPath, ApiQuery, DatabaseUnavailable, Problem, RoleProblems};
use super::view::Balances;
use crate::domain::money::Currency;
use crate::domain::points::{Folded, Lot, Movement, PointsBook, PointsRules};
use crate::store::{customers, points};

/// A customer's points, explained.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PointsView<'a> {
    pub customer_id: &'a str,
    /// The moment the points are folded for.
    pub as_of: DateTime<Utc>,
    #[serde(flatten)]
    pub balances: Balances,
    /// The value of `available + pending` at `cost_per_point_minor`, in minor units of
    /// `currency`.
    pub value_minor: f64,
    #[schema(value_type = String, example = "JPY")]
    pub currency: &'a Currency,
    /// The lots not expired (spent ones too, with `remaining` 0), closest to expiry first: the
    /// order they are spent in. Their `remaining` add up to `available + pending`; expired
    /// lots are in `expired`.
    #[schema(value_type = Vec<Object>)]
    pub lots: Vec<&'a Lot>,
    /// Every recorded movement, oldest first: `id`, `at`, `kind` (earn, redeem,
    /// cancel_redemption, clawback, adjust, activity) with its fields, `amount`, `signed` (its
    /// effect on the balance), `reason`, `source_event`, `programme_version`.
    #[schema(value_type = Vec<Object>)]
    pub movements: Vec<MovementView<'a>>,
    /// Derived expiries up to `as_of`: the lot, when, and the points it lost.
    pub expired: Vec<Expired>,
    /// Ids of movements that did nothing (a duplicate, a cancel of an unknown redemption, …).
    pub ignored: &'a [String],
}

/// A movement with its effect on the balance.
#[derive(Debug, serde::Serialize)]
pub struct MovementView<'a> {
    #[serde(flatten)]
    pub movement: &'a Movement,
    pub signed: i64,
}

/// A lot's derived expiry.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Expired {
    pub lot: Option<String>,
    pub at: DateTime<Utc>,
    pub points: i64,
}

/// The points of `book` at `as_of`, for the API.
pub fn view<'a>(
    customer_id: &'a str,
    book: &'a PointsBook,
    folded: &'a Folded,
    rules: &PointsRules,
    currency: &'a Currency,
    as_of: DateTime<Utc>,
) -> PointsView<'a> {
    let balances = Balances::of(folded, rules);
    let value_minor = (balances.available + balances.pending) as f64 * rules.cost_per_point_minor;
    let mut movements: Vec<MovementView<'a>> = book
        .movements
        .iter()
        .map(|m| MovementView {
            movement: m,
            signed: m.signed(),
        })
        .collect();
    movements.sort_by(|a, b| (a.movement.at, &a.movement.id).cmp(&(b.movement.at, &b.movement.id)));
    PointsView {
        customer_id,
        as_of,
        balances,
        value_minor,
        currency,
        lots: folded
            .lots
            .iter()
            .filter(|l| l.expired_at.is_none())
            .collect(),
        movements,
        expired: folded
            .expiries()
            .map(|p| Expired {
                lot: p.lot.clone(),
                at: p.at,
                points: -p.amount,
            })
            .collect(),
        ignored: &folded.ignored,
    }
}

/// `points-disabled`: the programme has no `[points]` section (or it is disabled). 404 for a
/// read, 409 for a redemption.
pub fn points_disabled(status: axum::http::StatusCode) -> Problem {
    Problem::new(
        status,
        "points-disabled",
        "The programme has no points",
        "the programme has no points: add an enabled [points] section",
    )
    .reason("points_disabled")
}

/// A customer's points: balances, open lots and every movement with its reason — the answer
/// to "why is my balance X?". Needs the viewer role.
#[utoipa::path(
    get,
    path = "/v1/customers/{id}/points",
    tag = "points",
    params(("id" = String, Path, description = "The customer id"), AsOf),
    security(("bearerToken" = []), ("jwt" = [])),
    responses(
        (status = 200, description = "The customer's points", body = PointsView),
        (status = 400, description = "Invalid customer id or `as_of`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown customer, or the programme has no points (`points-disabled`)", body = Problem, content_type = "application/problem+json"),
        RoleProblems,
        DatabaseUnavailable,
    ),
)]
pub async fn get_points(
    _: Viewer,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<AsOf>,
) -> Result<axum::response::Response, Problem> {
    use axum::response::IntoResponse;
    if id.is_empty() || id.len() > 1024 {
        return Err(Problem::malformed("invalid customer id").field("id"));
    }
    let programme = &state.core.programme;
    let Some(rules) = programme.points_rules() else {
        return Err(points_disabled(axum::http::StatusCode::NOT_FOUND));
    };
    let as_of = match q.as_of {
        Some(t) => t,
        None => state.now().await?,
    };
    let customer = match customers::get(&state.core.pool, &id).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(Problem::not_found("unknown customer")),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "points lookup failed");
            return Err(Problem::unavailable("the database is unavailable"));
        }
    };
    let folded = customer.points.fold(rules, as_of);
    Ok(ApiJson(view(
        customer.customer_id.as_str(),
        &customer.points,
        &folded,
        rules,
        &programme.currency,
        as_of,
    ))
    .into_response())
}

/// Points and their value.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Amount {
    pub points: i64,
    /// `points × cost_per_point_minor`, in minor units of the programme currency.
    pub value_minor: f64,
}

/// Points due to expire within a window.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Expiring {
    pub within_days: i64,
    pub points: i64,
    pub value_minor: f64,
}

/// The programme's points liability.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Liability<'a> {
    pub as_of: DateTime<Utc>,
    #[schema(value_type = String, example = "JPY")]
    pub currency: &'a Currency,
    pub cost_per_point_minor: f64,
    /// Customers with points (or debt).
    pub customers: i64,
    pub available: Amount,
    pub pending: Amount,
    /// `available + pending`.
    pub total: Amount,
    /// Points owed by customers (clawbacks of points already spent).
    pub debt: i64,
    /// Points of open lots due to expire by `as_of` + 30, 90 and 365 days.
    pub expiring: Vec<Expiring>,
}

/// The points outstanding over all customers, available and pending, as counts and as money
/// at the programme's cost per point, and the expiries due in the next 30/90/365 days. Each
/// customer counts as of their last evaluation (the sweeper re-evaluates at every release and
/// expiry). Needs the viewer role.
#[utoipa::path(
    get,
    path = "/v1/programme/liability",
    tag = "points",
    security(("bearerToken" = []), ("jwt" = [])),
    responses(
        (status = 200, description = "The liability", body = Liability),
        (status = 404, description = "The programme has no points (`points-disabled`)", body = Problem, content_type = "application/problem+json"),
        RoleProblems,
        DatabaseUnavailable,
    ),
)]
pub async fn liability(
    _: Viewer,
    State(state): State<AppState>,
) -> Result<axum::response::Response, Problem> {
    use axum::response::IntoResponse;
    let programme = &state.core.programme;
    let Some(rules) = programme.points_rules() else {
        return Err(points_disabled(axum::http::StatusCode::NOT_FOUND));
    };
    let now = state.now().await?;
    let o = points::outstanding(&state.core.pool, now, &points::EXPIRY_WINDOWS)
        .await
        .map_err(|e| {
            tracing::warn!(error = format!("{e:#}"), "liability lookup failed");
            Problem::unavailable("the database is unavailable")
        })?;
    let cost = rules.cost_per_point_minor;
    let amount = |points: i64| Amount {
        points,
        value_minor: points as f64 * cost,
    };
    Ok(ApiJson(Liability {
        as_of: now,
        currency: &programme.currency,
        cost_per_point_minor: cost,
        customers: o.customers,
        available: amount(o.available),
        pending: amount(o.pending),
        total: amount(o.available + o.pending),
        debt: o.debt,
        expiring: o
            .expiring
            .iter()
            .map(|(days, points)| Expiring {
                within_days: *days,
                points: *points,
                value_minor: *points as f64 * cost,
            })
            .collect(),
    })
    .into_response())
}
