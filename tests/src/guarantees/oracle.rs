//! The expected state of every customer, computed by the test from the events it sent,
//! independently of the engine, and the comparison of the stored state with it.

use std::collections::BTreeMap;

use super::observe::Row;

// Workloads and their expected outcome

/// The built-in programme (services/loyalty-engine/config/programme.toml): a customer holds the
/// highest tier whose minimum spend and orders (net of refunds, 12-month rolling window) they
/// meet. Platinum also needs 180 days of tenure, which no test customer has (all their events
/// are from the last hours).
pub const TIERS: [(&str, i64, f64); 3] = [
    ("member", 0, 0.0),
    ("silver", 30_000, 2.0),
    ("gold", 100_000, 5.0),
];

pub fn qualifying_rank(spend: i64, orders: f64) -> usize {
    TIERS
        .iter()
        .rposition(|(_, s, o)| spend >= *s && orders >= *o)
        .unwrap_or(0)
}

/// One customer's figures, computed by the test from the events it sent.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// order id → (amount, refunded so far)
    pub orders: BTreeMap<String, (i64, i64)>,
    /// Highest tier rank reached after any prefix of the customer's purchase events.
    pub max_rank: usize,
    pub events: usize,
}

impl Expect {
    pub fn spend(&self) -> i64 {
        self.orders.values().map(|(a, r)| a - r).sum()
    }

    /// Orders net of refunds, summed like the engine (by order id): a partly refunded order
    /// counts for the share not refunded.
    pub fn orders(&self) -> f64 {
        self.orders
            .values()
            .map(|(a, r)| {
                if *r <= 0 {
                    1.0
                } else if *r >= *a {
                    0.0
                } else {
                    1.0 - *r as f64 / *a as f64
                }
            })
            .sum()
    }

    pub fn rank(&self) -> usize {
        qualifying_rank(self.spend(), self.orders())
    }

    /// With no time passing, upgrades are immediate and downgrades wait for a 30-day grace
    /// period: the tier is the highest reached.
    pub fn tier(&self) -> &'static str {
        TIERS[self.max_rank].0
    }
}

/// Differences between the stored customers and the test's own expectation.
pub fn diff_expected(
    rows: &BTreeMap<String, Row>,
    expect: &BTreeMap<String, Expect>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (id, e) in expect {
        match rows.get(id) {
            None => out.push(format!("{id}: missing (expected {} events)", e.events)),
            Some(r) => {
                if r.spend != e.spend() {
                    out.push(format!(
                        "{id}: lifetime spend {} != expected {}",
                        r.spend,
                        e.spend()
                    ));
                }
                if (r.orders - e.orders()).abs() > 1e-9 {
                    out.push(format!(
                        "{id}: orders {} != expected {}",
                        r.orders,
                        e.orders()
                    ));
                }
                if r.tier != e.tier() {
                    out.push(format!(
                        "{id}: tier {} != expected {} (spend {}, orders {})",
                        r.tier,
                        e.tier(),
                        e.spend(),
                        e.orders()
                    ));
                }
                let facts = &r.state["facts"];
                let orders_kept = facts["orders"].as_object().map_or(0, |o| o.len());
                if orders_kept != e.orders.len() {
                    out.push(format!(
                        "{id}: {orders_kept} orders in the facts != {} sent",
                        e.orders.len()
                    ));
                }
            }
        }
    }
    for id in rows.keys() {
        if !expect.contains_key(id) {
            out.push(format!("{id}: a customer the test never sent"));
        }
    }
    out
}
