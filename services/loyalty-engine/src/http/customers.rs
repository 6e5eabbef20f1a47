//! `GET /v1/customers/{id}[?as_of=TIME]`: a customer's loyalty state, with the metrics as of
//! now (the engine's clock) or the time asked.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::{AppState, error, view};
use crate::domain::metrics::Metrics;
use crate::store::customers;

#[derive(Debug, serde::Deserialize)]
pub struct AsOf {
    pub as_of: Option<DateTime<Utc>>,
}

pub async fn get_customer(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<AsOf>,
) -> Response {
    if id.is_empty() || id.len() > 1024 {
        return error(StatusCode::BAD_REQUEST, "invalid customer id");
    }
    let as_of = match q.as_of {
        Some(t) => t,
        None => match state.now().await {
            Ok(t) => t,
            Err(e) => return e,
        },
    };
    match customers::get(&state.core.pool, &id).await {
        Ok(Some(customer)) => {
            let metrics = Metrics::derive(&customer.facts, &state.core.programme, as_of);
            Json(view::customer(
                &customer,
                &metrics,
                &state.core.programme,
                state.core.model.get().as_deref(),
                as_of,
            ))
            .into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "unknown customer"),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "customer lookup failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable",
            )
        }
    }
}
