//! What changed between two moments, and what is about to expire: the material of the
//! `PointsChanged` and `PointsWillExpire` outputs (not published yet).

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};

use super::ledger::{Folded, Movement, MovementKind};

/// Points moved in the half-open interval `(from, to]`, by kind. All non-negative except
/// `adjusted`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Changes {
    pub earned: i64,
    /// Pending points that became spendable.
    pub released: i64,
    pub redeemed: i64,
    pub cancelled: i64,
    pub expired: i64,
    pub clawed_back: i64,
    pub adjusted: i64,
}

/// The changes in `(from, to]`, from the movements and their fold (at `to` or later).
pub fn changes(
    movements: &[Movement],
    folded: &Folded,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Changes {
    let inside = |at: DateTime<Utc>| from < at && at <= to;
    let ignored: BTreeSet<&str> = folded.ignored.iter().map(String::as_str).collect();
    let mut seen = BTreeSet::new();
    let mut c = Changes::default();
    for m in movements {
        if !inside(m.at) || ignored.contains(m.id.as_str()) || !seen.insert(m.id.as_str()) {
            continue;
        }
        match m.kind {
            MovementKind::Activity => {}
            MovementKind::Earn { .. } => c.earned += m.amount,
            MovementKind::Adjust { .. } => c.adjusted += m.amount,
            MovementKind::Redeem { .. } => c.redeemed += m.amount,
            MovementKind::CancelRedemption { .. } => c.cancelled += m.amount,
            MovementKind::Clawback { .. } => c.clawed_back += m.amount,
        }
    }
    c.expired = -folded
        .expiries()
        .filter(|p| inside(p.at))
        .map(|p| p.amount)
        .sum::<i64>();
    for lot in &folded.lots {
        if lot.available_at > lot.earned_at && inside(lot.available_at) {
            // What the lot held just before it was released.
            c.released += folded
                .postings
                .iter()
                .filter(|p| p.lot.as_deref() == Some(lot.id.as_str()) && p.at < lot.available_at)
                .map(|p| p.amount)
                .sum::<i64>();
        }
    }
    c
}

/// A lot that expires soon.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Expiring {
    pub lot: String,
    pub amount: i64,
    pub at: DateTime<Utc>,
}

/// Open lots with points left that expire after `now` and within `warn_days`, soonest first.
pub fn expiring(folded: &Folded, now: DateTime<Utc>, warn_days: u32) -> Vec<Expiring> {
    let until = now + Duration::days(i64::from(warn_days));
    let mut out: Vec<Expiring> = folded
        .lots
        .iter()
        .filter(|l| l.remaining > 0 && l.expired_at.is_none())
        .filter_map(|l| {
            l.due_at
                .filter(|at| now < *at && *at <= until)
                .map(|at| Expiring {
                    lot: l.id.clone(),
                    amount: l.remaining,
                    at,
                })
        })
        .collect();
    out.sort_by(|a, b| (a.at, &a.lot).cmp(&(b.at, &b.lot)));
    out
}
