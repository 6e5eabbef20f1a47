//! What a test sends: the input events of a seeded workload ([`Plan`] → [`generate`]), as the
//! Kafka messages ([`Msg`]) producers send them (protobuf JSON, or binary protobuf).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use kizuna::config::Topics;
use serde_json::{Value, json};

use super::oracle::Expect;
use super::rng::Rng;

// Input events

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Input {
    Purchases,
    Tickets,
    Surveys,
}

impl Input {
    pub fn topic(self, topics: &Topics) -> &str {
        match self {
            Input::Purchases => &topics.purchases,
            Input::Tickets => &topics.support_tickets,
            Input::Surveys => &topics.surveys,
        }
    }
}

/// A Kafka message to produce.
#[derive(Debug, Clone)]
pub struct Msg {
    pub input: Input,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// How the producer picks the partition of a keyed message.
    pub partitioner: Partitioner,
}

/// The partitioners producers use in the wild.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Partitioner {
    /// The Java client's default (murmur2), and librdkafka's `murmur2_random`.
    #[default]
    Murmur2,
    /// librdkafka's default (`consistent_random`, CRC32): the Python, Go and Node clients
    /// built on librdkafka use it unless told otherwise.
    Crc32,
}

#[derive(Debug, Clone)]
pub enum Body {
    Purchase {
        order_id: String,
        amount: i64,
        category: &'static str,
        channel: &'static str,
    },
    Refund {
        order_id: String,
        amount: i64,
    },
    Ticket {
        ticket_id: String,
        status: &'static str,
        escalated: bool,
        sla_breached: bool,
        csat: Option<u32>,
        sentiment: Option<f64>,
    },
    Survey {
        kind: &'static str,
        score: u32,
    },
}

#[derive(Debug, Clone)]
pub struct Event {
    pub event_id: String,
    pub customer: String,
    pub at: DateTime<Utc>,
    pub body: Body,
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Event {
    pub fn input(&self) -> Input {
        match self.body {
            Body::Purchase { .. } | Body::Refund { .. } => Input::Purchases,
            Body::Ticket { .. } => Input::Tickets,
            Body::Survey { .. } => Input::Surveys,
        }
    }

    /// The protobuf JSON mapping, as producers send it.
    pub fn json(&self) -> Value {
        let mut v = json!({
            "eventId": self.event_id,
            "customerId": self.customer,
            "occurredAt": rfc3339(self.at),
        });
        let extra = match &self.body {
            Body::Purchase {
                order_id,
                amount,
                category,
                channel,
            } => json!({
                "orderId": order_id,
                "kind": "PURCHASE_KIND_PURCHASE",
                "amountMinor": amount.to_string(),
                "currency": "JPY",
                "lineItems": [{"sku": format!("{category}-01"), "category": category, "quantity": 1,
                               "unitPriceMinor": amount.to_string()}],
                "discountMinor": "0",
                "channel": channel,
            }),
            Body::Refund { order_id, amount } => json!({
                "orderId": order_id,
                "kind": "PURCHASE_KIND_REFUND",
                "amountMinor": amount.to_string(),
                "currency": "JPY",
            }),
            Body::Ticket {
                ticket_id,
                status,
                escalated,
                sla_breached,
                csat,
                sentiment,
            } => {
                let mut t = json!({
                    "ticketId": ticket_id,
                    "status": status,
                    "priority": "TICKET_PRIORITY_NORMAL",
                    "channel": "email",
                    "category": "delivery",
                    "escalated": escalated,
                    "slaBreached": sla_breached,
                });
                if let Some(c) = csat {
                    t["csat"] = json!(c);
                }
                if let Some(s) = sentiment {
                    t["sentiment"] = json!(s);
                }
                t
            }
            Body::Survey { kind, score } => json!({
                "surveyId": format!("survey-{kind}"),
                "kind": kind,
                "score": score,
                "comment": "fault injection",
            }),
        };
        if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), extra) {
            obj.extend(more);
        }
        v
    }

    /// Binary protobuf, for purchases, refunds and surveys.
    pub fn protobuf(&self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        pb::string(&mut out, 1, &self.event_id);
        pb::string(&mut out, 2, &self.customer);
        pb::message(&mut out, 3, &pb::timestamp(self.at));
        match &self.body {
            Body::Purchase {
                order_id,
                amount,
                category,
                channel,
            } => {
                pb::string(&mut out, 4, order_id);
                pb::int(&mut out, 5, 1);
                pb::int(&mut out, 6, *amount);
                pb::string(&mut out, 7, "JPY");
                let mut item = Vec::new();
                pb::string(&mut item, 1, &format!("{category}-01"));
                pb::string(&mut item, 2, category);
                pb::int(&mut item, 3, 1);
                pb::int(&mut item, 4, *amount);
                pb::message(&mut out, 8, &item);
                pb::string(&mut out, 11, channel);
            }
            Body::Refund { order_id, amount } => {
                pb::string(&mut out, 4, order_id);
                pb::int(&mut out, 5, 2);
                pb::int(&mut out, 6, *amount);
                pb::string(&mut out, 7, "JPY");
            }
            Body::Survey { kind, score } => {
                pb::string(&mut out, 4, &format!("survey-{kind}"));
                let k = match *kind {
                    "SURVEY_KIND_NPS" => 1,
                    "SURVEY_KIND_CSAT" => 2,
                    _ => 3,
                };
                pb::int(&mut out, 5, k);
                pb::int(&mut out, 6, i64::from(*score));
            }
            Body::Ticket { .. } => return None,
        }
        Some(out)
    }

    pub fn message(&self, binary: bool) -> Msg {
        let (payload, content_type) = match self.protobuf().filter(|_| binary) {
            Some(bytes) => (bytes, "application/x-protobuf"),
            None => (
                serde_json::to_vec(&self.json()).unwrap_or_default(),
                "application/json",
            ),
        };
        Msg {
            input: self.input(),
            key: Some(self.customer.clone()),
            payload,
            headers: vec![("content-type".into(), content_type.as_bytes().to_vec())],
            partitioner: Partitioner::Murmur2,
        }
    }
}

/// A minimal protobuf writer (no prost in this crate): enough for the input messages.
pub mod pb {
    use chrono::{DateTime, Utc};

    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    pub fn key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
        varint(out, (u64::from(field) << 3) | u64::from(wire_type));
    }

    /// int32/int64/uint32/enum (negative numbers as 10-byte two's complement).
    pub fn int(out: &mut Vec<u8>, field: u32, v: i64) {
        if v != 0 {
            key(out, field, 0);
            varint(out, v as u64);
        }
    }

    pub fn string(out: &mut Vec<u8>, field: u32, s: &str) {
        if !s.is_empty() {
            message(out, field, s.as_bytes());
        }
    }

    pub fn message(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
        key(out, field, 2);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    pub fn timestamp(t: DateTime<Utc>) -> Vec<u8> {
        let mut out = Vec::new();
        int(&mut out, 1, t.timestamp());
        int(&mut out, 2, i64::from(t.timestamp_subsec_nanos()));
        out
    }
}

/// Event times: all equal (the event-time clock then gives every run the same "now"), or
/// spread over the last hours (wall clock).
#[derive(Debug, Clone, Copy)]
pub enum Times {
    Fixed(DateTime<Utc>),
    Spread {
        from: DateTime<Utc>,
        step: chrono::Duration,
    },
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub customers: usize,
    pub events: usize,
    pub seed: u64,
    /// Refunds may take a customer below a tier they reached (TierWillDowngrade). The tier
    /// then depends on which prefixes were evaluated, so only runs that evaluate every event
    /// on its own (batch_max_events = 1) can be compared. Otherwise refunds never lower the
    /// qualifying tier, which makes the final state independent of batching.
    pub crossing_refunds: bool,
    pub times: Times,
    /// Share of purchases and surveys sent as binary protobuf.
    pub binary_share: f64,
}

impl Plan {
    /// `events` events for 200 customers, spread over the last hours (wall clock), 5% of the
    /// purchases and surveys as binary protobuf, refunds that never lower a tier reached: the
    /// plan of most tests.
    pub fn recent(seed: u64, events: usize) -> Self {
        Self {
            customers: 200,
            events,
            seed,
            crossing_refunds: false,
            times: recent_times(),
            binary_share: 0.05,
        }
    }
}

#[derive(Debug, Default)]
pub struct Workload {
    pub events: Vec<Event>,
    pub expect: BTreeMap<String, Expect>,
    pub purchases: usize,
    pub refunds: usize,
    pub tickets: usize,
    pub surveys: usize,
    pub binary: usize,
}

impl Workload {
    pub fn messages(&self, plan: &Plan) -> Vec<Msg> {
        let mut rng = Rng::new(plan.seed ^ 0x5eed);
        self.events
            .iter()
            .map(|e| e.message(rng.chance(plan.binary_share)))
            .collect()
    }

    pub fn summary(&self) -> String {
        format!(
            "{} events ({} purchases, {} refunds, {} ticket updates, {} survey answers) for {} customers",
            self.events.len(),
            self.purchases,
            self.refunds,
            self.tickets,
            self.surveys,
            self.expect.len()
        )
    }
}

pub const CATEGORIES: [&str; 5] = ["daily_goods", "beauty", "fashion", "home", "groceries"];
pub const CHANNELS: [&str; 3] = ["web", "app", "store"];
pub const TICKET_STATUSES: [&str; 4] = [
    "TICKET_STATUS_UPDATED",
    "TICKET_STATUS_RESOLVED",
    "TICKET_STATUS_REOPENED",
    "TICKET_STATUS_CLOSED",
];

pub fn customer_id(i: usize) -> String {
    format!("cust-{i:04}")
}

pub fn generate(plan: &Plan) -> Workload {
    let mut rng = Rng::new(plan.seed);
    let mut w = Workload::default();
    // Spend levels per customer, so that customers end up in every tier.
    let scales = [600, 1_200, 2_000, 3_500, 6_000];
    let mut tickets: HashMap<String, usize> = HashMap::new();
    for n in 0..plan.events {
        let c = rng.below(plan.customers as u64) as usize;
        let customer = customer_id(c);
        let at = match plan.times {
            Times::Fixed(t) => t,
            Times::Spread { from, step } => from + step * (n as i32),
        };
        let event_id = format!("evt-{n:06}");
        let expect = w.expect.entry(customer.clone()).or_default();
        let roll = rng.unit();
        let refundable: Vec<(String, i64)> = expect
            .orders
            .iter()
            .filter(|(_, (a, r))| a > r)
            .map(|(id, (a, r))| (id.clone(), a - r))
            .collect();
        let mut body = None;
        if (0.60..0.68).contains(&roll) && !refundable.is_empty() {
            let (order_id, left) = rng.pick(&refundable).clone();
            let amount = if rng.chance(0.4) {
                left
            } else {
                (left * rng.range(10, 90) / 100).max(1)
            };
            let mut after = expect.clone();
            if let Some(o) = after.orders.get_mut(&order_id) {
                o.1 += amount;
            }
            if plan.crossing_refunds || after.rank() >= expect.rank() {
                body = Some(Body::Refund { order_id, amount });
            }
        } else if (0.68..0.85).contains(&roll) {
            let open = tickets.entry(customer.clone()).or_default();
            let (ticket_id, status) = if *open == 0 || rng.chance(0.3) {
                *open += 1;
                (format!("{customer}-t{open}"), "TICKET_STATUS_OPENED")
            } else {
                let t = rng.range(1, *open as i64);
                (format!("{customer}-t{t}"), *rng.pick(&TICKET_STATUSES))
            };
            body = Some(Body::Ticket {
                ticket_id,
                status,
                escalated: rng.chance(0.05),
                sla_breached: rng.chance(0.05),
                csat: rng.chance(0.3).then(|| rng.range(1, 5) as u32),
                sentiment: rng
                    .chance(0.3)
                    .then(|| (rng.range(-100, 100) as f64) / 100.0),
            });
        } else if roll >= 0.85 {
            let (kind, score) = match rng.below(3) {
                0 => ("SURVEY_KIND_NPS", rng.range(0, 10)),
                1 => ("SURVEY_KIND_CSAT", rng.range(1, 5)),
                _ => ("SURVEY_KIND_CES", rng.range(1, 7)),
            };
            body = Some(Body::Survey {
                kind,
                score: score as u32,
            });
        }
        let body = body.unwrap_or_else(|| {
            let scale = scales[c % scales.len()];
            Body::Purchase {
                order_id: format!("ord-{n:06}"),
                amount: scale * rng.range(50, 150) / 100,
                category: CATEGORIES[rng.below(CATEGORIES.len() as u64) as usize],
                channel: CHANNELS[rng.below(CHANNELS.len() as u64) as usize],
            }
        });
        match &body {
            Body::Purchase {
                order_id, amount, ..
            } => {
                expect.orders.insert(order_id.clone(), (*amount, 0));
                w.purchases += 1;
            }
            Body::Refund { order_id, amount } => {
                if let Some(o) = expect.orders.get_mut(order_id) {
                    o.1 += amount;
                }
                w.refunds += 1;
            }
            Body::Ticket { .. } => w.tickets += 1,
            Body::Survey { .. } => w.surveys += 1,
        }
        expect.events += 1;
        expect.max_rank = expect.max_rank.max(expect.rank());
        w.events.push(Event {
            event_id,
            customer,
            at,
            body,
        });
    }
    let mut rng = Rng::new(plan.seed ^ 0x5eed);
    w.binary = w
        .events
        .iter()
        .filter(|e| rng.chance(plan.binary_share) && e.protobuf().is_some())
        .count();
    w
}

/// Event times an hour or two ago: inside every window of the programme, and no ticket ages
/// past its 7-day limit while a test runs.
pub fn recent_times() -> Times {
    let from = Utc::now() - chrono::Duration::hours(2);
    Times::Spread {
        from: DateTime::from_timestamp(from.timestamp(), 0).unwrap_or(from),
        step: chrono::Duration::milliseconds(100),
    }
}
