//! Input events in the protobuf JSON mapping, as a shop's systems produce them, and a feeder
//! that produces them to an environment's input topics, keyed by customer id.
//!
//! Shared by the `e2e` and `webhooks` test binaries (`#[path = "../shared/inputs.rs"]`).

use chrono::{DateTime, Utc};
use kizuna::config::Topics;
use kizuna_e2e::{TestEnv, TestProducer};
use serde_json::{Value, json};

/// A purchase of one line item, now.
pub fn purchase(event_id: &str, customer: &str, order: &str, amount_minor: i64) -> Value {
    purchase_at(event_id, customer, order, amount_minor, Utc::now())
}

/// A purchase of one line item at `at`.
pub fn purchase_at(
    event_id: &str,
    customer: &str,
    order: &str,
    amount_minor: i64,
    at: DateTime<Utc>,
) -> Value {
    let amount = amount_minor.to_string();
    let fields = json!({
        "orderId": order,
        "kind": "PURCHASE_KIND_PURCHASE",
        "amountMinor": amount,
        "currency": "JPY",
        "lineItems": [{"sku": "tea-01", "category": "daily_goods", "quantity": 1, "unitPriceMinor": amount}],
        "channel": "web"
    });
    event(event_id, customer, at, fields)
}

/// A refund of all of `purchase` (its order, its amount) at `at`.
pub fn refund_of(purchase: &Value, event_id: &str, at: DateTime<Utc>) -> Value {
    let customer = purchase["customerId"].as_str().unwrap_or_default();
    let fields = json!({
        "orderId": purchase["orderId"],
        "kind": "PURCHASE_KIND_REFUND",
        "amountMinor": purchase["amountMinor"],
        "currency": purchase["currency"]
    });
    event(event_id, customer, at, fields)
}

/// An NPS answer, now, with a complaint as its comment.
pub fn nps(event_id: &str, customer: &str, score: u32) -> Value {
    let fields = json!({
        "surveyId": "nps-2026q4",
        "kind": "SURVEY_KIND_NPS",
        "score": score,
        "comment": "the delivery was late again"
    });
    event(event_id, customer, Utc::now(), fields)
}

/// A high-priority delivery ticket with a bad rating; `escalated` also breaches its SLA.
pub fn ticket_at(
    event_id: &str,
    customer: &str,
    ticket: &str,
    status: &str,
    escalated: bool,
    at: DateTime<Utc>,
) -> Value {
    let fields = json!({
        "ticketId": ticket,
        "status": status,
        "priority": "TICKET_PRIORITY_HIGH",
        "channel": "chat",
        "category": "delivery",
        "escalated": escalated,
        "slaBreached": escalated,
        "csat": 1,
        "sentiment": -0.8
    });
    event(event_id, customer, at, fields)
}

/// The fields every input event has (`eventId`, `customerId`, `occurredAt`), with `fields`.
fn event(event_id: &str, customer: &str, at: DateTime<Utc>, fields: Value) -> Value {
    let mut event = json!({
        "eventId": event_id,
        "customerId": customer,
        "occurredAt": at.to_rfc3339(),
    });
    if let (Some(all), Value::Object(more)) = (event.as_object_mut(), fields) {
        all.extend(more);
    }
    event
}

/// Produces input events to one environment's topics, each keyed by its customer.
#[derive(Debug, Clone)]
pub struct Feed {
    pub producer: TestProducer,
    pub topics: Topics,
}

impl Feed {
    pub fn new(env: &TestEnv) -> anyhow::Result<Self> {
        Ok(Self {
            producer: env.producer()?,
            topics: env.settings.kafka.topics.clone(),
        })
    }

    /// A purchase of `amount_minor` JPY by `customer`, now.
    pub async fn buy(
        &self,
        customer: &str,
        event_id: &str,
        order: &str,
        amount_minor: i64,
    ) -> anyhow::Result<()> {
        self.buy_at(customer, event_id, order, amount_minor, Utc::now())
            .await
    }

    /// A purchase of `amount_minor` JPY by `customer` at `at`.
    pub async fn buy_at(
        &self,
        customer: &str,
        event_id: &str,
        order: &str,
        amount_minor: i64,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let event = purchase_at(event_id, customer, order, amount_minor, at);
        self.purchase(customer, &event).await
    }

    /// Any purchase-topic event (a purchase or a refund) of `customer`.
    pub async fn purchase(&self, customer: &str, event: &Value) -> anyhow::Result<()> {
        self.producer
            .send_json(&self.topics.purchases, customer, event)
            .await
    }

    /// `customer` answers the NPS question with `score`, now.
    pub async fn answer_nps(
        &self,
        customer: &str,
        event_id: &str,
        score: u32,
    ) -> anyhow::Result<()> {
        self.producer
            .send_json(
                &self.topics.surveys,
                customer,
                &nps(event_id, customer, score),
            )
            .await
    }

    /// A support-ticket event of `customer`.
    pub async fn ticket(&self, customer: &str, event: &Value) -> anyhow::Result<()> {
        self.producer
            .send_json(&self.topics.support_tickets, customer, event)
            .await
    }
}
