//! A customer's loyalty state, as stored (JSON) in the `customers` table.

use chrono::{DateTime, Utc};

use super::ids::CustomerId;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CustomerState {
    pub customer_id: CustomerId,
    /// Current tier name from the programme.
    pub tier: String,
    /// Lifetime spend net of refunds, minor units of the programme currency.
    pub lifetime_spend_minor: i64,
    /// Orders net of refunds; a partial refund takes away the refunded fraction of an order.
    pub orders: f64,
    pub first_purchase_at: Option<DateTime<Utc>>,
    pub last_purchase_at: Option<DateTime<Utc>>,
    /// Largest event time applied to this customer.
    pub last_event_at: Option<DateTime<Utc>>,
    /// Refunds whose order was never seen.
    #[serde(default)]
    pub unmatched_refunds: u32,
}

impl CustomerState {
    /// The state of a customer Kizuna has not seen before.
    pub fn new(customer_id: CustomerId, entry_tier: &str) -> Self {
        Self {
            customer_id,
            tier: entry_tier.to_owned(),
            lifetime_spend_minor: 0,
            orders: 0.0,
            first_purchase_at: None,
            last_purchase_at: None,
            last_event_at: None,
            unmatched_refunds: 0,
        }
    }

    /// Days between the first purchase and `now`.
    pub fn tenure_days(&self, now: DateTime<Utc>) -> f64 {
        self.first_purchase_at
            .map(|first| (now - first).num_seconds().max(0) as f64 / 86_400.0)
            .unwrap_or(0.0)
    }
}
