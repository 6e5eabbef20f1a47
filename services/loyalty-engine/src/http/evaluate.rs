//! `POST /v1/evaluate`: a dry run. Takes a customer id and a hypothetical event, returns the
//! state and the output events that event would produce. Writes nothing.

use axum::extract::State;

use super::auth::Viewer;
use super::problem::{ApiJson, DatabaseUnavailable, Problem, RoleProblems};
use super::{AppState, view};
use crate::domain::apply::{Changes, apply};
use crate::domain::ids::CustomerId;
use crate::engine::outputs;
use crate::inputs::decode::decode_input_line;
use crate::inputs::validate::validate;
use crate::store::customers;

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct DryRun {
    pub customer_id: String,
    /// An `InputEvent` in the protobuf JSON mapping, e.g. `{"purchase": {...}}`.
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
}

/// An output the event would publish.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DryRunOutput {
    /// The CloudEvents type, e.g. `kizuna.v1.TierChanged`.
    pub ce_type: &'static str,
    pub topic: String,
    /// The kizuna.v1 message in the protobuf JSON mapping.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// What the event would do; nothing is written.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DryRunResult<'a> {
    /// Always `true`.
    pub dry_run: bool,
    pub state: view::CustomerView<'a>,
    pub outputs: Vec<DryRunOutput>,
}

/// A dry run: the state and the outputs a hypothetical event would produce. Writes nothing.
///
/// An event the engine would dead-letter is answered 422 with the dead-letter `reason`. Needs
/// the viewer role.
#[utoipa::path(
    post,
    path = "/v1/evaluate",
    tag = "customers",
    request_body = DryRun,
    security(("bearerToken" = []), ("jwt" = [])),
    responses(
        (status = 200, description = "What the event would do", body = DryRunResult),
        (status = 400, description = "Invalid customer_id or a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The event would be dead-lettered (`reason` names why)", body = Problem, content_type = "application/problem+json"),
        RoleProblems,
        DatabaseUnavailable,
    ),
)]
pub async fn evaluate(
    _: Viewer,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<DryRun>,
) -> Result<axum::response::Response, Problem> {
    let Ok(customer) = CustomerId::parse(&req.customer_id, state.limits.max_id_len) else {
        return Err(Problem::malformed("invalid customer_id").field("customer_id"));
    };
    let now = state.now().await?;
    let event = decode_input_line(&req.event.to_string()).and_then(|wire| {
        validate(
            &wire,
            Some(customer.as_str().as_bytes()),
            &state.limits,
            now,
        )
    });
    let event = event.map_err(|rejection| {
        Problem::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "would-be-dead-lettered",
            "The event would be dead-lettered",
            rejection.detail,
        )
        .field("event")
        .reason(rejection.reason.as_str())
    })?;
    let existing = customers::get(&state.core.pool, customer.as_str())
        .await
        .map_err(|e| {
            tracing::warn!(error = format!("{e:#}"), "dry-run lookup failed");
            Problem::unavailable("the database is unavailable")
        })?;
    let changes = Changes {
        events: vec![&event],
        referred: vec![],
    };
    let model = state.core.model.get();
    let (next, metrics, outs) = apply(
        &customer,
        existing,
        &changes,
        &state.core.programme,
        model.as_deref(),
        now,
    );
    let mut encoded = Vec::new();
    for out in &outs {
        let e = outputs::encode(out, 0, &state.core.topics, &state.core.programme)
            .map_err(|_| Problem::internal("could not encode an output"))?;
        encoded.push(DryRunOutput {
            ce_type: e.ce_type,
            data: e.data(),
            topic: e.message.topic,
        });
    }
    let result = DryRunResult {
        dry_run: true,
        state: view::customer(
            &next,
            &metrics,
            &state.core.programme,
            model.as_deref(),
            now,
        ),
        outputs: encoded,
    };
    Ok(axum::response::IntoResponse::into_response(ApiJson(result)))
}
