//! The points ledger: movements in, lots and balances out. The movements are the truth; the
//! balance is always [`fold`]ed from them at a given `now`, so it can be explained movement by
//! movement and lot by lot.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::config::{Expiry, NegativeBalance};

/// What a movement does.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MovementKind {
    /// A purchase: only its time matters (inactivity expiry). Amount 0.
    Activity,
    /// Opens a lot, named by the movement id, pending until `available_at`.
    Earn {
        available_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
        /// The order that earned it, so a refund can take it back.
        order_id: Option<String>,
    },
    /// Signed: positive opens a lot (spendable at once), negative spends like a redemption.
    Adjust { expires_at: Option<DateTime<Utc>> },
    /// Spends available points, closest to expiry first.
    Redeem { redemption_id: String },
    /// Gives back what that redemption took, to the same lots. Its amount must equal the
    /// redemption's.
    CancelRedemption { redemption_id: String },
    /// Takes back points an order earned: its own lots first, then any available lot. A lot
    /// tied to no order whose id is `order_id` counts as its own: a cancelled referral bonus
    /// (`referral::cancellation`) names the bonus's lot.
    Clawback { order_id: String },
}

impl MovementKind {
    /// Order of movements at the same instant.
    fn rank(&self) -> u8 {
        match self {
            MovementKind::Activity => 0,
            MovementKind::Earn { .. } => 1,
            MovementKind::Adjust { .. } => 2,
            MovementKind::Redeem { .. } => 3,
            MovementKind::CancelRedemption { .. } => 4,
            MovementKind::Clawback { .. } => 5,
        }
    }
}

/// One ledger entry, as it will be stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Movement {
    /// Unique, derived from the source event (so re-deriving gives the same ids).
    pub id: String,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub kind: MovementKind,
    /// Whole points, non-negative except for [`MovementKind::Adjust`].
    pub amount: i64,
    /// In words, for the timeline.
    pub reason: String,
    pub source_event: String,
    pub programme_version: String,
}

impl Movement {
    /// The movement's effect on the balance, sign included.
    pub fn signed(&self) -> i64 {
        match &self.kind {
            MovementKind::Activity => 0,
            MovementKind::Earn { .. }
            | MovementKind::Adjust { .. }
            | MovementKind::CancelRedemption { .. } => self.amount,
            MovementKind::Redeem { .. } | MovementKind::Clawback { .. } => -self.amount,
        }
    }
}

/// Points earned together, spent and expired together.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lot {
    /// The id of the movement that opened it.
    pub id: String,
    pub order_id: Option<String>,
    pub earned_at: DateTime<Utc>,
    pub available_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub amount: i64,
    pub remaining: i64,
    /// Set once the lot has expired (its remaining points went to an expiry posting).
    pub expired_at: Option<DateTime<Utc>>,
    /// For a lot still open at `now`: when it will expire as things stand (its date, or the end
    /// of the idle period in inactivity mode). What `PointsWillExpire` announces.
    #[serde(default)]
    pub due_at: Option<DateTime<Utc>>,
}

impl Lot {
    fn spend_key(&self) -> (bool, Option<DateTime<Utc>>, DateTime<Utc>, &str) {
        // Lots without an expiry date go last.
        (
            self.expires_at.is_none(),
            self.expires_at,
            self.earned_at,
            &self.id,
        )
    }
}

/// One change to one lot (or to the debt, when `lot` is `None`): the detail that explains a
/// balance. Derived expiries have `movement` = `expire:<lot>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Posting {
    pub movement: String,
    pub at: DateTime<Utc>,
    pub lot: Option<String>,
    /// Signed: what the lot (or the customer's standing, for debt) gained or lost.
    pub amount: i64,
}

/// A customer's points at a moment.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Folded {
    /// In spending order: closest to expiry first.
    pub lots: Vec<Lot>,
    /// Spendable now.
    pub available: i64,
    /// Earned but inside the pending period.
    pub pending: i64,
    /// Points taken back or spent that there was nothing left to take from.
    pub debt: i64,
    /// Every change, lot by lot, in the order applied.
    pub postings: Vec<Posting>,
    /// Movements that did nothing: a duplicate redemption id, a cancel of an unknown or
    /// already-cancelled redemption, a cancel whose amount differs from the redemption's, a
    /// negative amount where one is not allowed, or a movement after `now`.
    pub ignored: Vec<String>,
}

impl Folded {
    /// The balance as the programme shows it.
    pub fn balance(&self, mode: NegativeBalance) -> i64 {
        match mode {
            NegativeBalance::Debt => self.available,
            NegativeBalance::Negative => self.available - self.debt,
        }
    }

    /// Points that expired, per lot, with when.
    pub fn expiries(&self) -> impl Iterator<Item = &Posting> {
        self.postings
            .iter()
            .filter(|p| p.movement.starts_with("expire:"))
    }

    /// What the movements earned for an order, and what has been clawed back from it so far.
    pub fn order_points(&self, movements: &[Movement], order_id: &str) -> (i64, i64) {
        let ignored: BTreeSet<&str> = self.ignored.iter().map(String::as_str).collect();
        let mut seen = BTreeSet::new();
        order_totals(
            movements
                .iter()
                .filter(|m| !ignored.contains(m.id.as_str()) && seen.insert(m.id.as_str())),
            order_id,
        )
    }
}

/// What `movements` earned for an order, and what they took back from it (each movement
/// counted as given: the caller drops duplicates and ignored ones).
pub fn order_totals<'a>(
    movements: impl IntoIterator<Item = &'a Movement>,
    order_id: &str,
) -> (i64, i64) {
    let (mut earned, mut clawed) = (0, 0);
    for m in movements {
        match &m.kind {
            MovementKind::Earn {
                order_id: Some(o), ..
            } if o == order_id => earned += m.amount,
            MovementKind::Clawback { order_id: o } if o == order_id => clawed += m.amount,
            _ => {}
        }
    }
    (earned, clawed)
}

struct Taken {
    from_lots: Vec<(usize, i64)>,
    debt: i64,
    cancelled: bool,
}

#[derive(Default)]
struct Book {
    lots: Vec<Lot>,
    debt: i64,
    postings: Vec<Posting>,
    redemptions: BTreeMap<String, Taken>,
    last_purchase: Option<DateTime<Utc>>,
    /// When the debt last grew.
    debt_at: Option<DateTime<Utc>>,
}

impl Book {
    fn post(&mut self, movement: &str, at: DateTime<Utc>, lot: Option<usize>, amount: i64) {
        if amount == 0 {
            return;
        }
        match lot {
            Some(i) => self.lots[i].remaining += amount,
            None => {
                self.debt -= amount;
                if amount < 0 {
                    self.debt_at = Some(at);
                }
            }
        }
        self.postings.push(Posting {
            movement: movement.to_owned(),
            at,
            lot: lot.map(|i| self.lots[i].id.clone()),
            amount,
        });
    }

    /// When a lot expires by itself: its date, or in inactivity mode the end of the idle
    /// period (counted from the last purchase, or from the lot's earning if that is later: a
    /// bonus earned while idle gets its own full period).
    fn expiry_of(&self, lot: &Lot, expiry: &Expiry) -> Option<DateTime<Utc>> {
        let idle_since = self
            .last_purchase
            .map_or(lot.earned_at, |p| p.max(lot.earned_at));
        match (lot.expires_at, expiry.inactive_after(idle_since)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Points that became spendable while a debt was owed pay it, closest to expiry first,
    /// when they become spendable (if that is before they expire).
    fn settle_until(&mut self, t: DateTime<Utc>, expiry: &Expiry) {
        if self.debt == 0 {
            return;
        }
        let mut order: Vec<usize> = (0..self.lots.len())
            .filter(|&i| self.lots[i].remaining > 0 && self.lots[i].expired_at.is_none())
            .collect();
        order.sort_by(|&a, &b| self.lots[a].spend_key().cmp(&self.lots[b].spend_key()));
        for i in order {
            if self.debt == 0 {
                break;
            }
            let lot = &self.lots[i];
            let pay_at = self
                .debt_at
                .map_or(lot.available_at, |d| d.max(lot.available_at));
            if pay_at > t || self.expiry_of(lot, expiry).is_some_and(|e| e <= pay_at) {
                continue;
            }
            let take = self.debt.min(lot.remaining);
            let movement = format!("settle:{}", lot.id);
            self.post(&movement, pay_at, Some(i), -take);
            self.post(&movement, pay_at, None, take);
        }
    }

    /// Settles debt from lots released by `t`, then expires every lot due at or before `t`.
    fn expire_until(&mut self, t: DateTime<Utc>, expiry: &Expiry) {
        self.settle_until(t, expiry);
        for i in 0..self.lots.len() {
            let lot = &self.lots[i];
            if lot.expired_at.is_some() {
                continue;
            }
            if let Some(when) = self.expiry_of(lot, expiry).filter(|w| *w <= t) {
                let left = lot.remaining;
                let movement = format!("expire:{}", lot.id);
                self.lots[i].expired_at = Some(when);
                self.post(&movement, when, Some(i), -left);
            }
        }
    }

    fn open(
        &mut self,
        m: &Movement,
        available_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
        order_id: Option<String>,
    ) {
        self.lots.push(Lot {
            id: m.id.clone(),
            order_id,
            earned_at: m.at,
            available_at,
            expires_at,
            amount: m.amount,
            remaining: 0,
            expired_at: None,
            due_at: None,
        });
        let i = self.lots.len() - 1;
        self.credit(&m.id, m.at, Some(i), m.amount);
    }

    /// Incoming points pay the debt first; the rest goes to the lot (or, without one, stays
    /// as a reduction of the debt only).
    fn credit(&mut self, movement: &str, at: DateTime<Utc>, lot: Option<usize>, amount: i64) {
        let to_debt = match lot {
            Some(_) => amount.min(self.debt),
            None => amount,
        };
        self.post(movement, at, None, to_debt);
        if let Some(i) = lot {
            self.post(movement, at, Some(i), amount - to_debt);
        }
    }

    /// Spends up to `amount` from the lots `eligible` allows, closest to expiry first. Returns
    /// what came from where; `debt` is the part no lot could pay, not yet posted.
    fn spend(
        &mut self,
        movement: &str,
        at: DateTime<Utc>,
        amount: i64,
        eligible: impl Fn(&Lot) -> bool,
    ) -> Taken {
        let mut order: Vec<usize> = (0..self.lots.len())
            .filter(|&i| {
                let l = &self.lots[i];
                l.remaining > 0 && l.expired_at.is_none() && eligible(l)
            })
            .collect();
        order.sort_by(|&a, &b| self.lots[a].spend_key().cmp(&self.lots[b].spend_key()));
        let mut left = amount;
        let mut from_lots = Vec::new();
        for i in order {
            if left == 0 {
                break;
            }
            let take = left.min(self.lots[i].remaining);
            self.post(movement, at, Some(i), -take);
            from_lots.push((i, take));
            left -= take;
        }
        Taken {
            from_lots,
            debt: left,
            cancelled: false,
        }
    }

    fn apply(&mut self, m: &Movement) -> bool {
        let at = m.at;
        if m.amount < 0 && !matches!(m.kind, MovementKind::Adjust { .. }) {
            return false;
        }
        match &m.kind {
            MovementKind::Activity => {
                self.last_purchase = Some(self.last_purchase.map_or(at, |p| p.max(at)));
            }
            MovementKind::Earn {
                available_at,
                expires_at,
                order_id,
            } => {
                if order_id.is_some() {
                    self.last_purchase = Some(self.last_purchase.map_or(at, |p| p.max(at)));
                }
                self.open(m, (*available_at).max(at), *expires_at, order_id.clone());
            }
            MovementKind::Adjust { expires_at } => {
                if m.amount >= 0 {
                    self.open(m, at, *expires_at, None);
                } else {
                    let taken = self.spend(&m.id, at, -m.amount, |l| l.available_at <= at);
                    self.post(&m.id, at, None, -taken.debt);
                }
            }
            MovementKind::Redeem { redemption_id } => {
                if self.redemptions.contains_key(redemption_id) {
                    return false;
                }
                let taken = self.spend(&m.id, at, m.amount, |l| l.available_at <= at);
                self.post(&m.id, at, None, -taken.debt);
                self.redemptions.insert(redemption_id.clone(), taken);
            }
            MovementKind::CancelRedemption { redemption_id } => {
                let Some(taken) = self.redemptions.get_mut(redemption_id) else {
                    return false;
                };
                let total: i64 = taken.from_lots.iter().map(|(_, a)| a).sum::<i64>() + taken.debt;
                if taken.cancelled || total != m.amount {
                    return false;
                }
                taken.cancelled = true;
                let (from_lots, debt) = (taken.from_lots.clone(), taken.debt);
                // What became debt first cancels that debt (or whatever debt is left).
                // (The surplus is worked out before the debt is repaid: after it, the debt is
                // lower and the repaid part would be counted twice.)
                let repaid = debt.min(self.debt);
                let surplus = debt - repaid;
                self.credit(&m.id, at, None, repaid);
                for (i, amount) in from_lots {
                    self.credit(&m.id, at, Some(i), amount);
                    if self.lots[i].expired_at.is_some() {
                        // Its lot expired meanwhile: the points come back and expire at once.
                        let movement = format!("expire:{}", self.lots[i].id);
                        let left = self.lots[i].remaining;
                        self.post(&movement, at, Some(i), -left);
                    }
                }
                if surplus > 0 {
                    // The debt this redemption caused was paid from a later earn already:
                    // give those points back as a lot of their own.
                    self.lots.push(Lot {
                        id: m.id.clone(),
                        order_id: None,
                        earned_at: at,
                        available_at: at,
                        expires_at: None,
                        amount: surplus,
                        remaining: 0,
                        expired_at: None,
                        due_at: None,
                    });
                    let i = self.lots.len() - 1;
                    self.post(&m.id, at, Some(i), surplus);
                }
            }
            MovementKind::Clawback { order_id } => {
                let own = self.spend(&m.id, at, m.amount, |l| match &l.order_id {
                    Some(o) => o == order_id,
                    None => l.id == *order_id,
                });
                // What the order's own lots no longer hold comes from any available lot, and
                // what those cannot pay is the shortfall, recorded as debt.
                let rest = self.spend(&m.id, at, own.debt, |l| l.available_at <= at);
                self.post(&m.id, at, None, -rest.debt);
            }
        }
        true
    }
}

/// The customer's points at `now`, from their movements in any order, duplicates (same id)
/// counted once. Movements after `now` are ignored. Lots past their expiry date (or, in
/// inactivity mode, all lots once the customer has been idle too long) expire before anything
/// later is applied, so a redemption can never spend expired points.
pub fn fold(movements: &[Movement], now: DateTime<Utc>, expiry: &Expiry) -> Folded {
    let mut sorted: Vec<&Movement> = movements.iter().collect();
    sorted.sort_by(|a, b| {
        (a.at, a.kind.rank(), &a.id, a.amount).cmp(&(b.at, b.kind.rank(), &b.id, b.amount))
    });
    let mut seen = BTreeSet::new();
    let mut book = Book::default();
    let mut ignored = Vec::new();
    for m in sorted {
        if !seen.insert(m.id.as_str()) {
            continue;
        }
        if m.at > now {
            ignored.push(m.id.clone());
            continue;
        }
        book.expire_until(m.at, expiry);
        if !book.apply(m) {
            ignored.push(m.id.clone());
        }
    }
    book.expire_until(now, expiry);
    let dues: Vec<_> = book
        .lots
        .iter()
        .map(|l| {
            l.expired_at
                .is_none()
                .then(|| book.expiry_of(l, expiry))
                .flatten()
        })
        .collect();
    let mut lots = book.lots;
    for (lot, due) in lots.iter_mut().zip(dues) {
        lot.due_at = due;
    }
    lots.sort_by(|a, b| a.spend_key().cmp(&b.spend_key()));
    let live = lots.iter().filter(|l| l.expired_at.is_none());
    let (mut available, mut pending) = (0, 0);
    for l in live {
        if l.available_at <= now {
            available += l.remaining;
        } else {
            pending += l.remaining;
        }
    }
    Folded {
        lots,
        available,
        pending,
        debt: book.debt,
        postings: book.postings,
        ignored,
    }
}
