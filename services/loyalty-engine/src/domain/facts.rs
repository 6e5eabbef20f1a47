//! What Kizuna knows about a customer: the facts their events established, kept so that
//! applying the same events in any order, or twice, gives the same facts. Orders are keyed by
//! order id, refunds and survey answers by event id, ticket changes by ticket and event id;
//! every derived figure is computed from these at a given time (see `metrics`).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::event::{DomainEvent, EventBody, SurveyScore, TicketStatus};
use super::ids::CustomerId;
use super::programme::Retention;

/// One order, as far as loyalty is concerned.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OrderRec {
    #[serde(rename = "t", with = "chrono::serde::ts_milliseconds")]
    pub at: DateTime<Utc>,
    /// Amount paid, minor units.
    #[serde(rename = "a")]
    pub amount: i64,
    #[serde(rename = "d", default, skip_serializing_if = "is_zero")]
    pub discount: i64,
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub coupon: Option<String>,
    #[serde(rename = "ch", default, skip_serializing_if = "String::is_empty")]
    pub channel: String,
    /// The category with the largest share of the order.
    #[serde(rename = "k", default, skip_serializing_if = "String::is_empty")]
    pub category: String,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A refund or return, keyed by its event id.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RefundRec {
    #[serde(rename = "o")]
    pub order_id: String,
    #[serde(rename = "a")]
    pub amount: i64,
    #[serde(rename = "t", with = "chrono::serde::ts_milliseconds")]
    pub at: DateTime<Utc>,
}

/// Totals of orders too old to keep one by one.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Archive {
    pub orders: f64,
    pub spend: i64,
    /// Distinct purchase days among the archived orders.
    pub days: u32,
    pub first_at: Option<DateTime<Utc>>,
    pub last_at: Option<DateTime<Utc>>,
}

/// One change of a support ticket.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TicketChange {
    #[serde(rename = "t", with = "chrono::serde::ts_milliseconds")]
    pub at: DateTime<Utc>,
    #[serde(rename = "s")]
    pub status: TicketStatus,
    #[serde(rename = "e", default, skip_serializing_if = "std::ops::Not::not")]
    pub escalated: bool,
    #[serde(rename = "b", default, skip_serializing_if = "std::ops::Not::not")]
    pub sla_breached: bool,
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub csat: Option<u8>,
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub sentiment: Option<f64>,
}

/// A survey answer (never the comment: that stays in the event ledger).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SurveyRec {
    #[serde(rename = "t", with = "chrono::serde::ts_milliseconds")]
    pub at: DateTime<Utc>,
    #[serde(rename = "s")]
    pub score: SurveyScore,
    #[serde(rename = "id")]
    pub event_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Facts {
    /// order id → order
    #[serde(default)]
    pub orders: BTreeMap<String, OrderRec>,
    /// refund event id → refund
    #[serde(default)]
    pub refunds: BTreeMap<String, RefundRec>,
    #[serde(default)]
    pub archive: Archive,
    /// ticket id → (event id → change)
    #[serde(default)]
    pub tickets: BTreeMap<String, BTreeMap<String, TicketChange>>,
    /// Ordered by (time, event id); at most `retention.max_surveys` per kind.
    #[serde(default)]
    pub surveys: Vec<SurveyRec>,
    /// Customers this one referred.
    #[serde(default)]
    pub referrals: BTreeSet<String>,
    /// Largest event time seen.
    #[serde(default)]
    pub last_event_at: Option<DateTime<Utc>>,
}

fn main_category(event: &super::event::Purchase) -> String {
    let mut by_category: BTreeMap<&str, i64> = BTreeMap::new();
    for li in &event.line_items {
        *by_category.entry(li.category.as_str()).or_default() +=
            li.unit_price.get().saturating_mul(i64::from(li.quantity));
    }
    by_category
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(c, _)| c.to_owned())
        .unwrap_or_default()
}

impl Facts {
    /// Records one event. Idempotent and order-independent.
    pub fn record(&mut self, event: &DomainEvent, retention: &Retention) {
        let at = event.meta.occurred_at;
        self.last_event_at = Some(self.last_event_at.map_or(at, |t| t.max(at)));
        match &event.body {
            EventBody::Purchase(p) => {
                let rec = OrderRec {
                    at,
                    amount: p.amount.get(),
                    discount: p.discount.get(),
                    coupon: p.coupon_code.clone(),
                    channel: p.channel.clone(),
                    category: main_category(p),
                };
                // A resent order (same id) keeps the earliest record, whatever the arrival order.
                match self.orders.get(&p.order_id) {
                    Some(existing) if (existing.at, existing.amount) <= (rec.at, rec.amount) => {}
                    _ => {
                        self.orders.insert(p.order_id.clone(), rec);
                    }
                }
                self.fold_old_orders(retention.max_orders);
            }
            EventBody::Refund(r) => {
                self.refunds.insert(
                    event.meta.event_id.as_str().to_owned(),
                    RefundRec {
                        order_id: r.order_id.clone(),
                        amount: r.amount.get(),
                        at,
                    },
                );
            }
            EventBody::Ticket(t) => {
                self.tickets.entry(t.ticket_id.clone()).or_default().insert(
                    event.meta.event_id.as_str().to_owned(),
                    TicketChange {
                        at,
                        status: t.status,
                        escalated: t.escalated,
                        sla_breached: t.sla_breached,
                        csat: t.csat,
                        sentiment: t.sentiment,
                    },
                );
            }
            EventBody::Survey(s) => {
                let rec = SurveyRec {
                    at,
                    score: s.score,
                    event_id: event.meta.event_id.as_str().to_owned(),
                };
                if !self.surveys.contains(&rec) {
                    let pos = self
                        .surveys
                        .partition_point(|x| (x.at, &x.event_id) < (rec.at, &rec.event_id));
                    self.surveys.insert(pos, rec);
                }
                self.trim_surveys(retention.max_surveys);
            }
            // Points only: the ledger is in `CustomerState::points`.
            EventBody::Redemption(_)
            | EventBody::RedemptionCancel(_)
            | EventBody::Adjustment(_) => {}
        }
    }

    /// The facts established before `horizon` (what pruned ledger events left behind), with
    /// the archive totals and the referrals (which carry no time).
    pub fn before(&self, horizon: DateTime<Utc>) -> Facts {
        Facts {
            orders: self
                .orders
                .iter()
                .filter(|(_, o)| o.at < horizon)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            refunds: self
                .refunds
                .iter()
                .filter(|(_, r)| r.at < horizon)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            archive: self.archive.clone(),
            tickets: self
                .tickets
                .iter()
                .map(|(id, changes)| {
                    let kept: BTreeMap<String, TicketChange> = changes
                        .iter()
                        .filter(|(_, c)| c.at < horizon)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    (id.clone(), kept)
                })
                .filter(|(_, changes)| !changes.is_empty())
                .collect(),
            surveys: self
                .surveys
                .iter()
                .filter(|s| s.at < horizon)
                .cloned()
                .collect(),
            referrals: self.referrals.clone(),
            last_event_at: self.last_event_at.filter(|t| *t < horizon),
        }
    }

    /// Credits a referral to this customer (the referrer).
    pub fn credit_referral(&mut self, referred: &CustomerId) {
        if self.referrals.len() < 10_000 {
            self.referrals.insert(referred.as_str().to_owned());
        }
    }

    /// Forgets ticket changes older than the retention allows (and tickets left with none).
    /// Change by change, so the result does not depend on the order events arrived in.
    pub fn forget_old_tickets(&mut self, now: DateTime<Utc>, retention: &Retention) {
        let horizon = now - chrono::Duration::days(i64::from(retention.ticket_days));
        for changes in self.tickets.values_mut() {
            changes.retain(|_, c| c.at >= horizon);
        }
        self.tickets.retain(|_, changes| !changes.is_empty());
    }

    /// Keeps the newest `max` orders one by one; older whole days go to the archive totals.
    fn fold_old_orders(&mut self, max: usize) {
        while self.orders.len() > max {
            let Some(oldest_day) = self.orders.values().map(|o| o.at.date_naive()).min() else {
                return;
            };
            let ids: Vec<String> = self
                .orders
                .iter()
                .filter(|(_, o)| o.at.date_naive() == oldest_day)
                .map(|(id, _)| id.clone())
                .collect();
            for id in ids {
                let Some(order) = self.orders.remove(&id) else {
                    continue;
                };
                let refunded: i64 = self
                    .refunds
                    .iter()
                    .filter(|(_, r)| r.order_id == id)
                    .map(|(_, r)| r.amount)
                    .sum::<i64>()
                    .min(order.amount);
                self.refunds.retain(|_, r| r.order_id != id);
                let a = &mut self.archive;
                a.spend = a.spend.saturating_add(order.amount - refunded);
                a.orders += order_fraction(order.amount, refunded);
                a.first_at = Some(a.first_at.map_or(order.at, |t| t.min(order.at)));
                a.last_at = Some(a.last_at.map_or(order.at, |t| t.max(order.at)));
            }
            self.archive.days += 1;
        }
    }

    fn trim_surveys(&mut self, max_per_kind: usize) {
        let mut seen = [0usize; 3];
        let mut keep = vec![false; self.surveys.len()];
        for (i, s) in self.surveys.iter().enumerate().rev() {
            let n = &mut seen[s.score.kind_index()];
            if *n < max_per_kind {
                keep[i] = true;
                *n += 1;
            }
        }
        let mut it = keep.into_iter();
        self.surveys.retain(|_| it.next().unwrap_or(false));
    }

    /// Refunded amount of an order (capped at its amount).
    pub fn refunded(&self, order_id: &str, amount: i64) -> i64 {
        self.refunds
            .values()
            .filter(|r| r.order_id == order_id)
            .map(|r| r.amount)
            .sum::<i64>()
            .min(amount)
    }

    /// Refunds whose order Kizuna never saw.
    pub fn unmatched_refunds(&self) -> impl Iterator<Item = &RefundRec> {
        self.refunds
            .values()
            .filter(|r| !self.orders.contains_key(&r.order_id))
    }
}

/// How much of an order still counts after a refund: 1 for none, 0 for a full refund,
/// proportional in between.
pub fn order_fraction(amount: i64, refunded: i64) -> f64 {
    if refunded <= 0 {
        1.0
    } else if amount <= 0 || refunded >= amount {
        0.0
    } else {
        1.0 - refunded as f64 / amount as f64
    }
}
