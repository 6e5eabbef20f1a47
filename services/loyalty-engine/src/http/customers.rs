//! `GET /v1/customers/{id}`: a customer's loyalty state.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::store::customers;

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

pub async fn get_customer(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    if id.is_empty() || id.len() > 1024 {
        return error(StatusCode::BAD_REQUEST, "invalid customer id");
    }
    match customers::get(&state.pool, &id).await {
        Ok(Some(customer)) => {
            let mut body = match serde_json::to_value(&customer) {
                Ok(v) => v,
                Err(_) => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "could not encode the state",
                    );
                }
            };
            if let Some(obj) = body.as_object_mut() {
                obj.insert(
                    "currency".into(),
                    state.programme.currency.to_string().into(),
                );
            }
            Json(body).into_response()
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
