//! What a purchase earns and what a refund takes back. Ids of the movements derive from the
//! source event, so deriving them again (recompute) gives the same movements.

use chrono::{DateTime, Utc};

use super::config::PointsRules;
use super::ledger::{Movement, MovementKind};

/// A purchase, as far as earning is concerned.
#[derive(Debug, Clone, PartialEq)]
pub struct Purchase<'a> {
    pub event_id: &'a str,
    pub order_id: &'a str,
    pub at: DateTime<Utc>,
    /// Amount paid, minor units of the programme currency.
    pub amount_minor: i64,
    /// The order's main product category.
    pub category: &'a str,
    /// The customer's first order ever.
    pub first_order: bool,
}

fn multiplier(map: &std::collections::BTreeMap<String, f64>, key: &str) -> f64 {
    map.get(key).copied().unwrap_or(1.0)
}

/// The points a purchase earns: the base earn (rate × category and tier multipliers, rounded),
/// and the first-order bonus as a lot of its own. Both belong to the order, so a refund takes
/// them back in proportion. Zero-point lines are left out.
pub fn earn_for_purchase(
    rules: &PointsRules,
    purchase: &Purchase<'_>,
    tier: &str,
    programme_version: &str,
) -> Vec<Movement> {
    let e = &rules.earn;
    let units = purchase.amount_minor.max(0) as f64 / e.currency_unit_minor.max(1) as f64;
    let category = multiplier(&e.category_multipliers, purchase.category);
    let tier_m = multiplier(&e.tier_multipliers, tier);
    let base = e
        .rounding
        .apply(units * e.per_currency_unit * category * tier_m);
    let kind = MovementKind::Earn {
        available_at: rules.available_at(purchase.at),
        expires_at: rules.expiry.expires_at(purchase.at),
        order_id: Some(purchase.order_id.to_owned()),
    };
    let movement = |suffix: &str, amount: i64, reason: String| Movement {
        id: format!("{}:{suffix}", purchase.event_id),
        at: purchase.at,
        kind: kind.clone(),
        amount,
        reason,
        source_event: purchase.event_id.to_owned(),
        programme_version: programme_version.to_owned(),
    };
    let mut out = Vec::new();
    if base > 0 {
        let mut reason = format!(
            "order {}: {} minor units at {} per {}",
            purchase.order_id, purchase.amount_minor, e.per_currency_unit, e.currency_unit_minor
        );
        if category != 1.0 {
            reason.push_str(&format!(", ×{category} for {}", purchase.category));
        }
        if tier_m != 1.0 {
            reason.push_str(&format!(", ×{tier_m} for tier {tier}"));
        }
        out.push(movement("earn", base, reason));
    }
    if purchase.first_order && e.first_order_bonus > 0 {
        out.push(movement(
            "first_order",
            e.first_order_bonus,
            format!("first-order bonus for order {}", purchase.order_id),
        ));
    }
    out
}

/// Points to take back now for a refund: the order's earn in proportion to everything refunded
/// so far (rounded up, so a full refund takes everything), less what was already taken back.
/// Never negative, never more than the order earned.
pub fn clawback_for_refund(
    earned: i64,
    already_clawed: i64,
    order_amount_minor: i64,
    refunded_total_minor: i64,
) -> i64 {
    if earned <= 0 || order_amount_minor <= 0 {
        return 0;
    }
    let refunded = i128::from(refunded_total_minor.clamp(0, order_amount_minor));
    let (earned_w, amount) = (i128::from(earned), i128::from(order_amount_minor));
    // Ceiling of earned × refunded / amount, in integers: no float error on money.
    let due = (earned_w * refunded + amount - 1) / amount;
    let due = i64::try_from(due).unwrap_or(earned).min(earned);
    (due - already_clawed.max(0)).max(0)
}

/// The clawback movement for a refund, if it takes anything back.
#[allow(clippy::too_many_arguments)]
pub fn clawback_movement(
    refund_event_id: &str,
    order_id: &str,
    at: DateTime<Utc>,
    earned: i64,
    already_clawed: i64,
    order_amount_minor: i64,
    refunded_total_minor: i64,
    programme_version: &str,
) -> Option<Movement> {
    let amount = clawback_for_refund(
        earned,
        already_clawed,
        order_amount_minor,
        refunded_total_minor,
    );
    (amount > 0).then(|| Movement {
        id: format!("{refund_event_id}:clawback"),
        at,
        kind: MovementKind::Clawback {
            order_id: order_id.to_owned(),
        },
        amount,
        reason: format!(
            "refund of {refunded_total_minor} of {order_amount_minor} minor units of order \
             {order_id}: takes back {amount} of the {earned} points it earned"
        ),
        source_event: refund_event_id.to_owned(),
        programme_version: programme_version.to_owned(),
    })
}

/// A bonus lot: spendable at once (there is nothing to return), expiring by the rules, tied to
/// no order (a refund does not take it back).
fn bonus(
    rules: &PointsRules,
    id: String,
    at: DateTime<Utc>,
    amount: i64,
    reason: String,
    source_event: &str,
    programme_version: &str,
) -> Option<Movement> {
    (amount > 0).then(|| Movement {
        id,
        at,
        kind: MovementKind::Earn {
            available_at: at,
            expires_at: rules.expiry.expires_at(at),
            order_id: None,
        },
        amount,
        reason,
        source_event: source_event.to_owned(),
        programme_version: programme_version.to_owned(),
    })
}

/// The bonus for an answered survey (once per survey event).
pub fn survey_bonus(
    rules: &PointsRules,
    survey_event_id: &str,
    at: DateTime<Utc>,
    programme_version: &str,
) -> Option<Movement> {
    bonus(
        rules,
        format!("{survey_event_id}:survey"),
        at,
        rules.earn.survey_bonus,
        "bonus for answering a survey".to_owned(),
        survey_event_id,
        programme_version,
    )
}

/// One bonus per anniversary of the first order up to `now` (at most 100), each on its date.
/// The same inputs always give the same movements, so granting them again changes nothing.
pub fn anniversary_bonuses(
    rules: &PointsRules,
    first_order_event_id: &str,
    first_order_at: DateTime<Utc>,
    now: DateTime<Utc>,
    programme_version: &str,
) -> Vec<Movement> {
    (1..=100u32)
        .map_while(|years| {
            first_order_at
                .checked_add_months(chrono::Months::new(12 * years))
                .filter(|at| *at <= now)
                .map(|at| (years, at))
        })
        .filter_map(|(years, at)| {
            bonus(
                rules,
                format!("anniversary:{years}"),
                at,
                rules.earn.anniversary_bonus,
                format!("{years}-year anniversary of the first order"),
                first_order_event_id,
                programme_version,
            )
        })
        .collect()
}

/// The referrer's bonus, due once the referred customer's first order has cleared its pending
/// period (`cleared_at`, the end of that order's pending time) and not been refunded in full
/// before (the caller passes `None` then). Nothing before `cleared_at`.
pub fn referral_bonus(
    rules: &PointsRules,
    referred_customer: &str,
    first_order_event_id: &str,
    cleared_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    programme_version: &str,
) -> Option<Movement> {
    let at = cleared_at.filter(|at| *at <= now)?;
    bonus(
        rules,
        format!("referral:{referred_customer}"),
        at,
        rules.earn.referral_bonus,
        format!("referred customer {referred_customer}: their first order cleared"),
        first_order_event_id,
        programme_version,
    )
}
