//! `POST /v1/evaluate`: a dry run. Takes a customer id and a hypothetical event, returns the
//! state and the output events that event would produce. Writes nothing.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{AppState, error, view};
use crate::domain::apply::{Changes, apply};
use crate::domain::ids::CustomerId;
use crate::engine::outputs;
use crate::inputs::decode::decode_input_line;
use crate::inputs::validate::validate;
use crate::store::customers;

#[derive(Debug, serde::Deserialize)]
pub struct DryRun {
    pub customer_id: String,
    /// An `InputEvent` in the protobuf JSON mapping, e.g. `{"purchase": {...}}`.
    pub event: serde_json::Value,
}

pub async fn evaluate(State(state): State<AppState>, Json(req): Json<DryRun>) -> Response {
    let Ok(customer) = CustomerId::parse(&req.customer_id, state.limits.max_id_len) else {
        return error(StatusCode::BAD_REQUEST, "invalid customer_id");
    };
    let now = match state.now().await {
        Ok(t) => t,
        Err(e) => return e,
    };
    let event = decode_input_line(&req.event.to_string()).and_then(|wire| {
        validate(
            &wire,
            Some(customer.as_str().as_bytes()),
            &state.limits,
            now,
        )
    });
    let event = match event {
        Ok(e) => e,
        Err(rejection) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "error": "the event would be dead-lettered", "reason": rejection.reason.as_str(), "detail": rejection.detail })),
            )
                .into_response();
        }
    };
    let existing = match customers::get(&state.core.pool, customer.as_str()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "dry-run lookup failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable",
            );
        }
    };
    let changes = Changes {
        events: vec![&event],
        referred: vec![],
    };
    let (next, metrics, outs) = apply(
        &customer,
        existing,
        &changes,
        &state.core.programme,
        state.core.model.get().as_deref(),
        now,
    );
    let mut encoded = Vec::new();
    for out in &outs {
        match outputs::encode(out, 0, &state.core.topics, &state.core.programme) {
            Ok(e) => encoded
                .push(json!({ "ce_type": e.ce_type, "topic": e.message.topic, "data": e.json })),
            Err(_) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "could not encode an output",
                );
            }
        }
    }
    Json(json!({
        "dry_run": true,
        "state": view::customer(&next, &metrics, &state.core.programme, state.core.model.get().as_deref(), now),
        "outputs": encoded,
    }))
    .into_response()
}
