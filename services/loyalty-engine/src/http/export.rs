//! `GET /v1/customers/{id}/export`: everything Kizuna keeps about one customer, as one JSON
//! document (an access request under GDPR or APPI), behind the admin role.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::AppState;
use super::auth::Admin;
use super::problem::{AdminRoleProblems, ApiPath, DatabaseUnavailable, Problem};
use super::redemptions;
use crate::store::export;

/// Everything kept about a customer: their state (facts, tier, segment, churn, points book with
/// every movement), every event in the ledger (survey comments included), the output events
/// published about them, tier overrides, redemption and adjustment requests, and webhook
/// deliveries. Sections are JSON as stored; `exported_at` says when it was read (one snapshot).
#[utoipa::path(
    get,
    path = "/v1/customers/{id}/export",
    tag = "admin",
    params(("id" = String, Path, description = "The customer id")),
    security(("bearerToken" = []), ("jwt" = [])),
    responses(
        (status = 200, description = "Everything kept about the customer", body = Object),
        (status = 400, description = "Invalid customer id", body = Problem, content_type = "application/problem+json"),
        AdminRoleProblems,
        (status = 404, description = "Nothing is kept about this id", body = Problem, content_type = "application/problem+json"),
        DatabaseUnavailable,
    ),
)]
pub async fn export_customer(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, Problem> {
    let customer = redemptions::customer_id(&state, &id)?;
    let data = export::customer_data(&state.core.pool, customer.as_str())
        .await
        .map_err(|e| {
            tracing::warn!(error = format!("{e:#}"), "export failed");
            Problem::unavailable("the database is unavailable").retry_after(1)
        })?;
    let Some(mut data) = data else {
        return Err(Problem::not_found("nothing is kept about this customer"));
    };
    data["exported_at"] = serde_json::json!(Utc::now());
    let filename = format!(
        "attachment; filename=\"kizuna-export-{}.json\"",
        customer
            .as_str()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            })
            .collect::<String>()
    );
    Ok((
        [
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::CONTENT_DISPOSITION, filename),
        ],
        axum::Json(data),
    )
        .into_response())
}
