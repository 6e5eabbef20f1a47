//! A small world of customers with their own purchase rhythm, basket size and mood.

use chrono::{DateTime, Duration, Utc};
use kizuna_proto::{Timestamp, v1};
use rand::Rng;
use rand::rngs::StdRng;

const CATEGORIES: [(&str, i64, i64); 4] = [
    // category, typical unit price (JPY), mean days between purchases
    ("daily_goods", 1_200, 7),
    ("fashion", 6_500, 45),
    ("beauty", 3_800, 30),
    ("electronics", 48_000, 365),
];

#[derive(Debug)]
struct Customer {
    id: String,
    category: usize,
    /// Mean days between purchases for this customer.
    rhythm_days: f64,
    next_at: DateTime<Utc>,
    orders: u32,
    mood: f64,
}

#[derive(Debug)]
pub struct World {
    customers: Vec<Customer>,
    seq: u64,
    /// Distinguishes the event ids of separate runs.
    run: String,
}

fn ts(t: DateTime<Utc>) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

impl World {
    pub fn new(n: u32, prefix: &str, run: &str, start: DateTime<Utc>, rng: &mut StdRng) -> Self {
        let customers = (0..n)
            .map(|i| {
                let category = rng.random_range(0..CATEGORIES.len());
                let rhythm_days = CATEGORIES[category].2 as f64 * rng.random_range(0.3..1.5);
                Customer {
                    id: format!("{prefix}{i:05}"),
                    category,
                    rhythm_days,
                    next_at: start + Duration::hours(rng.random_range(0..24 * 30)),
                    orders: 0,
                    mood: rng.random_range(-1.0..1.0),
                }
            })
            .collect();
        Self {
            customers,
            seq: 0,
            run: run.to_owned(),
        }
    }

    /// The next event: mostly purchases in each customer's own rhythm, sometimes a support
    /// ticket or a survey answer that follows the customer's mood.
    pub fn next_event(&mut self, rng: &mut StdRng, now: DateTime<Utc>) -> v1::input_event::Event {
        self.seq += 1;
        let seq = self.seq;
        let i = rng.random_range(0..self.customers.len());
        let c = &mut self.customers[i];
        let at = c.next_at.min(now);
        let gap_hours = (c.rhythm_days * 24.0 * rng.random_range(0.5..1.5)).max(1.0) as i64;
        c.next_at = (c.next_at + Duration::hours(gap_hours)).min(now);
        let event_id = format!("sim-{}-{seq}", self.run);
        let roll: f64 = rng.random();
        if roll < 0.8 {
            c.orders += 1;
            let (category, price, _) = CATEGORIES[c.category];
            let quantity = rng.random_range(1..=3u32);
            let unit = (price as f64 * rng.random_range(0.6..1.6)) as i64;
            let gross = unit * i64::from(quantity);
            let discounted = rng.random_bool(0.25);
            let discount = if discounted { gross / 10 } else { 0 };
            v1::input_event::Event::Purchase(v1::Purchase {
                event_id,
                customer_id: c.id.clone(),
                occurred_at: ts(at),
                order_id: format!("ord-{}-{}-{}", self.run, c.id, c.orders),
                kind: v1::PurchaseKind::Purchase as i32,
                amount_minor: gross - discount,
                currency: "JPY".into(),
                line_items: vec![v1::LineItem {
                    sku: format!("{category}-{}", rng.random_range(100..999)),
                    category: category.into(),
                    quantity,
                    unit_price_minor: unit,
                }],
                discount_minor: discount,
                coupon_code: if discounted {
                    "WELCOME10".into()
                } else {
                    String::new()
                },
                channel: ["web", "app", "store"][rng.random_range(0..3)].into(),
                referred_by: String::new(),
            })
        } else if roll < 0.9 {
            let bad = c.mood < -0.3;
            v1::input_event::Event::SupportTicket(v1::SupportTicket {
                event_id,
                customer_id: c.id.clone(),
                occurred_at: ts(at),
                ticket_id: format!("tkt-{}-{seq}", self.run),
                status: if bad {
                    v1::TicketStatus::Reopened
                } else {
                    v1::TicketStatus::Resolved
                } as i32,
                priority: v1::TicketPriority::Normal as i32,
                channel: "email".into(),
                category: "delivery".into(),
                escalated: bad && rng.random_bool(0.5),
                sla_breached: bad && rng.random_bool(0.5),
                csat: Some(if bad { 2 } else { 4 }),
                sentiment: Some(c.mood.clamp(-1.0, 1.0)),
            })
        } else {
            let score = ((c.mood + 1.0) * 5.0).round().clamp(0.0, 10.0) as u32;
            v1::input_event::Event::SurveyResponse(v1::SurveyResponse {
                event_id,
                customer_id: c.id.clone(),
                occurred_at: ts(at),
                survey_id: "nps-quarterly".into(),
                kind: v1::SurveyKind::Nps as i32,
                score,
                comment: None,
            })
        }
    }
}
