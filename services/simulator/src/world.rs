//! The simulated world: a crowd of customers, who referred whom, and one stream of their
//! events in global time order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use kizuna_proto::v1::input_event::Event;
use rand::Rng;

use crate::calendar::{Calendar, DAY, Secs};
use crate::customer::{Ctx, Customer};
use crate::persona::{Mix, Persona};
use crate::rng::SimRng;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct WorldConfig {
    pub seed: u64,
    pub customers: u32,
    pub customer_prefix: String,
    /// Part of every event, order and ticket id, so separate runs never collide.
    pub run: String,
    /// The simulated history, `[start, end)`.
    pub start: Secs,
    pub end: Secs,
    pub mix: Mix,
}

/// One event of the stream.
#[derive(Debug, Clone)]
pub struct SimEvent {
    pub at: Secs,
    /// Index of the customer in [`World::customers`].
    pub customer: u32,
    pub event: Event,
}

impl SimEvent {
    pub fn customer_id(&self) -> &str {
        match &self.event {
            Event::Purchase(p) => &p.customer_id,
            Event::SupportTicket(t) => &t.customer_id,
            Event::SurveyResponse(s) => &s.customer_id,
        }
    }
}

/// A line of the ground truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truth {
    pub customer_id: String,
    pub persona: Persona,
    pub churned_at: Option<Secs>,
}

/// The world; iterate it for the events, in time order.
#[derive(Debug)]
pub struct World {
    run: String,
    calendar: Calendar,
    start: Secs,
    end: Secs,
    customers: Vec<Customer>,
    /// (next event time, customer index) of every customer with something left to do.
    queue: BinaryHeap<Reverse<(Secs, u32)>>,
    emitted: u64,
}

/// Personas a referrer can bring in: any whose story does not need a long tenure.
fn can_be_referred(p: Persona) -> bool {
    matches!(
        p,
        Persona::HighValueNotLoyal
            | Persona::PriceDriven
            | Persona::ProgrammeDriven
            | Persona::Angel
            | Persona::Rebel
    )
}

/// Truly loyal customers (and some angels) bring in new customers, who join after them.
fn assign_referrals(customers: &mut [Customer], rng: &mut SimRng, end: Secs) {
    let referrers: Vec<(usize, u32)> = customers
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let p = c.persona().profile();
            (p.referrer > 0.0 && rng.random_bool(p.referrer))
                .then(|| (i, rng.random_range(p.referrals.0..=p.referrals.1)))
        })
        .collect();
    let mut candidates: Vec<usize> = (0..customers.len())
        .filter(|i| can_be_referred(customers[*i].persona()))
        .filter(|i| !referrers.iter().any(|(r, _)| r == i))
        .collect();
    for i in (1..candidates.len()).rev() {
        candidates.swap(i, rng.random_range(0..=i));
    }
    // Customers who join during the history first; older customers are made to join later.
    candidates.sort_by_key(|i| !customers[*i].is_new_joiner());
    let mut next = candidates.iter();
    let rounds = referrers.iter().map(|(_, n)| *n).max().unwrap_or(0);
    for round in 0..rounds {
        for (r, quota) in &referrers {
            if *quota <= round {
                continue;
            }
            let not_before = customers[*r].join() + 7 * DAY + rng.random_range(0..60 * DAY);
            if not_before >= end - DAY {
                continue;
            }
            let Some(c) = next.next() else {
                return;
            };
            let referrer = customers[*r].id().to_owned();
            customers[*c].referred(&referrer, not_before);
        }
    }
}

impl World {
    pub fn new(config: &WorldConfig) -> Self {
        let (start, end) = (config.start, config.end);
        let mut rng = SimRng::derive(config.seed, u64::MAX);
        let personas = config.mix.allocate(config.customers as usize, &mut rng);
        let mut customers: Vec<Customer> = personas
            .into_iter()
            .enumerate()
            .map(|(i, persona)| {
                let id = format!("{}{i:05}", config.customer_prefix);
                Customer::new(id, persona, config.seed, i as u64, start, end)
            })
            .collect();
        assign_referrals(&mut customers, &mut rng, end);
        let calendar = Calendar::new(start, end);
        let ctx = Ctx {
            run: &config.run,
            calendar: &calendar,
            start,
            end,
        };
        for c in &mut customers {
            c.plan_history(&ctx);
        }
        let queue = customers
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.next_at().map(|t| Reverse((t, i as u32))))
            .collect();
        Self {
            run: config.run.clone(),
            calendar,
            start,
            end,
            customers,
            queue,
            emitted: 0,
        }
    }

    pub fn start(&self) -> Secs {
        self.start
    }

    pub fn end(&self) -> Secs {
        self.end
    }

    pub fn customers(&self) -> &[Customer] {
        &self.customers
    }

    /// The ground truth as of `as_of`: every customer seen in the stream, with the time they
    /// left if that was at or before `as_of`.
    pub fn truth(&self, as_of: Secs) -> Vec<Truth> {
        self.customers
            .iter()
            .filter(|c| c.emitted() > 0)
            .map(|c| Truth {
                customer_id: c.id().to_owned(),
                persona: c.persona(),
                churned_at: c.churned_at().filter(|t| *t <= as_of),
            })
            .collect()
    }
}

fn set_event_id(event: &mut Event, id: String) {
    match event {
        Event::Purchase(p) => p.event_id = id,
        Event::SupportTicket(t) => t.event_id = id,
        Event::SurveyResponse(s) => s.event_id = id,
    }
}

impl Iterator for World {
    type Item = SimEvent;

    fn next(&mut self) -> Option<SimEvent> {
        let ctx = Ctx {
            run: &self.run,
            calendar: &self.calendar,
            start: self.start,
            end: self.end,
        };
        loop {
            let Reverse((at, i)) = self.queue.pop()?;
            let customer = &mut self.customers[i as usize];
            let event = customer.step(&ctx);
            if let Some(t) = customer.next_at() {
                self.queue.push(Reverse((t, i)));
            }
            if let Some(mut event) = event {
                self.emitted += 1;
                set_event_id(&mut event, format!("sim-{}-{}", self.run, self.emitted));
                return Some(SimEvent {
                    at,
                    customer: i,
                    event,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
