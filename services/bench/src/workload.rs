//! The benchmark's input events: a realistic mix over a customer population, as producers
//! send them (protobuf JSON mapping, keyed by customer id), and "marker" events that are
//! guaranteed to cause an output event.
//!
//! Mix: about 80% purchases (1–3 line items from categories with their own price ranges,
//! some discounted or with a coupon), 10% support-ticket updates (opened, then resolved with
//! a CSAT answer, now and then escalated or past its SLA), 10% survey answers (NPS, CSAT, CES).
//!
//! A marker is a brand-new customer's first purchase of 150,000 JPY dated now: with the
//! built-in programme it moves the customer from no segment to `high_value_not_loyal` (no
//! attitude signal, profit spend at or above `segments.high_value_spend_minor` = 100,000), so
//! the engine publishes exactly one `SegmentChanged` with `causedBy` = the marker's event id.
//! It changes no tier (silver needs two orders) and no churn level (no silence yet).

use chrono::{DateTime, Duration, Utc};
use kizuna_proto::v1;
use kizuna_testkit::Rng as SeededRng;
use rand::Rng;
use rand_distr::Zipf;

/// Amount of a marker purchase: above the grid's high-value threshold (100,000 JPY).
pub const MARKER_AMOUNT_MINOR: i64 = 150_000;

/// Which input topic a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Purchases,
    Tickets,
    Surveys,
}

/// One message to produce.
#[derive(Debug, Clone)]
pub struct Msg {
    pub input: Input,
    pub key: String,
    pub payload: Vec<u8>,
    /// The event id when this is a marker.
    pub marker: Option<String>,
}

/// When the generated events happened.
#[derive(Debug, Clone, Copy)]
pub enum Dating {
    /// Spread uniformly over the `days` before `now` (a backlog of recent history).
    Recent { now: DateTime<Utc>, days: i64 },
    /// Now (live traffic).
    Live,
}

/// (category, min and max unit price, JPY, relative weight)
const CATEGORIES: [(&str, i64, i64, u32); 6] = [
    ("daily_goods", 200, 2_500, 32),
    ("groceries", 300, 4_000, 26),
    ("beauty", 1_000, 8_000, 15),
    ("fashion", 2_000, 15_000, 15),
    ("home", 1_500, 20_000, 10),
    ("electronics", 5_000, 80_000, 2),
];

const CHANNELS: [&str; 3] = ["web", "app", "store"];

/// The shares of all events that go to the most active customer and to the most active 1% of
/// customers, under a Zipf law of exponent `s` over `customers`.
pub fn zipf_shares(customers: u32, s: f64) -> (f64, f64) {
    let weight = |k: u32| f64::from(k).powf(-s);
    let total: f64 = (1..=customers).map(weight).sum();
    let top_percent: f64 = (1..=(customers / 100).max(1)).map(weight).sum();
    (weight(1) / total, top_percent / total)
}

/// A deterministic stream of benchmark events.
#[derive(Debug)]
pub struct Workload {
    rng: SeededRng,
    /// Part of every id, so separate runs never collide.
    run: String,
    customers: u32,
    marker_share: f64,
    dating: Dating,
    /// Customers drawn by a Zipf law (number 0 the most active) instead of uniformly.
    zipf: Option<Zipf<f64>>,
    seq: u64,
    markers: u64,
}

impl Workload {
    pub fn new(seed: u64, run: &str, customers: u32, marker_share: f64, dating: Dating) -> Self {
        Self {
            rng: SeededRng::new(seed),
            run: run.to_owned(),
            customers: customers.max(1),
            marker_share: marker_share.clamp(0.0, 1.0),
            dating,
            zipf: None,
            seq: 0,
            markers: 0,
        }
    }

    /// Draws customers by a Zipf law of exponent `s` over the population: customer number k
    /// (from 1) is picked with a probability proportional to 1/k^s, so a few are very active.
    pub fn with_zipf(mut self, s: f64) -> anyhow::Result<Self> {
        let zipf = Zipf::new(f64::from(self.customers), s)
            .map_err(|e| anyhow::anyhow!("a Zipf exponent of {s}: {e}"))?;
        self.zipf = Some(zipf);
        Ok(self)
    }

    fn pick_customer(&mut self) -> u32 {
        match self.zipf {
            // Samples are whole numbers in 1..=customers.
            Some(z) => (self.rng.sample(z) as u32).clamp(1, self.customers) - 1,
            None => self.rng.random_range(0..self.customers),
        }
    }

    /// The id of customer number `i` of the population.
    pub fn customer_id(run: &str, i: u32) -> String {
        format!("bc-{run}-{i:07}")
    }

    fn occurred_at(&mut self) -> DateTime<Utc> {
        match self.dating {
            Dating::Live => Utc::now(),
            Dating::Recent { now, days } => {
                let secs = self.rng.random_range(0..(days.max(1) * 86_400));
                now - Duration::seconds(secs)
            }
        }
    }

    /// The next event.
    pub fn next_msg(&mut self) -> Msg {
        self.seq += 1;
        if self.marker_share > 0.0 && self.rng.random_bool(self.marker_share) {
            return self.marker();
        }
        let pick = self.pick_customer();
        let customer = Self::customer_id(&self.run, pick);
        let event_id = format!("be-{}-{}", self.run, self.seq);
        let at = ts(self.occurred_at());
        let roll: f64 = self.rng.random();
        let (input, payload) = if roll < 0.8 {
            (Input::Purchases, self.purchase(event_id, &customer, at))
        } else if roll < 0.9 {
            (Input::Tickets, self.ticket(event_id, &customer, at))
        } else {
            (Input::Surveys, self.survey(event_id, &customer, at))
        };
        Msg {
            input,
            key: customer,
            payload,
            marker: None,
        }
    }

    /// A brand-new customer's first purchase of [`MARKER_AMOUNT_MINOR`], dated now.
    fn marker(&mut self) -> Msg {
        self.markers += 1;
        let customer = format!("bm-{}-{}", self.run, self.markers);
        let event_id = format!("bmk-{}-{}", self.run, self.seq);
        let p = v1::Purchase {
            event_id: event_id.clone(),
            customer_id: customer.clone(),
            occurred_at: Some(ts(Utc::now())),
            order_id: format!("bo-{}-{}", self.run, self.seq),
            kind: v1::PurchaseKind::Purchase as i32,
            amount_minor: MARKER_AMOUNT_MINOR,
            currency: "JPY".into(),
            line_items: vec![v1::LineItem {
                sku: "tv-55".into(),
                category: "electronics".into(),
                quantity: 1,
                unit_price_minor: MARKER_AMOUNT_MINOR,
            }],
            discount_minor: 0,
            coupon_code: String::new(),
            channel: "web".into(),
            referred_by: String::new(),
        };
        Msg {
            input: Input::Purchases,
            key: customer,
            payload: to_json(&p),
            marker: Some(event_id),
        }
    }

    fn pick_category(&mut self) -> (&'static str, i64, i64) {
        let total: u32 = CATEGORIES.iter().map(|c| c.3).sum();
        let mut x = self.rng.random_range(0..total);
        for (name, lo, hi, w) in CATEGORIES {
            if x < w {
                return (name, lo, hi);
            }
            x -= w;
        }
        ("daily_goods", 200, 2_500)
    }

    fn purchase(
        &mut self,
        event_id: String,
        customer: &str,
        at: kizuna_proto::Timestamp,
    ) -> Vec<u8> {
        let lines = match self.rng.random_range(0..10) {
            0..=5 => 1,
            6..=8 => 2,
            _ => 3,
        };
        let mut line_items = Vec::with_capacity(lines);
        let mut gross = 0;
        for _ in 0..lines {
            let (category, lo, hi) = self.pick_category();
            let unit = self.rng.random_range(lo..=hi) / 10 * 10;
            let quantity = match self.rng.random_range(0..10) {
                0..=6 => 1,
                7..=8 => 2,
                _ => 3,
            };
            gross += unit * i64::from(quantity);
            line_items.push(v1::LineItem {
                sku: format!("{category}-{:03}", self.rng.random_range(0..200)),
                category: category.into(),
                quantity,
                unit_price_minor: unit,
            });
        }
        let (discount, coupon) = match self.rng.random_range(0..10) {
            0 => (gross / 10, "SALE10".to_owned()),
            1 => (
                gross / 20,
                format!("PTS{}", self.rng.random_range(100..999)),
            ),
            _ => (0, String::new()),
        };
        let p = v1::Purchase {
            event_id,
            customer_id: customer.to_owned(),
            occurred_at: Some(at),
            order_id: format!("bo-{}-{}", self.run, self.seq),
            kind: v1::PurchaseKind::Purchase as i32,
            amount_minor: gross - discount,
            currency: "JPY".into(),
            line_items,
            discount_minor: discount,
            coupon_code: coupon,
            channel: CHANNELS[self.rng.random_range(0..CHANNELS.len())].into(),
            referred_by: String::new(),
        };
        to_json(&p)
    }

    fn ticket(&mut self, event_id: String, customer: &str, at: kizuna_proto::Timestamp) -> Vec<u8> {
        let resolved = self.rng.random_bool(0.5);
        let bad = self.rng.random_bool(0.05);
        let t = v1::SupportTicket {
            event_id,
            customer_id: customer.to_owned(),
            occurred_at: Some(at),
            // Opened and resolved updates of a customer's few tickets.
            ticket_id: format!("bt-{customer}-{}", self.rng.random_range(0..3)),
            status: if resolved {
                v1::TicketStatus::Resolved as i32
            } else {
                v1::TicketStatus::Opened as i32
            },
            priority: v1::TicketPriority::Normal as i32,
            channel: "chat".into(),
            category: "delivery".into(),
            escalated: bad && self.rng.random_bool(0.5),
            sla_breached: bad,
            csat: resolved.then(|| {
                if bad {
                    self.rng.random_range(1..=3)
                } else {
                    self.rng.random_range(3..=5)
                }
            }),
            sentiment: Some(f64::from(self.rng.random_range(-60..=90_i32)) / 100.0),
        };
        to_json(&t)
    }

    fn survey(&mut self, event_id: String, customer: &str, at: kizuna_proto::Timestamp) -> Vec<u8> {
        let roll = self.rng.random_range(0..20);
        // Realistic answers: most NPS answers passive or promoter, most CSAT 4–5, CES low.
        let (kind, score) = if roll < 12 {
            let nps = match self.rng.random_range(0..20) {
                0..=4 => self.rng.random_range(0..=6),
                5..=13 => self.rng.random_range(7..=8),
                _ => self.rng.random_range(9..=10),
            };
            (v1::SurveyKind::Nps, nps)
        } else if roll < 17 {
            (v1::SurveyKind::Csat, self.rng.random_range(3..=5))
        } else {
            (v1::SurveyKind::Ces, self.rng.random_range(1..=4))
        };
        let s = v1::SurveyResponse {
            event_id,
            customer_id: customer.to_owned(),
            occurred_at: Some(at),
            survey_id: "relationship-2026".into(),
            kind: kind as i32,
            score,
            comment: self
                .rng
                .random_bool(0.2)
                .then(|| "配送が早くて助かりました".to_owned()),
        };
        to_json(&s)
    }
}

fn ts(t: DateTime<Utc>) -> kizuna_proto::Timestamp {
    kizuna_proto::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // The generated types always serialise; an empty payload would be dead-lettered visibly.
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_about_eighty_ten_ten_and_deterministic() {
        let mut a = Workload::new(7, "t", 1000, 0.0, Dating::Live);
        let mut b = Workload::new(7, "t", 1000, 0.0, Dating::Live);
        let mut counts = [0u32; 3];
        for _ in 0..10_000 {
            let (x, y) = (a.next_msg(), b.next_msg());
            assert_eq!(x.key, y.key);
            counts[x.input as usize] += 1;
        }
        assert!((7_700..8_300).contains(&counts[0]), "{counts:?}");
        assert!((800..1_200).contains(&counts[1]), "{counts:?}");
        assert!((800..1_200).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn a_zipf_mix_gives_the_first_customers_their_share_and_covers_the_population() {
        let customers = 1000;
        let (top, top_percent) = zipf_shares(customers, 1.0);
        // 1/H(1000) = 0.1336; the first 10 of 1000: H(10)/H(1000) = 0.3907.
        assert!((top - 0.1336).abs() < 1e-3, "{top}");
        assert!((top_percent - 0.3907).abs() < 1e-3, "{top_percent}");
        let mut w = Workload::new(9, "t", customers, 0.0, Dating::Live)
            .with_zipf(1.0)
            .expect("a valid exponent");
        let n = 50_000;
        let mut counts = std::collections::HashMap::<String, u32>::new();
        for _ in 0..n {
            *counts.entry(w.next_msg().key).or_default() += 1;
        }
        let first = f64::from(counts[&Workload::customer_id("t", 0)]) / f64::from(n);
        assert!(
            (first - top).abs() < 0.01,
            "customer 0 got {first}, expected {top}"
        );
        assert!(counts.len() > 500, "{} distinct customers", counts.len());
        assert!(counts.keys().all(|k| {
            let i: u32 = k
                .rsplit('-')
                .next()
                .and_then(|d| d.parse().ok())
                .expect("a number");
            i < customers
        }));
        let uniform = Workload::new(9, "t", customers, 0.0, Dating::Live);
        assert!(uniform.zipf.is_none());
        assert!(
            Workload::new(9, "t", customers, 0.0, Dating::Live)
                .with_zipf(-1.0)
                .is_err()
        );
    }

    /// Decodes and validates a message as the engine does.
    fn engine_decode(m: &Msg) -> kizuna::domain::event::DomainEvent {
        use kizuna::inputs::decode::{InputKind, WireHeaders, decode};
        let programme = kizuna::domain::programme::builtin();
        let settings = kizuna::config::Settings::load(None).expect("defaults");
        let limits = kizuna::inputs::validate::Limits::new(&settings, &programme);
        let kind = match m.input {
            Input::Purchases => InputKind::Purchase,
            Input::Tickets => InputKind::SupportTicket,
            Input::Surveys => InputKind::Survey,
        };
        let headers = WireHeaders {
            content_type: Some(b"application/json"),
            schema: None,
        };
        let wire = decode(kind, Some(&m.payload), headers, 262_144).expect("decodes");
        kizuna::inputs::validate::validate(&wire, Some(m.key.as_bytes()), &limits, Utc::now())
            .expect("valid")
    }

    #[test]
    fn every_generated_event_passes_the_engines_validation() {
        let now = Utc::now();
        let mut w = Workload::new(3, "t", 100, 0.2, Dating::Recent { now, days: 60 });
        for _ in 0..2_000 {
            engine_decode(&w.next_msg());
        }
    }

    #[test]
    fn a_marker_causes_exactly_one_segment_change_to_high_value_not_loyal() {
        use kizuna::domain::apply::{Changes, apply};
        use kizuna::domain::output::OutputKind;
        use kizuna::domain::segment::Segment;
        let programme = kizuna::domain::programme::builtin();
        let mut w = Workload::new(5, "t", 10, 1.0, Dating::Live);
        let m = w.next_msg();
        let e = engine_decode(&m);
        let changes = Changes {
            events: vec![&e],
            referred: Vec::new(),
        };
        let (_, _, outputs) = apply(
            &e.meta.customer_id,
            None,
            &changes,
            &programme,
            None,
            Utc::now(),
        );
        assert_eq!(outputs.len(), 1, "{outputs:?}");
        assert!(matches!(
            outputs[0].kind,
            OutputKind::SegmentChanged {
                previous: None,
                new: Segment::HighValueNotLoyal,
                ..
            }
        ));
        assert_eq!(
            outputs[0].cause.as_str(),
            m.marker.as_deref().expect("marker")
        );
    }

    #[test]
    fn markers_are_new_customers_big_first_purchases() {
        let mut w = Workload::new(1, "t", 10, 1.0, Dating::Live);
        let m = w.next_msg();
        let id = m.marker.clone().expect("a marker");
        let p: v1::Purchase = serde_json::from_slice(&m.payload).expect("json");
        assert_eq!(p.event_id, id);
        assert_eq!(p.amount_minor, MARKER_AMOUNT_MINOR);
        assert_eq!(p.customer_id, m.key);
        assert_ne!(w.next_msg().key, m.key, "every marker is a new customer");
    }
}
