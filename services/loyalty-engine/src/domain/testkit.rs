//! Builders for domain tests.

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::event::{
    DomainEvent, EventBody, EventMeta, LineItem, Purchase, Refund, SurveyAnswer, SurveyScore,
    TicketPriority, TicketStatus, TicketUpdate,
};
use super::ids::{CustomerId, EventId};
use super::money::{Currency, Minor};

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
        .single()
        .expect("valid date")
}

pub fn day(n: i64) -> DateTime<Utc> {
    t0() + Duration::days(n)
}

pub fn cid(s: &str) -> CustomerId {
    CustomerId::parse(s, 128).expect("valid id")
}

fn meta(id: &str, customer: &str, at: DateTime<Utc>) -> EventMeta {
    EventMeta {
        event_id: EventId::parse(id, 128).expect("valid id"),
        customer_id: cid(customer),
        occurred_at: at,
    }
}

pub fn money(v: i64) -> Minor {
    Minor::parse(v, Minor::DEFAULT_MAX).expect("valid amount")
}

pub fn jpy() -> Currency {
    Currency::parse("JPY").expect("valid currency")
}

#[derive(Debug, Clone)]
pub struct PurchaseSpec {
    pub amount: i64,
    pub discount: i64,
    pub coupon: Option<&'static str>,
    pub channel: &'static str,
    pub category: &'static str,
    pub referred_by: Option<&'static str>,
}

impl Default for PurchaseSpec {
    fn default() -> Self {
        Self {
            amount: 10_000,
            discount: 0,
            coupon: None,
            channel: "web",
            category: "daily_goods",
            referred_by: None,
        }
    }
}

pub fn purchase_with(
    id: &str,
    customer: &str,
    order: &str,
    at: DateTime<Utc>,
    spec: PurchaseSpec,
) -> DomainEvent {
    DomainEvent {
        meta: meta(id, customer, at),
        body: EventBody::Purchase(Purchase {
            order_id: order.to_owned(),
            amount: money(spec.amount),
            currency: jpy(),
            discount: money(spec.discount),
            coupon_code: spec.coupon.map(str::to_owned),
            channel: spec.channel.to_owned(),
            line_items: vec![LineItem {
                sku: "sku".into(),
                category: spec.category.to_owned(),
                quantity: 1,
                unit_price: money(spec.amount),
            }],
            referred_by: spec.referred_by.map(cid),
        }),
    }
}

pub fn purchase(id: &str, customer: &str, amount: i64, at: DateTime<Utc>) -> DomainEvent {
    purchase_with(
        id,
        customer,
        &format!("o-{id}"),
        at,
        PurchaseSpec {
            amount,
            ..Default::default()
        },
    )
}

pub fn refund(
    id: &str,
    customer: &str,
    order: &str,
    amount: i64,
    at: DateTime<Utc>,
) -> DomainEvent {
    DomainEvent {
        meta: meta(id, customer, at),
        body: EventBody::Refund(Refund {
            order_id: order.to_owned(),
            amount: money(amount),
            currency: jpy(),
        }),
    }
}

pub fn survey(id: &str, customer: &str, score: SurveyScore, at: DateTime<Utc>) -> DomainEvent {
    DomainEvent {
        meta: meta(id, customer, at),
        body: EventBody::Survey(SurveyAnswer {
            survey_id: "s".into(),
            score,
            comment: None,
        }),
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct TicketSpec {
    pub escalated: bool,
    pub sla_breached: bool,
    pub csat: Option<u8>,
    pub sentiment: Option<f64>,
}

pub fn ticket(
    id: &str,
    customer: &str,
    ticket_id: &str,
    status: TicketStatus,
    at: DateTime<Utc>,
    spec: TicketSpec,
) -> DomainEvent {
    DomainEvent {
        meta: meta(id, customer, at),
        body: EventBody::Ticket(TicketUpdate {
            ticket_id: ticket_id.to_owned(),
            status,
            priority: TicketPriority::Normal,
            channel: "email".into(),
            category: "delivery".into(),
            escalated: spec.escalated,
            sla_breached: spec.sla_breached,
            csat: spec.csat,
            sentiment: spec.sentiment,
        }),
    }
}
