//! `GET /v1/customers/{id}/timeline?limit=N&before=CURSOR`: the customer's events and the
//! outputs they caused, newest first, paginated. The audit trail a support agent opens.

use axum::extract::State;

use serde_json::json;

use super::AppState;
use super::auth::Viewer;
use super::problem::{ApiJson, ApiPath, ApiQuery, DatabaseUnavailable, Problem, RoleProblems};
use crate::store::customers;
use crate::store::timeline::{self, PointsItem};

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Items per page, 1 to 500 (default 50).
    pub limit: Option<i64>,
    /// The `next` cursor of the previous page.
    pub before: Option<String>,
}

/// One page of a customer's timeline.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TimelinePage {
    pub customer_id: String,
    /// Newest first: `{"type": "event", …}` (an input event, with the outputs it caused and
    /// the points movements it made, each with its reason), `{"type": "output", …}` (an output
    /// of a sweep, an override or a recompute) or `{"type": "points", …}` (a points movement
    /// of no event of the customer's: an anniversary or referral bonus, a release from
    /// pending, an expiry).
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<serde_json::Value>,
    /// `before` of the next page; absent on the last page.
    pub next: Option<String>,
}

/// A customer's events and the outputs they caused, newest first. Needs the viewer role.
#[utoipa::path(
    get,
    path = "/v1/customers/{id}/timeline",
    tag = "customers",
    params(("id" = String, Path, description = "The customer id"), Page),
    security(("bearerToken" = []), ("jwt" = [])),
    responses(
        (status = 200, description = "A page of the timeline", body = TimelinePage),
        (status = 400, description = "Invalid cursor or limit", body = Problem, content_type = "application/problem+json"),
        RoleProblems,
        DatabaseUnavailable,
    ),
)]
pub async fn timeline(
    _: Viewer,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<ApiJson<TimelinePage>, Problem> {
    let limit = page.limit.unwrap_or(50).clamp(1, 500);
    let before = match page.before.as_deref().map(timeline::Cursor::parse) {
        None => None,
        Some(Some(c)) => Some(c),
        Some(None) => return Err(Problem::malformed("invalid cursor").field("before")),
    };
    let points = points_items(&state, &id).await?;
    match timeline::page_with_points(&state.core.pool, &id, limit, before.as_ref(), points).await {
        Ok((items, next)) => Ok(ApiJson(TimelinePage {
            customer_id: id,
            items,
            next: next.map(|c| c.to_string()),
        })),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "timeline lookup failed");
            Err(Problem::unavailable("the database is unavailable"))
        }
    }
}

/// The customer's points movements for the timeline, with the releases and expiries derived
/// up to now (none when the programme has no points or the customer is unknown).
async fn points_items(state: &AppState, id: &str) -> Result<Vec<PointsItem>, Problem> {
    let Some(rules) = state.core.programme.points_rules() else {
        return Ok(Vec::new());
    };
    let customer = match customers::get(&state.core.pool, id).await {
        Ok(Some(c)) => c,
        Ok(None) => return Ok(Vec::new()),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "timeline lookup failed");
            return Err(Problem::unavailable("the database is unavailable"));
        }
    };
    let now = state.now().await?;
    let book = &customer.points;
    let folded = book.fold(rules, now);
    let mut items: Vec<PointsItem> = book
        .movements
        .iter()
        .map(|m| PointsItem {
            at: m.at,
            id: m.id.clone(),
            source_event: Some(m.source_event.clone()),
            body: json!({
                "movement": m,
                "signed": m.signed(),
            }),
        })
        .collect();
    for lot in &folded.lots {
        if lot.available_at > lot.earned_at && lot.available_at <= now {
            items.push(PointsItem {
                at: lot.available_at,
                id: format!("release:{}", lot.id),
                source_event: None,
                body: json!({
                    "movement": {
                        "id": format!("release:{}", lot.id),
                        "kind": "release",
                        "lot": lot.id,
                        "amount": lot.amount,
                        "reason": format!("lot {} ({} points earned) left its pending period", lot.id, lot.amount),
                    },
                    "signed": 0,
                }),
            });
        }
    }
    for p in folded.expiries() {
        items.push(PointsItem {
            at: p.at,
            id: p.movement.clone(),
            source_event: None,
            body: json!({
                "movement": {
                    "id": p.movement,
                    "kind": "expire",
                    "lot": p.lot,
                    "amount": -p.amount,
                    "reason": format!("{} points of lot {} expired", -p.amount, p.lot.as_deref().unwrap_or("?")),
                },
                "signed": p.amount,
            }),
        });
    }
    Ok(items)
}
