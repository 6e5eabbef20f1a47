//! `GET /v1/customers/{id}/timeline?limit=N&before=CURSOR`: the customer's events and the
//! outputs they caused, newest first, paginated. The audit trail a support agent opens.

use axum::extract::State;

use super::AppState;
use super::problem::{ApiJson, ApiPath, ApiQuery, DatabaseUnavailable, Problem};
use crate::store::timeline;

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
    /// Newest first: `{"type": "event", …}` (an input event, with the outputs it caused) or
    /// `{"type": "output", …}` (an output of a sweep, an override or a recompute).
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<serde_json::Value>,
    /// `before` of the next page; absent on the last page.
    pub next: Option<String>,
}

/// A customer's events and the outputs they caused, newest first.
#[utoipa::path(
    get,
    path = "/v1/customers/{id}/timeline",
    tag = "customers",
    params(("id" = String, Path, description = "The customer id"), Page),
    responses(
        (status = 200, description = "A page of the timeline", body = TimelinePage),
        (status = 400, description = "Invalid cursor or limit", body = Problem, content_type = "application/problem+json"),
        DatabaseUnavailable,
    ),
)]
pub async fn timeline(
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
    match timeline::page(&state.core.pool, &id, limit, before.as_ref()).await {
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
