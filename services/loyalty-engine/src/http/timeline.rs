//! `GET /v1/customers/{id}/timeline?limit=N&before=CURSOR`: the customer's events and the
//! outputs they caused, newest first, paginated. The audit trail a support agent opens.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{AppState, error};
use crate::store::timeline;

#[derive(Debug, serde::Deserialize)]
pub struct Page {
    pub limit: Option<i64>,
    /// The `next` cursor of the previous page.
    pub before: Option<String>,
}

pub async fn timeline(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> Response {
    let limit = page.limit.unwrap_or(50).clamp(1, 500);
    let before = match page.before.as_deref().map(timeline::Cursor::parse) {
        None => None,
        Some(Some(c)) => Some(c),
        Some(None) => return error(StatusCode::BAD_REQUEST, "invalid cursor"),
    };
    match timeline::page(&state.core.pool, &id, limit, before.as_ref()).await {
        Ok((items, next)) => Json(json!({
            "customer_id": id,
            "items": items,
            "next": next.map(|c| c.to_string()),
        }))
        .into_response(),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "timeline lookup failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable",
            )
        }
    }
}
