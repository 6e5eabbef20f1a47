//! The JSON view of a customer: status, the metrics as of a moment, and what decided them.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::domain::churn::{self, Model};
use crate::domain::metrics::Metrics;
use crate::domain::programme::Programme;
use crate::domain::state::CustomerState;

pub fn customer(
    state: &CustomerState,
    metrics: &Metrics,
    programme: &Programme,
    model: Option<&Model>,
    as_of: DateTime<Utc>,
) -> Value {
    let status = &state.status;
    let assessment = churn::assess(metrics, &programme.churn, model);
    json!({
        "customer_id": state.customer_id,
        "as_of": as_of,
        "currency": programme.currency,
        "tier": status.tier.tier,
        "tier_since": status.tier.since,
        "pending_downgrade": status.tier.pending,
        "override": status.tier.manual,
        "segment": status.segment,
        "segment_reason": status.segment_reason,
        "motive": status.motive,
        "motive_signals": status.motive_signals,
        "churn": status.churn,
        "churn_assessment": assessment,
        "next_check_at": status.next_check_at,
        "evaluated_at": status.evaluated_at,
        "metrics": metrics,
    })
}
