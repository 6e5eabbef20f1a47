//! `DELETE /v1/customers/{id}`: erases a customer (`engine::erasure`), behind the admin role.
//! The answer is the receipt: what went, and the keyed hash that stands for the id from now on.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};

use super::AppState;
use super::auth::Admin;
use super::problem::{AdminRoleProblems, ApiPath, DatabaseUnavailable, Problem};
use super::redemptions;
use crate::engine::erasure::{self, Receipt};

/// The receipt of an erasure (also published as `CustomerErased` on `kafka.topics.privacy`).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ErasureReceipt {
    /// HMAC-SHA256 of the id under the erasure key (`privacy.erasure_key`), lowercase hex.
    pub subject_hash: String,
    pub erased_at: DateTime<Utc>,
    /// The customer's events deleted from the event ledger.
    pub ledger_events: i64,
    /// Published events deleted from the output log (the timeline).
    pub output_log_entries: i64,
    /// Messages about the customer removed from the outbox before they were published.
    pub outbox_messages: i64,
    /// Other rows deleted: the state, tier overrides, redemption requests, webhook deliveries.
    pub other_rows: i64,
    /// Other customers' records that named this one, kept under a pseudonym.
    pub pseudonymised: i64,
    /// Until when events for the id are refused (dead letters, reason `erased`); absent when
    /// they start a new customer.
    pub refuse_until: Option<DateTime<Utc>>,
}

impl From<Receipt> for ErasureReceipt {
    fn from(r: Receipt) -> Self {
        Self {
            subject_hash: r.subject_hash,
            erased_at: r.erased_at,
            ledger_events: r.deleted.ledger_events,
            output_log_entries: r.deleted.output_log_entries,
            outbox_messages: r.outbox_messages,
            other_rows: r.deleted.other_rows,
            pseudonymised: r.pseudonymised,
            refuse_until: r.refuse_until,
        }
    }
}

/// Erases a customer: their state, events, timeline, overrides, points and churn history, and
/// the messages about them not yet published. Referrers keep the count of their referrals under
/// a pseudonym. Erasing again answers with a receipt that deleted nothing.
#[utoipa::path(
    delete,
    path = "/v1/customers/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "The customer id")),
    security(("bearerToken" = []), ("jwt" = [])),
    responses(
        (status = 200, description = "Erased: the receipt", body = ErasureReceipt),
        (status = 400, description = "Invalid customer id", body = Problem, content_type = "application/problem+json"),
        AdminRoleProblems,
        (status = 404, description = "Unknown customer, never erased: nothing done", body = Problem, content_type = "application/problem+json"),
        DatabaseUnavailable,
    ),
)]
pub async fn erase_customer(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ErasureReceipt>, Problem> {
    let customer = redemptions::customer_id(&state, &id)?;
    let receipt = erasure::erase(&state.core, customer.as_str(), Utc::now())
        .await
        .map_err(|e| {
            tracing::warn!(error = format!("{e:#}"), "erasure failed");
            Problem::unavailable("the erasure failed: the database is unavailable").retry_after(1)
        })?;
    match receipt {
        Some(r) => {
            tracing::info!(subject_hash = r.subject_hash.as_str(), "customer erased");
            Ok(Json(r.into()))
        }
        None => Err(Problem::not_found(format!(
            "no customer {} is known, nor was one erased: nothing done",
            customer.as_str()
        ))),
    }
}
