//! One simulated customer: their habits, their plan for the simulated history, and the events
//! they emit, one at a time and in time order.
//!
//! A customer owns its random stream, so its life does not depend on the other customers. The
//! world asks each customer for the time of its next event and merges them.

use kizuna_proto::v1;
use kizuna_proto::v1::input_event::Event;
use rand::Rng;
use rand_distr::{Distribution, Exp, Gamma};

use crate::calendar::{Calendar, DAY, HOUR, MINUTE, Secs, time_of_day};
use crate::catalog::{self, Category};
use crate::orders::{self, OrderMeta, REFUND_RATE};
use crate::persona::{Channel, Mood, Persona, Profile, pick_weighted};
use crate::rng::SimRng;
use crate::service::{self, Severity, TicketLife};

/// What every customer shares: the run, the calendar, the simulated history `[start, end)`.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub run: &'a str,
    pub calendar: &'a Calendar,
    pub start: Secs,
    pub end: Secs,
}

/// Buying in one category on the customer's own rhythm.
#[derive(Debug, Clone)]
struct Habit {
    category: Category,
    /// Mean seconds between two purchases.
    mean_gap: f64,
    /// Where in its rhythm an existing customer was when the history starts (0..1).
    phase: f64,
    next_at: Secs,
    channel: Channel,
}

/// An event already decided, waiting for its time.
#[derive(Debug, Clone)]
struct Planned {
    at: Secs,
    seq: u32,
    event: Event,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Planned(usize),
    Habit(usize),
    Ticket,
    Wave,
}

/// The hostage's streak of bad service experiences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streak {
    pub start: Secs,
    /// The last bad ticket's final resolution; the customer is a detractor from here on.
    pub end: Secs,
}

#[derive(Debug, Clone)]
pub struct Customer {
    id: String,
    persona: Persona,
    rng: SimRng,
    habits: Vec<Habit>,
    favourite: Channel,
    /// Joins during the history (otherwise a customer from before it).
    new_joiner: bool,
    /// First activity in the history.
    join: Secs,
    referred_by: Option<String>,
    churned_at: Option<Secs>,
    /// No event at or after this: the churn time or the end of the history.
    stop_at: Secs,
    streak: Option<Streak>,
    /// A churner who drifts away slowly: from here to the churn time the gaps between their
    /// purchases stretch, up to three times their usual length.
    fade_from: Option<Secs>,
    next_ticket_at: Option<Secs>,
    next_wave_at: Option<Secs>,
    planned: Vec<Planned>,
    plan_seq: u32,
    orders: u32,
    tickets: u32,
    purchased: bool,
    emitted: u64,
}

/// FNV-1a: a stable hash of an id (not the random stream).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn uniform(rng: &mut SimRng, (lo, hi): (f64, f64)) -> f64 {
    if hi > lo {
        rng.random_range(lo..hi)
    } else {
        lo
    }
}

/// `from` plus `share` of the way to `to`.
fn part_way(from: Secs, to: Secs, share: f64) -> Secs {
    from + ((to - from).max(0) as f64 * share) as Secs
}

impl Customer {
    /// Draws who the customer is: habits, channels, whether they join during the history.
    /// Call [`Customer::plan`] before asking for events.
    pub fn new(
        id: String,
        persona: Persona,
        seed: u64,
        index: u64,
        start: Secs,
        end: Secs,
    ) -> Self {
        let mut rng = SimRng::derive(seed, index);
        let profile = persona.profile();
        let (lo, hi) = profile.category_count;
        let count = rng.random_range(lo..=hi).min(profile.categories.len());
        let mut pool = profile.categories.to_vec();
        let mut habits = Vec::with_capacity(count);
        for _ in 0..count {
            let Some(category) = pick_weighted(&pool, &mut rng) else {
                break;
            };
            pool.retain(|(c, _)| *c != category);
            let factor = uniform(&mut rng, profile.cadence_factor);
            habits.push(Habit {
                category,
                mean_gap: category.cadence_days() * factor * DAY as f64,
                phase: rng.random(),
                next_at: Secs::MAX,
                channel: Channel::Web,
            });
        }
        let favourite = pick_weighted(profile.channels, &mut rng).unwrap_or(Channel::Web);
        let new_joiner = rng.random_bool(profile.new_joiners);
        let join = if new_joiner {
            part_way(start, end, rng.random_range(0.05..0.9))
        } else {
            habits
                .iter()
                .map(|h| start + (h.phase * h.mean_gap) as Secs)
                .min()
                .unwrap_or(start)
        };
        Self {
            id,
            persona,
            rng,
            habits,
            favourite,
            new_joiner,
            join,
            referred_by: None,
            churned_at: None,
            stop_at: end,
            streak: None,
            fade_from: None,
            next_ticket_at: None,
            next_wave_at: None,
            planned: Vec::new(),
            plan_seq: 0,
            orders: 0,
            tickets: 0,
            purchased: false,
            emitted: 0,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn persona(&self) -> Persona {
        self.persona
    }

    /// First activity in the simulated history.
    pub fn join(&self) -> Secs {
        self.join
    }

    /// Joins during the history rather than being a customer from before it.
    pub fn is_new_joiner(&self) -> bool {
        self.new_joiner
    }

    pub fn referred_by(&self) -> Option<&str> {
        self.referred_by.as_deref()
    }

    /// When the customer left; they emit nothing at or after it.
    pub fn churned_at(&self) -> Option<Secs> {
        self.churned_at
    }

    /// When a slowly fading churner starts to drift away (None: not one).
    pub fn fade_from(&self) -> Option<Secs> {
        self.fade_from
    }

    pub fn streak(&self) -> Option<Streak> {
        self.streak
    }

    /// Events emitted so far.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    pub fn categories(&self) -> impl Iterator<Item = Category> + '_ {
        self.habits.iter().map(|h| h.category)
    }

    fn profile(&self) -> &'static Profile {
        self.persona.profile()
    }

    /// Makes this customer one that `referrer` brought, joining no earlier than `not_before`.
    pub fn referred(&mut self, referrer: &str, not_before: Secs) {
        self.referred_by = Some(referrer.to_owned());
        if !self.new_joiner || self.join < not_before {
            self.new_joiner = true;
            self.join = self.join.max(not_before);
        }
    }

    fn channel(&mut self) -> Channel {
        if self.rng.random_bool(0.75) {
            self.favourite
        } else {
            pick_weighted(self.profile().channels, &mut self.rng).unwrap_or(self.favourite)
        }
    }

    fn mood_at(&self, t: Secs) -> Mood {
        match self.streak {
            Some(s) if t >= s.end => Mood::Angry,
            _ => self.profile().mood,
        }
    }

    fn in_streak(&self, t: Secs) -> bool {
        self.streak.is_some_and(|s| s.start <= t && t < s.end)
    }

    fn plan(&mut self, at: Secs, event: Event) {
        self.plan_seq += 1;
        self.planned.push(Planned {
            at,
            seq: self.plan_seq,
            event,
        });
    }

    /// Decides the customer's course through `[ctx.start, ctx.end)`: first purchases, churn,
    /// the hostage's streak, the answers and tickets the persona guarantees.
    pub fn plan_history(&mut self, ctx: &Ctx<'_>) {
        let profile = self.profile();
        for i in 0..self.habits.len() {
            let h = &self.habits[i];
            let due = match (self.new_joiner, i) {
                (true, 0) => self.join,
                (true, _) => self.join + (h.phase * h.mean_gap) as Secs,
                (false, _) => ctx.start + (h.phase * h.mean_gap) as Secs,
            };
            let channel = self.channel();
            let at = time_of_day(due, channel == Channel::Store, &mut self.rng);
            // The shop's hours may fall before the history starts on its first day.
            self.habits[i].next_at = if at < ctx.start { due } else { at };
            self.habits[i].channel = channel;
        }
        let span_share = |c: &mut Self, range: (f64, f64)| {
            let share = uniform(&mut c.rng, range);
            part_way(c.join, ctx.end, share)
        };
        if self.persona == Persona::Hostage {
            self.plan_streak(ctx);
        } else if self.rng.random_bool(profile.churn) {
            let range = if self.persona == Persona::QuietChurner {
                (0.35, 0.8)
            } else {
                (0.3, 0.9)
            };
            self.churned_at = Some(span_share(self, range));
        }
        self.churned_at = self.churned_at.filter(|c| *c < ctx.end);
        self.stop_at = self.churned_at.unwrap_or(ctx.end).min(ctx.end);
        // Half of the churners who leave without a reason the data shows (neither the
        // hostage's streak nor the quiet churner's sudden stop) fade over the last 40% of their
        // time. Chosen from the id, not the random stream, so every other customer's history
        // stays what it was.
        if let Some(c) = self.churned_at
            && !matches!(self.persona, Persona::Hostage | Persona::QuietChurner)
            && fnv1a(self.id.as_bytes()).is_multiple_of(2)
        {
            self.fade_from = Some(part_way(self.join, c, 0.6));
        }

        if profile.sure_nps && self.persona != Persona::Hostage {
            let share = uniform(&mut self.rng, (0.1, 0.6));
            let at = part_way(self.join, self.stop_at, share);
            let score = self.persona.nps(false, &mut self.rng);
            let comment = service::comment(score, 10, 0.3, &mut self.rng);
            let answer = service::survey(
                &self.id,
                at,
                "nps-transactional",
                v1::SurveyKind::Nps,
                score,
                comment,
            );
            self.plan(at, Event::SurveyResponse(answer));
        }
        if self.persona == Persona::Rebel {
            let share = uniform(&mut self.rng, (0.1, 0.5));
            let at = part_way(self.join, self.stop_at, share);
            self.plan_ticket(ctx, at, Severity::Bad);
        }
        if profile.tickets_per_year > 0.0 {
            self.next_ticket_at = Some(self.join + self.ticket_gap());
        }
        self.next_wave_at = ctx.calendar.wave_from(self.join).map(|w| w.at);
    }

    /// The hostage: good times, then 2–4 bad tickets in a row, then a detractor NPS; half of
    /// them leave some weeks later.
    fn plan_streak(&mut self, ctx: &Ctx<'_>) {
        let span = (ctx.end - self.join).max(DAY) as f64;
        let scale = (span / (300 * DAY) as f64).clamp(0.05, 1.0);
        let start = part_way(self.join, ctx.end, self.rng.random_range(0.45..0.6));
        let mut open = start;
        let mut end = start;
        for _ in 0..self.rng.random_range(2..=4) {
            if let Some(life) = self.plan_ticket(ctx, open, Severity::Severe) {
                end = end.max(life.resolved_at());
            }
            open += (self.rng.random_range(6.0..16.0) * scale * DAY as f64) as Secs;
        }
        self.streak = Some(Streak { start, end });
        let nps_at = end + self.rng.random_range(DAY..4 * DAY);
        let score = self.persona.nps(true, &mut self.rng);
        let comment = service::comment(score, 10, 0.6, &mut self.rng);
        let answer = service::survey(
            &self.id,
            nps_at,
            "nps-post-support",
            v1::SurveyKind::Nps,
            score,
            comment,
        );
        self.plan(nps_at, Event::SurveyResponse(answer));
        if self.rng.random_bool(self.profile().churn) {
            self.churned_at = Some(nps_at + self.rng.random_range(10 * DAY..60 * DAY));
        }
    }

    /// Plans a whole ticket opened at `at`. A customer who is leaving does not open a ticket
    /// they would leave unfinished.
    fn plan_ticket(&mut self, ctx: &Ctx<'_>, at: Secs, severity: Severity) -> Option<TicketLife> {
        let ticket_id = format!("tkt-{}-{}-{}", ctx.run, self.id, self.tickets + 1);
        let life = service::ticket(
            &self.id,
            ticket_id,
            at,
            severity,
            self.mood_at(at),
            &mut self.rng,
        );
        if self.churned_at.is_some_and(|c| life.last_at() >= c) {
            return None;
        }
        self.tickets += 1;
        for (t, change) in &life.changes {
            self.plan(*t, Event::SupportTicket(change.clone()));
        }
        if let Some((t, ces)) = &life.ces {
            self.plan(*t, Event::SurveyResponse(ces.clone()));
        }
        Some(life)
    }

    fn ticket_gap(&mut self) -> Secs {
        let mean_days = 365.0 / self.profile().tickets_per_year;
        let days = Exp::new(1.0 / mean_days).map_or(mean_days, |d| d.sample(&mut self.rng));
        (days * DAY as f64) as Secs + MINUTE
    }

    fn earliest(&self) -> Option<(Secs, Due)> {
        let planned = self
            .planned
            .iter()
            .enumerate()
            .min_by_key(|(_, p)| (p.at, p.seq))
            .map(|(i, p)| (p.at, Due::Planned(i)));
        let habits = self
            .habits
            .iter()
            .enumerate()
            .map(|(i, h)| (h.next_at, Due::Habit(i)));
        planned
            .into_iter()
            .chain(habits)
            .chain(self.next_ticket_at.map(|t| (t, Due::Ticket)))
            .chain(self.next_wave_at.map(|t| (t, Due::Wave)))
            .min()
    }

    /// When this customer does something next; `None` once they are done.
    pub fn next_at(&self) -> Option<Secs> {
        self.earliest()
            .map(|(t, _)| t)
            .filter(|t| *t < self.stop_at)
    }

    /// Does the next thing. Returns the event it produced (without an event id), or `None`
    /// when it only made plans (a survey invitation, a ticket about to be opened).
    pub fn step(&mut self, ctx: &Ctx<'_>) -> Option<Event> {
        let (at, due) = self.earliest()?;
        if at >= self.stop_at {
            return None;
        }
        let event = match due {
            Due::Planned(i) => Some(self.planned.swap_remove(i).event),
            Due::Habit(i) => Some(self.purchase(ctx, i, at)),
            Due::Ticket => {
                self.spontaneous_ticket(ctx, at);
                None
            }
            Due::Wave => {
                self.wave(ctx, at);
                None
            }
        };
        if event.is_some() {
            self.emitted += 1;
        }
        event
    }

    fn purchase(&mut self, ctx: &Ctx<'_>, i: usize, at: Secs) -> Event {
        let profile = self.profile();
        let (category, channel) = (self.habits[i].category, self.habits[i].channel);
        let items = catalog::basket(category, profile.tilt, profile.extra_lines, &mut self.rng);
        let gross = catalog::gross(&items);
        let sale = ctx.calendar.sale_at(at);
        let first_order = self.new_joiner && !self.purchased;
        let discount = orders::discount(profile, sale, first_order, gross, &mut self.rng);
        let referred_by = if self.purchased {
            None
        } else {
            self.referred_by.as_deref()
        };
        self.orders += 1;
        let order_id = format!("ord-{}-{}-{}", ctx.run, self.id, self.orders);
        let meta = OrderMeta {
            customer_id: &self.id,
            at,
            channel,
            referred_by,
        };
        let order = orders::purchase(meta, order_id, &items, discount);
        self.purchased = true;

        if self.rng.random_bool(REFUND_RATE) {
            let refund_at = at + self.rng.random_range(2 * DAY..30 * DAY);
            if refund_at < self.stop_at {
                let refund = orders::refund(&order, refund_at, &mut self.rng);
                self.plan(refund_at, Event::Purchase(refund));
            }
        }
        if self.rng.random_bool(0.05) {
            let answer_at = at + self.rng.random_range(DAY..5 * DAY);
            let score = self.mood_at(answer_at).csat(&mut self.rng);
            let comment = service::comment(score, 5, 0.2, &mut self.rng);
            let answer = service::survey(
                &self.id,
                answer_at,
                "csat-post-purchase",
                v1::SurveyKind::Csat,
                score,
                comment,
            );
            self.plan(answer_at, Event::SurveyResponse(answer));
        }
        self.reschedule(ctx, i, at);
        Event::Purchase(order)
    }

    /// The next purchase in habit `i` after one at `at`: a gamma-distributed gap around the
    /// customer's mean, pulled into a nearby sale by the bargain hunters.
    fn reschedule(&mut self, ctx: &Ctx<'_>, i: usize, at: Secs) {
        let profile = self.profile();
        let mean = self.habits[i].mean_gap;
        let k = profile.regularity;
        let gap = Gamma::new(k, mean / k)
            .map_or(mean, |g| g.sample(&mut self.rng))
            .max(0.2 * mean)
            .max((12 * HOUR) as f64);
        let gap = match (self.fade_from, self.churned_at) {
            (Some(from), Some(to)) if at > from && to > from => {
                gap * (1.0 + 2.0 * ((at - from) as f64 / (to - from) as f64).min(1.0))
            }
            _ => gap,
        };
        let mut due = at + gap as Secs;
        if self.rng.random_bool(profile.sale_seeking) {
            let earliest = at + 12 * HOUR;
            if let Some(sale) = ctx.calendar.sale_from(earliest)
                && sale.start <= due + (gap / 2.0) as Secs
            {
                let from = sale.start.max(earliest);
                if from < sale.end {
                    due = self.rng.random_range(from..sale.end);
                }
            }
        }
        let channel = self.channel();
        let next = time_of_day(due, channel == Channel::Store, &mut self.rng);
        self.habits[i].next_at = next.max(at + 30 * MINUTE);
        self.habits[i].channel = channel;
    }

    fn spontaneous_ticket(&mut self, ctx: &Ctx<'_>, at: Secs) {
        self.next_ticket_at = Some(at + self.ticket_gap());
        if self.in_streak(at) {
            return;
        }
        let bad_share = match self.streak {
            Some(s) if at >= s.end => 0.2,
            _ => self.profile().bad_ticket_share,
        };
        let severity = if self.rng.random_bool(bad_share) {
            Severity::Bad
        } else {
            Severity::Smooth
        };
        self.plan_ticket(ctx, at, severity);
    }

    /// A relationship-NPS wave reaches the customer; some answer within a few days.
    fn wave(&mut self, ctx: &Ctx<'_>, at: Secs) {
        let wave = ctx.calendar.wave_from(at).filter(|w| w.at == at).cloned();
        self.next_wave_at = ctx.calendar.wave_from(at + 1).map(|w| w.at);
        let Some(wave) = wave else {
            return;
        };
        if !self.rng.random_bool(self.profile().nps_answer_rate) {
            return;
        }
        let answer_at = at + self.rng.random_range(HOUR..4 * DAY);
        if self.in_streak(answer_at) {
            return;
        }
        let after_streak = self.streak.is_some_and(|s| answer_at >= s.end);
        let score = self.persona.nps(after_streak, &mut self.rng);
        let comment = service::comment(score, 10, 0.25, &mut self.rng);
        let answer = service::survey(
            &self.id,
            answer_at,
            &wave.survey_id,
            v1::SurveyKind::Nps,
            score,
            comment,
        );
        self.plan(answer_at, Event::SurveyResponse(answer));
    }
}
