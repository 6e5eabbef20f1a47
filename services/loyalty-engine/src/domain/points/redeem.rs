//! Whether a redemption may go ahead. The store calls this under the customer's row lock, on a
//! fold of the ledger at that moment, and appends the movement it returns.

use chrono::{DateTime, Utc};

use super::config::PointsRules;
use super::ledger::{Folded, Movement, MovementKind};
use crate::domain::programme::Programme;

/// Why a redemption was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    #[error("the points to redeem must be positive, not {0}")]
    NotPositive(i64),
    #[error("not enough points: {requested} requested, {available} available")]
    Insufficient { requested: i64, available: i64 },
    #[error("no reward {0:?} in the catalogue")]
    UnknownReward(String),
    #[error("reward {reward:?} costs {cost} points, not {requested}")]
    CostMismatch {
        reward: String,
        cost: i64,
        requested: i64,
    },
    #[error("reward {reward:?} needs tier {min_tier} or above; the customer is {tier}")]
    TierTooLow {
        reward: String,
        min_tier: String,
        tier: String,
    },
}

/// A redemption request, as the API or the `redemptions` topic gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request<'a> {
    /// The idempotency key: also the redemption's id.
    pub redemption_id: &'a str,
    pub source_event: &'a str,
    pub at: DateTime<Utc>,
    pub points: i64,
    pub reward: Option<&'a str>,
}

/// Checks a redemption against the customer's points (`folded` at `request.at`) and tier, and
/// returns the movement to append. Never spends more than is available.
pub fn redeem(
    folded: &Folded,
    rules: &PointsRules,
    programme: &Programme,
    tier: &str,
    request: &Request<'_>,
    programme_version: &str,
) -> Result<Movement, RedeemError> {
    if request.points <= 0 {
        return Err(RedeemError::NotPositive(request.points));
    }
    let mut reason = format!("redemption {}", request.redemption_id);
    if let Some(id) = request.reward {
        let reward = rules
            .reward(id)
            .ok_or_else(|| RedeemError::UnknownReward(id.to_owned()))?;
        if reward.cost != request.points {
            return Err(RedeemError::CostMismatch {
                reward: id.to_owned(),
                cost: reward.cost,
                requested: request.points,
            });
        }
        if let Some(min) = &reward.min_tier
            && programme.rank(tier) < programme.rank(min)
        {
            return Err(RedeemError::TierTooLow {
                reward: id.to_owned(),
                min_tier: min.clone(),
                tier: tier.to_owned(),
            });
        }
        reason = format!("{reason}: {} ({})", reward.name, reward.id);
    }
    // Debt is owed first: points that pay it are not spendable.
    let spendable = folded.available - folded.debt;
    if request.points > spendable {
        return Err(RedeemError::Insufficient {
            requested: request.points,
            available: spendable.max(0),
        });
    }
    Ok(Movement {
        id: format!("redeem:{}", request.redemption_id),
        at: request.at,
        kind: MovementKind::Redeem {
            redemption_id: request.redemption_id.to_owned(),
        },
        amount: request.points,
        reason,
        source_event: request.source_event.to_owned(),
        programme_version: programme_version.to_owned(),
    })
}
