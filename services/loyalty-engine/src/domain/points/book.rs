//! A customer's points book, kept in their state: the movements (the truth), what was last
//! reported, and the lots already announced as expiring. Events add movements here; the time
//! step ([`PointsBook::evaluate`]) grants dated bonuses and works out the outputs. Pure: `now` is
//! passed in.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::config::PointsRules;
use super::earn;
use super::ledger::{self, Folded, Movement, MovementKind};
use super::redeem::{self, RedeemError};
use super::referral;
use super::summary::{self, Changes};
use crate::domain::event::{Adjustment, DomainEvent, EventBody, Redemption};
use crate::domain::facts::Facts;
use crate::domain::programme::Programme;

/// The points of one customer.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PointsBook {
    /// Append-only, in the order they were recorded. Stored positionally (`stored`).
    #[serde(default, with = "super::stored")]
    pub movements: Vec<Movement>,
    /// How many movements `PointsChanged` has reported.
    #[serde(default)]
    pub reported: usize,
    /// When the book was last evaluated (releases and expiries after it are news).
    #[serde(default)]
    pub as_of: Option<DateTime<Utc>>,
    /// Lots announced by `PointsWillExpire`, with the date announced.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub warned: BTreeMap<String, DateTime<Utc>>,
    /// The tier each purchase earned at (purchase event id → tier), kept only when the
    /// programme has tier multipliers, so recompute derives the same earn.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tiers: BTreeMap<String, String>,
    /// The balances the last time step folded (at `as_of`), so writers need not fold again.
    /// Not stored.
    #[serde(skip)]
    pub balances: Option<Balances>,
    /// What the last application decided about redemptions. Not stored.
    #[serde(skip)]
    pub decisions: Vec<Decision>,
}

/// A customer's points at one moment, as the time step folded them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Balances {
    pub available: i64,
    pub pending: i64,
    pub debt: i64,
    /// Open lots' remaining points by due date.
    pub dues: Vec<(DateTime<Utc>, i64)>,
}

impl Balances {
    /// The balances of a fold, with the open lots' remaining points by due date.
    pub fn of(folded: &Folded) -> Self {
        Self {
            available: folded.available,
            pending: folded.pending,
            debt: folded.debt,
            dues: folded
                .lots
                .iter()
                .filter(|l| l.remaining > 0 && l.expired_at.is_none())
                .filter_map(|l| l.due_at.map(|at| (at, l.remaining)))
                .collect(),
        }
    }
}

/// What became of a redemption, a cancel or an adjustment event.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The input event.
    pub event_id: String,
    /// The redemption's (or the adjustment's) id.
    pub redemption_id: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Applied: the points moved.
    Accepted {
        points: i64,
    },
    /// The same redemption (or cancel) was applied before: nothing moved this time.
    AlreadyDone {
        points: i64,
    },
    Refused(Refusal),
}

/// Why a redemption or a cancel did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Redeem(#[from] RedeemError),
    #[error("no redemption {0:?} to cancel")]
    UnknownRedemption(String),
    #[error("the programme has no points")]
    NoPoints,
    #[error("an adjustment of 0 points changes nothing")]
    ZeroAdjustment,
    #[error("the points granted would expire at {expires_at}, not after the grant ({at})")]
    ExpiresBeforeGrant {
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
}

impl Refusal {
    /// A stable, PII-free reason code (dead letters, problem bodies, metrics).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Redeem(RedeemError::NotPositive(_)) => "points_not_positive",
            Refusal::Redeem(RedeemError::Insufficient { .. }) => "insufficient_points",
            Refusal::Redeem(RedeemError::UnknownReward(_)) => "unknown_reward",
            Refusal::Redeem(RedeemError::CostMismatch { .. }) => "reward_cost_mismatch",
            Refusal::Redeem(RedeemError::TierTooLow { .. }) => "tier_too_low",
            Refusal::UnknownRedemption(_) => "unknown_redemption",
            Refusal::NoPoints => "points_disabled",
            Refusal::ZeroAdjustment => "points_zero",
            Refusal::ExpiresBeforeGrant { .. } => "expires_before_grant",
        }
    }
}

/// What the time step found worth telling.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    Changed {
        changes: Changes,
        available: i64,
        pending: i64,
        debt: i64,
    },
    WillExpire {
        lot: String,
        amount: i64,
        expires_at: DateTime<Utc>,
    },
}

/// The first-order or anniversary source of a customer's tenure.
fn first_order(facts: &Facts) -> Option<(String, DateTime<Utc>)> {
    let live = facts
        .orders
        .iter()
        .min_by(|a, b| (a.1.at, a.0).cmp(&(b.1.at, b.0)))
        .map(|(id, o)| (format!("order:{id}"), o.at));
    match (live, facts.archive.first_at) {
        (Some((_, at)), Some(archived)) if archived < at => {
            Some(("archived orders".to_owned(), archived))
        }
        (None, Some(archived)) => Some(("archived orders".to_owned(), archived)),
        (live, _) => live,
    }
}

/// Whether `event` is the customer's first order, judged on the facts before it is recorded.
pub fn is_first_order(facts_before: &Facts, event: &DomainEvent) -> bool {
    matches!(event.body, EventBody::Purchase(_))
        && facts_before.orders.is_empty()
        && facts_before.archive.orders == 0.0
}

impl PointsBook {
    pub fn is_empty(&self) -> bool {
        self.movements.is_empty() && self.as_of.is_none()
    }

    fn has(&self, id: &str) -> bool {
        self.movements.iter().any(|m| m.id == id)
    }

    fn push(&mut self, m: Movement) {
        if !self.has(&m.id) {
            self.movements.push(m);
        }
    }

    /// The points at `now`.
    pub fn fold(&self, rules: &PointsRules, now: DateTime<Utc>) -> Folded {
        ledger::fold(&self.movements, now, &rules.expiry)
    }

    /// Records what one input event does to the points. `facts` already hold the event;
    /// `first_order` is [`is_first_order`] on the facts before it; `tier` is the customer's
    /// tier as the event is applied.
    pub fn on_event(
        &mut self,
        event: &DomainEvent,
        facts: &Facts,
        first_order: bool,
        programme: &Programme,
        tier: &str,
    ) {
        let Some(rules) = programme.points_rules() else {
            if let EventBody::Redemption(r) = &event.body {
                self.decide(event, &r.redemption_id, Err(Refusal::NoPoints));
            }
            if let EventBody::RedemptionCancel(c) = &event.body {
                self.decide(event, &c.redemption_id, Err(Refusal::NoPoints));
            }
            if let EventBody::Adjustment(a) = &event.body {
                self.decide(event, &a.adjustment_id, Err(Refusal::NoPoints));
            }
            return;
        };
        let version = programme.version.as_str();
        let event_id = event.meta.event_id.as_str();
        let at = event.meta.occurred_at;
        match &event.body {
            EventBody::Purchase(p) => {
                let earned_before = self.movements.iter().any(|m| {
                    matches!(&m.kind, MovementKind::Earn { order_id: Some(o), .. } if *o == p.order_id)
                });
                if !earned_before {
                    let tier = match self.tiers.get(event_id) {
                        Some(t) => t.clone(),
                        None => tier.to_owned(),
                    };
                    if !rules.earn.tier_multipliers.is_empty() {
                        self.tiers.insert(event_id.to_owned(), tier.clone());
                    }
                    let category = facts
                        .orders
                        .get(&p.order_id)
                        .map(|o| o.category.as_str())
                        .unwrap_or_default();
                    let purchase = earn::Purchase {
                        event_id,
                        order_id: &p.order_id,
                        at,
                        amount_minor: p.amount.get(),
                        category,
                        first_order,
                    };
                    let earned = earn::earn_for_purchase(rules, &purchase, &tier, version);
                    if earned.is_empty() {
                        self.push(Movement {
                            id: format!("{event_id}:activity"),
                            at,
                            kind: MovementKind::Activity,
                            amount: 0,
                            reason: format!(
                                "order {}: a purchase that earned no points",
                                p.order_id
                            ),
                            source_event: event_id.to_owned(),
                            programme_version: version.to_owned(),
                        });
                    }
                    for m in earned {
                        self.push(m);
                    }
                }
                // Refunds that arrived before their order.
                self.claw_back(&p.order_id, facts, version);
            }
            EventBody::Refund(r) => self.claw_back(&r.order_id, facts, version),
            EventBody::Survey(_) => {
                if let Some(m) = earn::survey_bonus(rules, event_id, at, version) {
                    self.push(m);
                }
            }
            EventBody::Ticket(_) => {}
            EventBody::Redemption(r) => {
                let outcome = self.redeem(event, r, rules, programme, tier);
                self.decide(event, &r.redemption_id, outcome);
            }
            EventBody::RedemptionCancel(c) => {
                let outcome = self.cancel(event, &c.redemption_id, version);
                self.decide(event, &c.redemption_id, outcome);
            }
            EventBody::Adjustment(a) => {
                let outcome = self.adjust(event, a, rules, version);
                self.decide(event, &a.adjustment_id, outcome);
            }
        }
    }

    fn decide(
        &mut self,
        event: &DomainEvent,
        redemption_id: &str,
        outcome: Result<Outcome, Refusal>,
    ) {
        self.decisions.push(Decision {
            event_id: event.meta.event_id.as_str().to_owned(),
            redemption_id: redemption_id.to_owned(),
            outcome: outcome.unwrap_or_else(Outcome::Refused),
        });
    }

    fn redeem(
        &mut self,
        event: &DomainEvent,
        r: &Redemption,
        rules: &PointsRules,
        programme: &Programme,
        tier: &str,
    ) -> Result<Outcome, Refusal> {
        let id = format!("redeem:{}", r.redemption_id);
        if let Some(done) = self.movements.iter().find(|m| m.id == id) {
            return Ok(Outcome::AlreadyDone {
                points: done.amount,
            });
        }
        // Judged after everything already recorded: a redemption dated before movements the
        // book holds (a till's late message, or a request that waited for the row lock) must
        // see them, or it could spend points already spent.
        let at = self.judged_at(event.meta.occurred_at);
        let folded = self.fold(rules, at);
        let request = redeem::Request {
            redemption_id: &r.redemption_id,
            source_event: event.meta.event_id.as_str(),
            at,
            points: r.points,
            reward: r.reward.as_deref(),
        };
        let m = redeem::redeem(
            &folded,
            rules,
            programme,
            tier,
            &request,
            &programme.version,
        )?;
        let points = m.amount;
        self.push(m);
        Ok(Outcome::Accepted { points })
    }

    /// The moment a request dated `at` is judged at: after everything already recorded (a
    /// request that waited for the row lock must see what committed meanwhile, or it could
    /// spend points already spent).
    fn judged_at(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        self.movements
            .iter()
            .map(|m| m.at)
            .max()
            .map_or(at, |last| last.max(at))
    }

    /// A manual adjustment: one `Adjust` movement, `adjust:<id>`. Points granted open a lot
    /// spendable at once, expiring when the operator said or by the programme's expiry rules;
    /// points taken back are spent like a redemption, never more than are spendable (the fold
    /// would turn the rest into debt).
    fn adjust(
        &mut self,
        event: &DomainEvent,
        a: &Adjustment,
        rules: &PointsRules,
        version: &str,
    ) -> Result<Outcome, Refusal> {
        let id = format!("adjust:{}", a.adjustment_id);
        if let Some(done) = self.movements.iter().find(|m| m.id == id) {
            return Ok(Outcome::AlreadyDone {
                points: done.amount,
            });
        }
        if a.points == 0 {
            return Err(Refusal::ZeroAdjustment);
        }
        let at = self.judged_at(event.meta.occurred_at);
        let expires_at = if a.points > 0 {
            let expires_at = a.expires_at.or_else(|| rules.expiry.expires_at(at));
            if let Some(x) = expires_at
                && x <= at
            {
                return Err(Refusal::ExpiresBeforeGrant { expires_at: x, at });
            }
            expires_at
        } else {
            let folded = self.fold(rules, at);
            // Debt is owed first: points that pay it are not there to take back.
            let spendable = folded.available - folded.debt;
            if -a.points > spendable {
                return Err(Refusal::Redeem(RedeemError::Insufficient {
                    requested: -a.points,
                    available: spendable.max(0),
                }));
            }
            None
        };
        self.push(Movement {
            id,
            at,
            kind: MovementKind::Adjust { expires_at },
            amount: a.points,
            reason: format!("adjustment by {}: {}", a.by, a.reason),
            source_event: event.meta.event_id.as_str().to_owned(),
            programme_version: version.to_owned(),
        });
        Ok(Outcome::Accepted { points: a.points })
    }

    fn cancel(
        &mut self,
        event: &DomainEvent,
        redemption_id: &str,
        version: &str,
    ) -> Result<Outcome, Refusal> {
        let cancel_id = format!("cancel:{redemption_id}");
        if let Some(done) = self.movements.iter().find(|m| m.id == cancel_id) {
            return Ok(Outcome::AlreadyDone {
                points: done.amount,
            });
        }
        let Some(redeemed) = self.movements.iter().find(
            |m| matches!(&m.kind, MovementKind::Redeem { redemption_id: r } if r == redemption_id),
        ) else {
            return Err(Refusal::UnknownRedemption(redemption_id.to_owned()));
        };
        let points = redeemed.amount;
        let m = Movement {
            id: cancel_id,
            // Never before the redemption it cancels.
            at: event.meta.occurred_at.max(redeemed.at),
            kind: MovementKind::CancelRedemption {
                redemption_id: redemption_id.to_owned(),
            },
            amount: points,
            reason: format!("redemption {redemption_id} cancelled: its points come back"),
            source_event: event.meta.event_id.as_str().to_owned(),
            programme_version: version.to_owned(),
        };
        self.push(m);
        Ok(Outcome::Accepted { points })
    }

    /// Takes back what the order earned in proportion to everything refunded of it, less what
    /// was taken back before. Each refund gets its own movement (refunds not handled yet, in
    /// time order); a refund already handled is left alone.
    fn claw_back(&mut self, order_id: &str, facts: &Facts, version: &str) {
        let Some(order) = facts.orders.get(order_id) else {
            return;
        };
        let mut refunds: Vec<_> = facts
            .refunds
            .iter()
            .filter(|(_, r)| r.order_id == order_id)
            .collect();
        refunds.sort_by(|a, b| (a.1.at, a.0).cmp(&(b.1.at, b.0)));
        // Everything refunded so far, whatever order the refunds arrived in: a refund that
        // arrives after a later one was handled still takes its share.
        let total: i64 = refunds.iter().map(|(_, r)| r.amount).sum();
        for (refund_id, refund) in refunds {
            if self.has(&format!("{refund_id}:clawback")) {
                continue;
            }
            // Every recorded earn and clawback of the order counts (ids are unique in the book).
            let (earned, clawed) = ledger::order_totals(&self.movements, order_id);
            if let Some(m) = earn::clawback_movement(
                refund_id,
                order_id,
                refund.at.max(order.at),
                earned,
                clawed,
                order.amount,
                total,
                version,
            ) {
                self.push(m);
            }
        }
    }

    /// The referrer's bonus for a customer they referred (`purchase`: the referred customer's
    /// purchase that credits the referral; [`referral::bonus`]). Once per referred customer.
    pub fn on_referral(&mut self, referred: &str, purchase: &DomainEvent, programme: &Programme) {
        let Some(rules) = programme.points_rules() else {
            return;
        };
        if let Some(m) = referral::bonus(rules, referred, purchase, &programme.version) {
            self.push(m);
        }
    }

    /// Cancels the referrer's bonus for `referred` if the order that credited it was refunded
    /// in full before the bonus cleared ([`referral::cancellation`]). `referred_events`: that
    /// customer's purchases and refunds, in any order, duplicates allowed. Once: a bonus
    /// already cancelled, or not granted, is left alone.
    pub fn on_referred_refunds(
        &mut self,
        referred: &str,
        referred_events: &[&DomainEvent],
        programme: &Programme,
    ) {
        if programme.points_rules().is_none() || self.has(&referral::cancel_id(referred)) {
            return;
        }
        let bonus_id = referral::bonus_id(referred);
        let Some(bonus) = self.movements.iter().find(|m| m.id == bonus_id) else {
            return;
        };
        if let Some(m) =
            referral::cancellation(bonus, referred, referred_events, &programme.version)
        {
            self.push(m);
        }
    }

    /// The time step: grants anniversary bonuses due by `now`, works out what changed since
    /// the last step and which lots to announce as expiring. Returns the notices and when to
    /// look again.
    pub fn evaluate(
        &mut self,
        facts: &Facts,
        programme: &Programme,
        now: DateTime<Utc>,
    ) -> (Vec<Notice>, Option<DateTime<Utc>>) {
        let Some(rules) = programme.points_rules() else {
            return (Vec::new(), None);
        };
        let first = first_order(facts);
        if let Some((source, first_at)) = &first
            && rules.earn.anniversary_bonus > 0
        {
            for m in earn::anniversary_bonuses(rules, source, *first_at, now, &programme.version) {
                self.push(m);
            }
        }
        let folded = self.fold(rules, now);
        let mut notices = Vec::new();

        let reported = self.reported.min(self.movements.len());
        let (old, fresh) = self.movements.split_at(reported);
        // Movements recorded since the last step, up to `now`; and movements recorded before
        // it but dated after it (an event from a clock ahead of ours), now that `now` has
        // reached them. Releases and expiries: those in (last step, now].
        let mut changes = summary::changes(fresh, &folded, DateTime::<Utc>::MIN_UTC, now);
        let late = summary::changes(
            old,
            &folded,
            self.as_of.unwrap_or(DateTime::<Utc>::MIN_UTC),
            now,
        );
        changes.earned += late.earned;
        changes.redeemed += late.redeemed;
        changes.cancelled += late.cancelled;
        changes.clawed_back += late.clawed_back;
        changes.adjusted += late.adjusted;
        changes.released = late.released;
        changes.expired = late.expired;
        if changes != Changes::default() {
            notices.push(Notice::Changed {
                changes,
                available: folded.available,
                pending: folded.pending,
                debt: folded.debt,
            });
        }
        self.reported = self.movements.len();
        self.as_of = Some(now);

        let warn_days = rules.expiry.warn_days;
        for x in summary::expiring(&folded, now, warn_days) {
            if self.warned.get(&x.lot) != Some(&x.at) {
                self.warned.insert(x.lot.clone(), x.at);
                notices.push(Notice::WillExpire {
                    lot: x.lot,
                    amount: x.amount,
                    expires_at: x.at,
                });
            }
        }
        let open: BTreeMap<&str, ()> = folded
            .lots
            .iter()
            .filter(|l| l.remaining > 0 && l.expired_at.is_none())
            .map(|l| (l.id.as_str(), ()))
            .collect();
        self.warned.retain(|lot, _| open.contains_key(lot.as_str()));

        let next = next_check(&folded, &self.warned, rules, first.map(|f| f.1), now);
        self.balances = Some(Balances::of(&folded));
        (notices, next)
    }
}

impl PointsBook {
    /// For `kizuna recompute`: what is kept rather than derived again from the recorded
    /// events (with the tier each purchase earned at) — movements from before `horizon` (their events were pruned), redemptions and
    /// cancels (decided once, when they came), adjustments, referral bonuses and their
    /// cancellations (from other customers' events; recompute derives a missing cancellation
    /// again, see `apply::recompute`) and anniversary bonuses (re-granted by the time step).
    pub fn kept_for_recompute(&self, horizon: Option<DateTime<Utc>>) -> PointsBook {
        let kept = |m: &Movement| {
            horizon.is_some_and(|h| m.at < h)
                || matches!(
                    m.kind,
                    MovementKind::Redeem { .. }
                        | MovementKind::CancelRedemption { .. }
                        | MovementKind::Adjust { .. }
                )
                || referral::is_referral(m)
                || m.id.starts_with("anniversary:")
        };
        PointsBook {
            movements: self.movements.iter().filter(|m| kept(m)).cloned().collect(),
            tiers: self.tiers.clone(),
            ..PointsBook::default()
        }
    }

    /// Whether the two books hold different movements (by id, kind, time and amount).
    pub fn differs_from(&self, other: &PointsBook) -> bool {
        let key = |b: &PointsBook| {
            let mut v: Vec<_> = b
                .movements
                .iter()
                .map(|m| (m.id.clone(), m.at, m.amount, format!("{:?}", m.kind)))
                .collect();
            v.sort();
            v
        };
        key(self) != key(other)
    }

    /// For `kizuna recompute`: puts the movements that are the same as in `old` (kind, time and
    /// amount) first, as `old` recorded them, and the real differences after them, so the next
    /// time step reports only those. Returns whether anything differs (added, changed or gone).
    pub fn settle_against(&mut self, old: &PointsBook) -> bool {
        let before: BTreeMap<&str, &Movement> =
            old.movements.iter().map(|m| (m.id.as_str(), m)).collect();
        let same_as_before = |m: &Movement| {
            before
                .get(m.id.as_str())
                .is_some_and(|o| o.kind == m.kind && o.at == m.at && o.amount == m.amount)
        };
        let (mut same, differ): (Vec<Movement>, Vec<Movement>) =
            std::mem::take(&mut self.movements)
                .into_iter()
                .partition(|m| same_as_before(m));
        for m in &mut same {
            if let Some(o) = before.get(m.id.as_str()) {
                *m = (*o).clone();
            }
        }
        let changed = !differ.is_empty() || same.len() != old.movements.len();
        self.reported = same.len();
        self.movements = same;
        self.movements.extend(differ);
        self.as_of = old.as_of;
        self.warned = old.warned.clone();
        changed
    }
}

/// The next moment the points change by themselves: a release, an expiry, a warning or an
/// anniversary.
fn next_check(
    folded: &Folded,
    warned: &BTreeMap<String, DateTime<Utc>>,
    rules: &PointsRules,
    first_order_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let warn = Duration::days(i64::from(rules.expiry.warn_days));
    let mut times = Vec::new();
    for lot in folded
        .lots
        .iter()
        .filter(|l| l.remaining > 0 && l.expired_at.is_none())
    {
        times.push(lot.available_at);
        if let Some(due) = lot.due_at {
            times.push(due);
            if warned.get(&lot.id) != Some(&due) {
                times.push(due - warn);
            }
        }
    }
    if rules.earn.anniversary_bonus > 0
        && let Some(first) = first_order_at
    {
        times.extend((1..=100u32).find_map(|years| {
            first
                .checked_add_months(chrono::Months::new(12 * years))
                .filter(|at| *at > now)
        }));
    }
    times.into_iter().filter(|t| *t > now).min()
}

#[cfg(test)]
#[path = "book_tests/mod.rs"]
mod tests;
