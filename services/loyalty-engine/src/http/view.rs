//! The JSON view of a customer: status, the metrics as of a moment, and what decided them.

use chrono::{DateTime, Utc};

use crate::domain::churn::{self, Assessment, ChurnStatus, Model};
use crate::domain::ids::CustomerId;
use crate::domain::metrics::Metrics;
use crate::domain::money::Currency;
use crate::domain::motive::Motive;
use crate::domain::points::{Folded, PointsRules};
use crate::domain::programme::Programme;
use crate::domain::segment::Segment;
use crate::domain::state::CustomerState;
use crate::domain::tier::{PendingDowngrade, TierOverride};

/// A customer as the API shows it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Customer)]
pub struct CustomerView<'a> {
    #[schema(value_type = String)]
    pub customer_id: &'a CustomerId,
    /// The moment the metrics are derived for.
    pub as_of: DateTime<Utc>,
    /// The programme's currency (ISO 4217); amounts are in its minor units.
    #[schema(value_type = String, example = "JPY")]
    pub currency: &'a Currency,
    /// The current tier, a name from the programme configuration.
    pub tier: &'a str,
    pub tier_since: Option<DateTime<Utc>>,
    /// `{"to", "at"}`: the tier the customer drops to at `at` unless they requalify.
    #[schema(value_type = Option<Object>)]
    pub pending_downgrade: &'a Option<PendingDowngrade>,
    /// A manual tier set through the admin API, until it expires.
    #[serde(rename = "override")]
    #[schema(value_type = Option<Object>)]
    pub manual: &'a Option<TierOverride>,
    /// The customer-grid segment: `loyal`, `angel`, `hostage`, `rebel`, `neutral` or
    /// `high_value_not_loyal`.
    #[schema(value_type = Option<String>)]
    pub segment: Option<Segment>,
    pub segment_reason: &'a Option<String>,
    /// The inferred loyalty motive.
    #[schema(value_type = Option<String>)]
    pub motive: Option<Motive>,
    pub motive_signals: &'a [String],
    /// The churn status last published: level, score, play and drivers.
    #[schema(value_type = Option<Object>)]
    pub churn: &'a Option<ChurnStatus>,
    /// The churn assessment as of `as_of`.
    #[schema(value_type = Object)]
    pub churn_assessment: Assessment,
    pub next_check_at: Option<DateTime<Utc>>,
    pub evaluated_at: Option<DateTime<Utc>>,
    /// The metrics as of `as_of` (spend, orders, tenure, NPS, CSAT, CES, bad experiences, …).
    #[schema(value_type = Object)]
    pub metrics: &'a Metrics,
    /// The points as of `as_of` (absent when the programme has no points); the lots and
    /// movements behind them: `GET /v1/customers/{id}/points`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub points: Option<Balances>,
}

pub fn customer<'a>(
    state: &'a CustomerState,
    metrics: &'a Metrics,
    programme: &'a Programme,
    model: Option<&Model>,
    as_of: DateTime<Utc>,
) -> CustomerView<'a> {
    let status = &state.status;
    CustomerView {
        customer_id: &state.customer_id,
        as_of,
        currency: &programme.currency,
        tier: &status.tier.tier,
        tier_since: status.tier.since,
        pending_downgrade: &status.tier.pending,
        manual: &status.tier.manual,
        segment: status.segment,
        segment_reason: &status.segment_reason,
        motive: status.motive,
        motive_signals: &status.motive_signals,
        churn: &status.churn,
        churn_assessment: churn::assess(metrics, &programme.churn, model),
        next_check_at: status.next_check_at,
        evaluated_at: status.evaluated_at,
        metrics,
        points: programme
            .points_rules()
            .map(|rules| Balances::of(&state.points.fold(rules, as_of), rules)),
    }
}

/// A customer's balances at a moment (also in `GET /v1/customers/{id}`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Balances {
    /// Spendable now.
    pub available: i64,
    /// Earned, still inside the pending period (the return window).
    pub pending: i64,
    /// Points owed: clawbacks of points already spent, paid from future earns first.
    pub debt: i64,
    /// The balance as the programme shows it: `available`, or `available − debt` with
    /// `negative_balance = "negative"`.
    pub balance: i64,
}

impl Balances {
    pub fn of(folded: &Folded, rules: &PointsRules) -> Self {
        Self {
            available: folded.available,
            pending: folded.pending,
            debt: folded.debt,
            balance: folded.balance(rules.earn.negative_balance),
        }
    }
}
