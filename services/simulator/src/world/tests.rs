//! Statistics of simulated crowds against the persona definitions, and the stream's contract.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;

use kizuna_proto::v1;
use kizuna_proto::v1::input_event::Event;

use super::*;
use crate::catalog::Category;
use crate::orders::is_programme_reward;

/// 2025-06-01T00:00:00Z
const END: Secs = 1_748_736_000;
const HIGH_VALUE: i64 = 100_000;

fn config(customers: u32, seed: u64, mix: Mix) -> WorldConfig {
    WorldConfig {
        seed,
        customers,
        customer_prefix: "c-".into(),
        run: "test".into(),
        start: END - 365 * DAY,
        end: END,
        mix,
    }
}

/// One customer's events, sorted out.
#[derive(Debug, Default)]
struct Life {
    events: Vec<Secs>,
    orders: Vec<v1::Purchase>,
    refunds: Vec<v1::Purchase>,
    /// Ticket id → changes.
    tickets: BTreeMap<String, Vec<v1::SupportTicket>>,
    nps: Vec<(Secs, u32)>,
}

fn secs(t: &Option<kizuna_proto::Timestamp>) -> Secs {
    t.as_ref().map_or(Secs::MIN, |t| t.seconds)
}

fn is_bad(c: &v1::SupportTicket) -> bool {
    c.status == v1::TicketStatus::Reopened as i32
        || c.escalated
        || c.sla_breached
        || c.csat.is_some_and(|v| v <= 2)
        || c.sentiment.is_some_and(|s| s <= -0.5)
}

fn discounted(o: &v1::Purchase) -> bool {
    o.discount_minor > 0 || !o.coupon_code.is_empty()
}

impl Life {
    fn spend(&self) -> i64 {
        self.orders.iter().map(|o| o.amount_minor).sum::<i64>()
            - self.refunds.iter().map(|r| r.amount_minor).sum::<i64>()
    }

    /// First bad change of each ticket that had one.
    fn bad_tickets(&self) -> Vec<Secs> {
        self.tickets
            .values()
            .filter_map(|changes| {
                changes
                    .iter()
                    .filter(|c| is_bad(c))
                    .map(|c| secs(&c.occurred_at))
                    .min()
            })
            .collect()
    }

    /// Share of spend on orders with a discount or coupon, as the engine computes it.
    fn discount_share(&self) -> f64 {
        let total: i64 = self.orders.iter().map(|o| o.amount_minor).sum();
        let with: i64 = self
            .orders
            .iter()
            .filter(|o| discounted(o))
            .map(|o| o.amount_minor)
            .sum();
        with as f64 / total.max(1) as f64
    }

    fn programme_share(&self) -> f64 {
        let n = self
            .orders
            .iter()
            .filter(|o| is_programme_reward(&o.coupon_code))
            .count();
        n as f64 / self.orders.len().max(1) as f64
    }
}

/// A simulated crowd: the world after the run, every event, and each customer's life.
struct Crowd {
    world: World,
    events: Vec<SimEvent>,
    lives: Vec<Life>,
}

impl Crowd {
    fn simulate(config: &WorldConfig) -> Self {
        let mut world = World::new(config);
        let events: Vec<SimEvent> = world.by_ref().collect();
        let mut lives: Vec<Life> = (0..world.customers().len())
            .map(|_| Life::default())
            .collect();
        for e in &events {
            let life = &mut lives[e.customer as usize];
            life.events.push(e.at);
            match &e.event {
                Event::Purchase(p) if p.kind == v1::PurchaseKind::Refund as i32 => {
                    life.refunds.push(p.clone());
                }
                Event::Purchase(p) => life.orders.push(p.clone()),
                Event::SupportTicket(t) => life
                    .tickets
                    .entry(t.ticket_id.clone())
                    .or_default()
                    .push(t.clone()),
                Event::SurveyResponse(s) if s.kind == v1::SurveyKind::Nps as i32 => {
                    life.nps.push((secs(&s.occurred_at), s.score));
                }
                Event::SurveyResponse(_) => {}
            }
        }
        Self {
            world,
            events,
            lives,
        }
    }

    fn of(&self, persona: Persona) -> impl Iterator<Item = (&Customer, &Life)> {
        self.world
            .customers()
            .iter()
            .zip(&self.lives)
            .filter(move |(c, _)| c.persona() == persona)
    }

    fn share_of(&self, persona: Persona, f: impl Fn(&Customer, &Life) -> bool) -> f64 {
        let all: Vec<_> = self.of(persona).collect();
        assert!(all.len() >= 20, "too few {persona}: {}", all.len());
        all.iter().filter(|(c, l)| f(c, l)).count() as f64 / all.len() as f64
    }
}

/// 1,600 customers of the default mix over a year: shared by the tests.
fn crowd() -> &'static Crowd {
    static CROWD: OnceLock<Crowd> = OnceLock::new();
    CROWD.get_or_init(|| Crowd::simulate(&config(1_600, 7, Mix::default())))
}

fn to_json(e: &SimEvent) -> String {
    let line = v1::InputEvent {
        event: Some(e.event.clone()),
    };
    serde_json::to_string(&line).expect("serialises")
}

#[test]
fn the_same_seed_gives_the_same_events() {
    let cfg = config(150, 3, Mix::default());
    let a: Vec<String> = World::new(&cfg).map(|e| to_json(&e)).collect();
    let b: Vec<String> = World::new(&cfg).map(|e| to_json(&e)).collect();
    assert!(a.len() > 1_000);
    assert_eq!(a, b);
    let other: Vec<String> = World::new(&config(150, 4, Mix::default()))
        .map(|e| to_json(&e))
        .collect();
    assert_ne!(a, other);
    // Another run id changes the ids, and only the ids.
    let mut renamed = cfg.clone();
    renamed.run = "other".into();
    let c: Vec<String> = World::new(&renamed)
        .map(|e| to_json(&e).replace("-other-", "-test-"))
        .collect();
    assert_eq!(a, c);
}

#[test]
fn events_come_in_time_order_within_the_history() {
    let c = crowd();
    assert!(c.events.len() > 50_000, "{}", c.events.len());
    assert!(c.events.windows(2).all(|w| w[0].at <= w[1].at));
    let (start, end) = (c.world.start(), c.world.end());
    for e in &c.events {
        assert!(start <= e.at && e.at < end);
        let occurred = match &e.event {
            Event::Purchase(p) => secs(&p.occurred_at),
            Event::SupportTicket(t) => secs(&t.occurred_at),
            Event::SurveyResponse(s) => secs(&s.occurred_at),
        };
        assert_eq!(occurred, e.at);
        assert_eq!(
            e.customer_id(),
            c.world.customers()[e.customer as usize].id()
        );
    }
    // The whole year is covered, not just its beginning.
    let last_month = c.events.iter().filter(|e| e.at >= end - 30 * DAY).count();
    assert!(last_month > c.events.len() / 20, "{last_month}");
}

#[test]
fn event_and_order_ids_are_unique_and_refunds_reverse_earlier_orders() {
    let c = crowd();
    let mut ids = HashSet::new();
    for e in &c.events {
        let id = match &e.event {
            Event::Purchase(p) => &p.event_id,
            Event::SupportTicket(t) => &t.event_id,
            Event::SurveyResponse(s) => &s.event_id,
        };
        assert!(id.starts_with("sim-test-"), "{id}");
        assert!(ids.insert(id.clone()), "duplicate event id {id}");
    }
    let mut orders: HashMap<&str, &v1::Purchase> = HashMap::new();
    let (mut n_orders, mut n_refunded) = (0u32, 0usize);
    for life in &c.lives {
        for o in &life.orders {
            assert!(orders.insert(&o.order_id, o).is_none(), "{}", o.order_id);
            n_orders += 1;
        }
        let mut refunded: HashMap<&str, i64> = HashMap::new();
        for r in &life.refunds {
            let o = orders
                .get(r.order_id.as_str())
                .expect("refund of a known order");
            assert_eq!(o.customer_id, r.customer_id, "same customer");
            assert!(
                secs(&o.occurred_at) < secs(&r.occurred_at),
                "refund after the order"
            );
            *refunded.entry(&r.order_id).or_default() += r.amount_minor;
            assert!(refunded[r.order_id.as_str()] <= o.amount_minor);
        }
        n_refunded += refunded.len();
    }
    let rate = n_refunded as f64 / f64::from(n_orders);
    assert!((0.015..0.045).contains(&rate), "refund rate {rate}");
    let partial = c
        .lives
        .iter()
        .flat_map(|l| &l.refunds)
        .filter(|r| orders[r.order_id.as_str()].amount_minor > r.amount_minor)
        .count();
    assert!(partial > 0, "some refunds are partial");
}

#[test]
fn amounts_match_line_items_and_every_value_is_valid() {
    let known: HashSet<&str> = Category::ALL.iter().map(|c| c.name()).collect();
    for e in &crowd().events {
        match &e.event {
            Event::Purchase(p) => {
                assert!(matches!(p.kind, 1 | 2), "{}", p.kind);
                assert_eq!(p.currency, "JPY");
                assert!(!p.order_id.is_empty() && !p.line_items.is_empty());
                let gross: i64 = p
                    .line_items
                    .iter()
                    .map(|l| l.unit_price_minor * i64::from(l.quantity))
                    .sum();
                assert_eq!(gross - p.discount_minor, p.amount_minor, "{p:?}");
                assert!(p.discount_minor >= 0 && p.amount_minor >= 1);
                assert!(p.amount_minor < 1_000_000_000);
                for l in &p.line_items {
                    assert!(known.contains(l.category.as_str()));
                    assert!(l.quantity >= 1 && l.unit_price_minor >= 1);
                }
                assert!(["web", "app", "store"].contains(&p.channel.as_str()));
            }
            Event::SupportTicket(t) => {
                assert!((1..=5).contains(&t.status) && (1..=4).contains(&t.priority));
                assert!(t.csat.is_none_or(|v| (1..=5).contains(&v)));
                assert!(t.sentiment.is_none_or(|s| (-1.0..=1.0).contains(&s)));
                assert!(!t.ticket_id.is_empty());
            }
            Event::SurveyResponse(s) => {
                let range = match v1::SurveyKind::try_from(s.kind).expect("kind") {
                    v1::SurveyKind::Nps => 0..=10,
                    v1::SurveyKind::Csat => 1..=5,
                    v1::SurveyKind::Ces => 1..=7,
                    v1::SurveyKind::Unspecified => panic!("unspecified survey kind"),
                };
                assert!(range.contains(&s.score), "{s:?}");
                assert!(!s.survey_id.is_empty());
            }
        }
    }
}

#[test]
fn json_lines_parse_back_as_input_events() {
    for e in crowd().events.iter().step_by(7) {
        let line = to_json(e);
        assert!(
            line.starts_with(r#"{"purchase":"#)
                || line.starts_with(r#"{"supportTicket":"#)
                || line.starts_with(r#"{"surveyResponse":"#),
            "{line}"
        );
        let back: v1::InputEvent = serde_json::from_str(&line).expect("parses back");
        assert_eq!(back.event.as_ref(), Some(&e.event));
    }
}

#[test]
fn customers_who_leave_emit_nothing_afterwards() {
    let c = crowd();
    for (customer, life) in c.world.customers().iter().zip(&c.lives) {
        if let Some(t) = customer.churned_at() {
            assert!(life.events.iter().all(|at| *at < t), "{}", customer.id());
        }
    }
    let churned = c
        .world
        .customers()
        .iter()
        .filter(|c| c.churned_at().is_some())
        .count();
    let share = churned as f64 / c.world.customers().len() as f64;
    assert!((0.2..0.45).contains(&share), "churn share {share}");
}

#[test]
fn quiet_churners_buy_on_rhythm_then_stop_without_complaint() {
    let c = crowd();
    for (customer, life) in c.of(Persona::QuietChurner) {
        let churned = customer.churned_at().expect("every quiet churner leaves");
        assert!(life.orders.iter().all(|o| secs(&o.occurred_at) < churned));
        assert!(life.bad_tickets().is_empty(), "no complaint");
        assert!(life.nps.iter().all(|(_, s)| *s >= 7));
    }
    // Regular before they stop: several orders, and no long silence before leaving.
    let regular = c.share_of(Persona::QuietChurner, |customer, life| {
        let churned = customer.churned_at().unwrap_or(END);
        let last = life.orders.iter().map(|o| secs(&o.occurred_at)).max();
        life.orders.len() >= 3 && last.is_some_and(|l| churned - l < 70 * DAY)
    });
    assert!(regular > 0.9, "{regular}");
}

#[test]
fn price_driven_customers_mostly_pay_with_a_discount_and_wait_for_sales() {
    let c = crowd();
    let share = c.share_of(Persona::PriceDriven, |_, l| l.discount_share() > 0.5);
    assert!(share > 0.85, "{share}");
    let calendar = Calendar::new(c.world.start(), c.world.end());
    let in_sales = |persona| {
        let (mut n, mut during) = (0, 0);
        for (_, l) in c.of(persona) {
            for o in &l.orders {
                n += 1;
                during += usize::from(calendar.sale_at(secs(&o.occurred_at)).is_some());
            }
        }
        during as f64 / n as f64
    };
    let bargain = in_sales(Persona::PriceDriven);
    let loyal = in_sales(Persona::TrulyLoyal);
    assert!(
        bargain > 1.5 * loyal,
        "orders in sales: {bargain} vs {loyal}"
    );
}

#[test]
fn programme_driven_customers_pay_with_rewards_without_looking_price_driven() {
    let c = crowd();
    let rewards = c.share_of(Persona::ProgrammeDriven, |_, l| l.programme_share() >= 0.3);
    assert!(rewards > 0.8, "{rewards}");
    let not_price = c.share_of(Persona::ProgrammeDriven, |_, l| l.discount_share() < 0.5);
    assert!(not_price > 0.8, "{not_price}");
    for (_, l) in c.of(Persona::ProgrammeDriven) {
        assert!(
            l.orders.iter().all(|o| o.coupon_code.is_empty()
                || o.coupon_code == "WELCOME10"
                || is_programme_reward(&o.coupon_code)),
            "no price coupons but the welcome one"
        );
    }
}

#[test]
fn hostages_pay_well_then_turn_detractors_after_bad_service() {
    let c = crowd();
    for (customer, life) in c.of(Persona::Hostage) {
        let (first_detractor, _) = *life
            .nps
            .iter()
            .find(|(_, s)| *s <= 6)
            .expect("a detractor answer");
        let bad_before = life
            .bad_tickets()
            .iter()
            .filter(|t| **t < first_detractor)
            .count();
        assert!(
            bad_before >= 2,
            "{}: {bad_before} bad tickets",
            customer.id()
        );
        assert!(
            life.nps
                .iter()
                .all(|(t, s)| *t < first_detractor || *s <= 6),
            "no promoter answers after the streak"
        );
        let streak = customer.streak().expect("a streak");
        assert!(streak.start < first_detractor);
    }
    let high = c.share_of(Persona::Hostage, |_, l| l.spend() >= HIGH_VALUE);
    assert!(high > 0.85, "{high}");
    let left = c.share_of(Persona::Hostage, |c, _| c.churned_at().is_some());
    assert!((0.25..0.75).contains(&left), "{left}");
}

#[test]
fn truly_loyal_customers_are_frequent_promoters_who_refer() {
    let c = crowd();
    let mut referrals: HashMap<&str, usize> = HashMap::new();
    for life in &c.lives {
        for o in life.orders.iter().filter(|o| !o.referred_by.is_empty()) {
            *referrals.entry(o.referred_by.as_str()).or_default() += 1;
        }
    }
    let mut tickets = 0;
    let mut bad = 0;
    for (customer, life) in c.of(Persona::TrulyLoyal) {
        assert!(!life.nps.is_empty() && life.nps.iter().all(|(_, s)| *s >= 9));
        assert!(
            referrals.get(customer.id()).is_some_and(|n| *n >= 1),
            "{}",
            customer.id()
        );
        assert!(life.orders.len() >= 6, "{}", life.orders.len());
        tickets += life.tickets.len();
        bad += life.bad_tickets().len();
    }
    assert!(bad as f64 <= 0.15 * tickets as f64, "{bad} of {tickets}");
    let high = c.share_of(Persona::TrulyLoyal, |_, l| l.spend() >= HIGH_VALUE);
    assert!(high > 0.8, "{high}");
}

#[test]
fn referrals_mark_first_purchases_and_point_at_earlier_loyal_customers() {
    let c = crowd();
    let by_id: HashMap<&str, usize> = c
        .world
        .customers()
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id(), i))
        .collect();
    let mut referred = 0;
    for life in &c.lives {
        for (k, o) in life.orders.iter().enumerate() {
            if o.referred_by.is_empty() {
                continue;
            }
            referred += 1;
            assert_eq!(k, 0, "only on the first purchase");
            let r = by_id[o.referred_by.as_str()];
            let referrer = &c.world.customers()[r];
            assert!(matches!(
                referrer.persona(),
                Persona::TrulyLoyal | Persona::Angel
            ));
            let their_first = c.lives[r].orders.first().map(|o| secs(&o.occurred_at));
            assert!(their_first.is_some_and(|t| t < secs(&o.occurred_at)));
        }
    }
    assert!(referred >= c.of(Persona::TrulyLoyal).count());
}

#[test]
fn high_value_customers_spend_big_and_stay_passive() {
    let c = crowd();
    for (_, life) in c.of(Persona::HighValueNotLoyal) {
        assert!(life.nps.iter().all(|(_, s)| (7..=8).contains(s)));
    }
    let silent = c.share_of(Persona::HighValueNotLoyal, |_, l| l.nps.is_empty());
    assert!(silent > 0.1, "some never answer: {silent}");
    let high = c.share_of(Persona::HighValueNotLoyal, |c, l| {
        c.churned_at().is_some() || c.is_new_joiner() || l.spend() >= HIGH_VALUE
    });
    assert!(high > 0.9, "{high}");
}

#[test]
fn angels_and_rebels_spend_little_and_say_what_they_think() {
    let c = crowd();
    for (_, life) in c.of(Persona::Angel) {
        assert!(!life.nps.is_empty() && life.nps.iter().all(|(_, s)| *s >= 9));
        assert!(life.bad_tickets().is_empty());
    }
    for (_, life) in c.of(Persona::Rebel) {
        assert!(!life.nps.is_empty() && life.nps.iter().all(|(_, s)| *s <= 6));
    }
    let bad = c.share_of(Persona::Rebel, |_, l| !l.bad_tickets().is_empty());
    assert!(bad > 0.9, "{bad}");
    for persona in [Persona::Angel, Persona::Rebel] {
        let low = c.share_of(persona, |_, l| l.spend() < HIGH_VALUE);
        assert!(low > 0.9, "{persona}: {low}");
    }
}

#[test]
fn purchase_gaps_follow_the_category_cadence() {
    let c = crowd();
    let mut gaps: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for persona in [
        Persona::TrulyLoyal,
        Persona::QuietChurner,
        Persona::ProgrammeDriven,
    ] {
        for (_, life) in c.of(persona) {
            let mut last: HashMap<&str, Secs> = HashMap::new();
            for o in &life.orders {
                let cat = o.line_items[0].category.as_str();
                let at = secs(&o.occurred_at);
                if let Some(prev) = last.insert(cat, at) {
                    gaps.entry(cat)
                        .or_default()
                        .push((at - prev) as f64 / DAY as f64);
                }
            }
        }
    }
    let median = |cat: &str| {
        let mut g = gaps.get(cat).cloned().unwrap_or_default();
        g.sort_by(f64::total_cmp);
        g.get(g.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let weekly = median("daily_goods");
    assert!(
        (4.0..9.0).contains(&weekly),
        "daily goods every {weekly} days"
    );
    let groceries = median("groceries");
    assert!(
        (4.0..9.0).contains(&groceries),
        "groceries every {groceries} days"
    );
    let beauty = median("beauty");
    assert!((18.0..40.0).contains(&beauty), "beauty every {beauty} days");
    let fashion = median("fashion");
    assert!(
        (25.0..60.0).contains(&fashion),
        "fashion every {fashion} days"
    );
}

#[test]
fn an_event_budget_cuts_the_stream_in_time_and_the_truth_follows() {
    let cfg = config(300, 5, Mix::default());
    let mut world = World::new(&cfg);
    let events: Vec<SimEvent> = world.by_ref().take(3_000).collect();
    let as_of = events.last().map(|e| e.at).expect("events");
    let truth = world.truth(as_of);
    let seen: HashSet<u32> = events.iter().map(|e| e.customer).collect();
    assert_eq!(truth.len(), seen.len());
    for row in &truth {
        if let Some(t) = row.churned_at {
            assert!(t <= as_of);
            assert!(
                events
                    .iter()
                    .filter(|e| e.customer_id() == row.customer_id)
                    .all(|e| e.at < t)
            );
        }
    }
    let full = World::new(&cfg).truth(END);
    assert!(full.is_empty(), "nobody has emitted anything yet");
}

#[test]
fn a_mix_override_gives_only_those_personas() {
    let mix: Mix = "hostage=1,truly_loyal=2".parse().expect("mix");
    let mut world = World::new(&config(60, 1, mix));
    let n = world.by_ref().count();
    assert!(n > 500);
    let truth = world.truth(END);
    assert_eq!(truth.len(), 60);
    let hostages = truth
        .iter()
        .filter(|t| t.persona == Persona::Hostage)
        .count();
    assert_eq!(hostages, 20);
    assert!(
        truth
            .iter()
            .all(|t| matches!(t.persona, Persona::Hostage | Persona::TrulyLoyal))
    );
}

#[test]
fn a_tiny_world_over_a_short_history_still_works() {
    let mut cfg = config(3, 9, Mix::default());
    cfg.start = END - 2 * DAY;
    let events: Vec<SimEvent> = World::new(&cfg).collect();
    assert!(events.windows(2).all(|w| w[0].at <= w[1].at));
    assert!(events.iter().all(|e| e.at >= cfg.start && e.at < END));
}
