//! A customer's loyalty state, as stored (JSON) in the `customers` table: the facts their
//! events established, and the status the rules gave them.

use chrono::{DateTime, Utc};

use super::facts::Facts;
use super::ids::CustomerId;
use super::motive::Motive;
use super::programme::Programme;
use super::segment::Segment;
use super::tier::TierStatus;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub tier: TierStatus,
    #[serde(default)]
    pub segment: Option<Segment>,
    #[serde(default)]
    pub segment_reason: Option<String>,
    #[serde(default)]
    pub motive: Option<Motive>,
    #[serde(default)]
    pub motive_signals: Vec<String>,
    #[serde(default)]
    pub churn: Option<super::churn::ChurnStatus>,
    /// When the sweeper should look at this customer again.
    #[serde(default)]
    pub next_check_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub evaluated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CustomerState {
    pub customer_id: CustomerId,
    #[serde(default)]
    pub facts: Facts,
    pub status: Status,
    /// The points ledger (empty when the programme has no points).
    #[serde(default, skip_serializing_if = "super::points::PointsBook::is_empty")]
    pub points: super::points::PointsBook,
}

impl CustomerState {
    /// The state of a customer Kizuna has not seen before.
    pub fn new(customer_id: CustomerId, programme: &Programme) -> Self {
        Self {
            customer_id,
            facts: Facts::default(),
            status: Status {
                tier: TierStatus::entry(programme),
                segment: None,
                segment_reason: None,
                motive: None,
                motive_signals: Vec::new(),
                churn: None,
                next_check_at: None,
                evaluated_at: None,
            },
            points: super::points::PointsBook::default(),
        }
    }

    pub fn tier(&self) -> &str {
        &self.status.tier.tier
    }
}
