//! `GET /v1/customers/{id}[?as_of=TIME]`: a customer's loyalty state, with the metrics as of
//! now (the engine's clock) or the time asked.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::auth::Viewer;
use super::problem::{ApiJson, ApiPath, ApiQuery, DatabaseUnavailable, Problem, RoleProblems};
use super::{AppState, view};
use crate::domain::metrics::Metrics;
use crate::store::customers;

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AsOf {
    /// Derive the metrics as of this time (RFC 3339) instead of the engine's now.
    pub as_of: Option<DateTime<Utc>>,
}

/// A customer's loyalty state: tier, segment, motive, churn risk, and the metrics as of now or
/// the time asked. Needs the viewer role.
#[utoipa::path(
    get,
    path = "/v1/customers/{id}",
    tag = "customers",
    params(("id" = String, Path, description = "The customer id"), AsOf),
    security(("bearerToken" = []), ("jwt" = [])),
    responses(
        (status = 200, description = "The customer's state", body = view::CustomerView),
        (status = 400, description = "Invalid customer id or `as_of`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown customer", body = Problem, content_type = "application/problem+json"),
        RoleProblems,
        DatabaseUnavailable,
    ),
)]
pub async fn get_customer(
    _: Viewer,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<AsOf>,
) -> Result<Response, Problem> {
    if id.is_empty() || id.len() > 1024 {
        return Err(Problem::malformed("invalid customer id").field("id"));
    }
    let as_of = match q.as_of {
        Some(t) => t,
        None => state.now().await?,
    };
    match customers::get(&state.core.pool, &id).await {
        Ok(Some(customer)) => {
            let metrics = Metrics::derive(&customer.facts, &state.core.programme, as_of);
            Ok(ApiJson(view::customer(
                &customer,
                &metrics,
                &state.core.programme,
                state.core.model.get().as_deref(),
                as_of,
            ))
            .into_response())
        }
        Ok(None) => Err(Problem::not_found("unknown customer")),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "customer lookup failed");
            Err(Problem::unavailable("the database is unavailable"))
        }
    }
}
