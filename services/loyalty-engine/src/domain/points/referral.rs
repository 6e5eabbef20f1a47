//! Referral bonuses: the referrer's bonus for a referred customer's order, and its cancellation
//! when that order is refunded in full before the bonus clears. Pure: the referred customer's
//! events are passed in (the engine reads them from the event ledger).

use chrono::{DateTime, Utc};

use super::config::PointsRules;
use super::ledger::{Movement, MovementKind};
use crate::domain::event::{DomainEvent, EventBody};

/// What a referral bonus's id starts with, before the referred customer's id.
pub const BONUS_PREFIX: &str = "referral:";

/// What the id of a referral bonus's cancellation starts with, before the referred customer's id.
pub const CANCEL_PREFIX: &str = "referral-cancel:";

/// The id of the referrer's bonus for `referred` (one per referred customer).
pub fn bonus_id(referred: &str) -> String {
    format!("{BONUS_PREFIX}{referred}")
}

/// The id of the movement that cancels that bonus.
pub fn cancel_id(referred: &str) -> String {
    format!("{CANCEL_PREFIX}{referred}")
}

/// Whether a movement is a referral bonus or its cancellation (kept by recompute: they come
/// from other customers' events).
pub fn is_referral(m: &Movement) -> bool {
    m.id.starts_with(BONUS_PREFIX) || m.id.starts_with(CANCEL_PREFIX)
}

/// The referrer's bonus for `referred`, credited by their `purchase`: pending until that
/// order's return window has passed, so it is spendable only once the order has cleared.
pub fn bonus(
    rules: &PointsRules,
    referred: &str,
    purchase: &DomainEvent,
    version: &str,
) -> Option<Movement> {
    if rules.earn.referral_bonus <= 0 {
        return None;
    }
    let at = purchase.meta.occurred_at;
    let cleared = rules.available_at(at);
    Some(Movement {
        id: bonus_id(referred),
        at,
        kind: MovementKind::Earn {
            available_at: cleared,
            expires_at: rules.expiry.expires_at(cleared),
            order_id: None,
        },
        amount: rules.earn.referral_bonus,
        reason: format!(
            "referral bonus: a referred customer's order, spendable once it clears on {}",
            cleared.date_naive()
        ),
        source_event: purchase.meta.event_id.as_str().to_owned(),
        programme_version: version.to_owned(),
    })
}

/// The movement cancelling `bonus` (a referral bonus, [`bonus`]) if the order that credited it
/// was refunded in full before the bonus cleared: the refunds of that order, in event-time
/// order, reach its amount at a refund dated before the bonus's `available_at`. A partial
/// refund, or one that completes the refund only after the bonus cleared, cancels nothing.
///
/// `referred_events`: the referred customer's events, in any order, duplicates allowed; the
/// ones that matter are the purchase the bonus names as its source and that order's refunds.
/// The cancellation is a `Clawback` of the whole bonus aimed at the bonus's own lot (its
/// `order_id` is the lot's id), dated at the refund that completed it (never before the bonus),
/// with that refund as its source.
pub fn cancellation(
    bonus: &Movement,
    referred: &str,
    referred_events: &[&DomainEvent],
    version: &str,
) -> Option<Movement> {
    let MovementKind::Earn { available_at, .. } = bonus.kind else {
        return None;
    };
    let of_referred = |e: &&&DomainEvent| e.meta.customer_id.as_str() == referred;
    let (order_id, amount) =
        referred_events
            .iter()
            .filter(of_referred)
            .find_map(|e| match &e.body {
                EventBody::Purchase(p) if e.meta.event_id.as_str() == bonus.source_event => {
                    Some((p.order_id.as_str(), p.amount.get()))
                }
                _ => None,
            })?;
    let mut refunds: Vec<(DateTime<Utc>, &str, i64)> = referred_events
        .iter()
        .filter(of_referred)
        .filter_map(|e| match &e.body {
            EventBody::Refund(r) if r.order_id == order_id => {
                Some((e.meta.occurred_at, e.meta.event_id.as_str(), r.amount.get()))
            }
            _ => None,
        })
        .collect();
    refunds.sort();
    refunds.dedup_by(|a, b| a.1 == b.1);
    let mut total = 0;
    let (refunded_at, refund_id) = refunds.into_iter().find_map(|(at, id, minor)| {
        total += minor;
        (total >= amount).then_some((at, id))
    })?;
    if refunded_at >= available_at {
        return None;
    }
    Some(Movement {
        id: cancel_id(referred),
        at: refunded_at.max(bonus.at),
        kind: MovementKind::Clawback {
            order_id: bonus.id.clone(),
        },
        amount: bonus.amount,
        reason: format!(
            "referral bonus cancelled: the referred customer's order was refunded before it \
             cleared on {}",
            available_at.date_naive()
        ),
        source_event: refund_id.to_owned(),
        programme_version: version.to_owned(),
    })
}
