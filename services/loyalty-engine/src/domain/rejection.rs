//! Why an input message was refused. Every refusal goes to the dead-letter topic with its raw
//! bytes and these reasons as headers, and is counted by reason.

use std::fmt;

use super::points::book::Refusal;
use super::points::redeem::RedeemError;

/// A low-cardinality reason, used as a metric label and in the `kizuna-dlq-reason` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    Oversized,
    EmptyPayload,
    UnsupportedContentType,
    UnknownSchemaVersion,
    Unparseable,
    WrongType,
    UnknownEnum,
    MissingField,
    InvalidId,
    InvalidCustomerId,
    KeyMismatch,
    AmountOutOfRange,
    CurrencyMismatch,
    InvalidCurrency,
    FutureTimestamp,
    InvalidTimestamp,
    TooOld,
    ScoreOutOfRange,
    InvalidField,
    /// The message came from a topic the engine did not subscribe to.
    UnknownTopic,
    /// Applying the message failed every time (found by splitting a failing batch).
    ProcessingFailed,
    /// A registry-framed message whose schema id the Schema Registry does not know.
    UnknownSchemaId,
    /// A registry-framed message whose schema is not the topic's `kizuna.v1` message (another
    /// message, another package, not a protobuf schema).
    WrongSchema,
    /// A registry-framed message, and no Schema Registry is configured (`registry.url`).
    RegistryNotConfigured,
    /// A redemption (topic `redemptions`) the points book refused: more points than available.
    InsufficientPoints,
    /// A redemption of zero or fewer points.
    PointsNotPositive,
    /// A redemption of a reward the catalogue does not have.
    UnknownReward,
    /// A redemption whose points are not its reward's cost.
    RewardCostMismatch,
    /// A redemption of a reward the customer's tier may not redeem.
    TierTooLow,
    /// A cancel of a redemption that was never applied.
    UnknownRedemption,
    /// A redemption or cancel while the programme has no `[points]`.
    PointsDisabled,
    /// An event for a customer erased less than `privacy.refuse_days` ago
    /// (`privacy.after_erasure = "refuse"`).
    Erased,
}

impl RejectReason {
    pub const ALL: [RejectReason; 32] = [
        RejectReason::Oversized,
        RejectReason::EmptyPayload,
        RejectReason::UnsupportedContentType,
        RejectReason::UnknownSchemaVersion,
        RejectReason::Unparseable,
        RejectReason::WrongType,
        RejectReason::UnknownEnum,
        RejectReason::MissingField,
        RejectReason::InvalidId,
        RejectReason::InvalidCustomerId,
        RejectReason::KeyMismatch,
        RejectReason::AmountOutOfRange,
        RejectReason::CurrencyMismatch,
        RejectReason::InvalidCurrency,
        RejectReason::FutureTimestamp,
        RejectReason::InvalidTimestamp,
        RejectReason::TooOld,
        RejectReason::ScoreOutOfRange,
        RejectReason::InvalidField,
        RejectReason::UnknownTopic,
        RejectReason::ProcessingFailed,
        RejectReason::UnknownSchemaId,
        RejectReason::WrongSchema,
        RejectReason::RegistryNotConfigured,
        RejectReason::InsufficientPoints,
        RejectReason::PointsNotPositive,
        RejectReason::UnknownReward,
        RejectReason::RewardCostMismatch,
        RejectReason::TierTooLow,
        RejectReason::UnknownRedemption,
        RejectReason::PointsDisabled,
        RejectReason::Erased,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Oversized => "oversized",
            RejectReason::EmptyPayload => "empty_payload",
            RejectReason::UnsupportedContentType => "unsupported_content_type",
            RejectReason::UnknownSchemaVersion => "unknown_schema_version",
            RejectReason::Unparseable => "unparseable",
            RejectReason::WrongType => "wrong_type",
            RejectReason::UnknownEnum => "unknown_enum",
            RejectReason::MissingField => "missing_field",
            RejectReason::InvalidId => "invalid_id",
            RejectReason::InvalidCustomerId => "invalid_customer_id",
            RejectReason::KeyMismatch => "key_mismatch",
            RejectReason::AmountOutOfRange => "amount_out_of_range",
            RejectReason::CurrencyMismatch => "currency_mismatch",
            RejectReason::InvalidCurrency => "invalid_currency",
            RejectReason::FutureTimestamp => "future_timestamp",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::TooOld => "too_old",
            RejectReason::ScoreOutOfRange => "score_out_of_range",
            RejectReason::InvalidField => "invalid_field",
            RejectReason::UnknownTopic => "unknown_topic",
            RejectReason::ProcessingFailed => "processing_failed",
            RejectReason::UnknownSchemaId => "unknown_schema_id",
            RejectReason::WrongSchema => "wrong_schema",
            RejectReason::RegistryNotConfigured => "registry_not_configured",
            RejectReason::InsufficientPoints => "insufficient_points",
            RejectReason::PointsNotPositive => "points_not_positive",
            RejectReason::UnknownReward => "unknown_reward",
            RejectReason::RewardCostMismatch => "reward_cost_mismatch",
            RejectReason::TierTooLow => "tier_too_low",
            RejectReason::UnknownRedemption => "unknown_redemption",
            RejectReason::PointsDisabled => "points_disabled",
            RejectReason::Erased => "erased",
        }
    }

    /// The reason a refused redemption or cancel is dead-lettered with (its `Refusal::code`).
    pub fn of_refusal(refusal: &Refusal) -> Self {
        match refusal {
            Refusal::Redeem(RedeemError::NotPositive(_)) => RejectReason::PointsNotPositive,
            Refusal::Redeem(RedeemError::Insufficient { .. }) => RejectReason::InsufficientPoints,
            Refusal::Redeem(RedeemError::UnknownReward(_)) => RejectReason::UnknownReward,
            Refusal::Redeem(RedeemError::CostMismatch { .. }) => RejectReason::RewardCostMismatch,
            Refusal::Redeem(RedeemError::TierTooLow { .. }) => RejectReason::TierTooLow,
            Refusal::UnknownRedemption(_) => RejectReason::UnknownRedemption,
            Refusal::NoPoints => RejectReason::PointsDisabled,
            // Adjustments come from the admin API only: never dead-lettered.
            Refusal::ZeroAdjustment | Refusal::ExpiresBeforeGrant { .. } => {
                RejectReason::InvalidField
            }
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: the reason, plus a detail for the dead-letter header. The detail may quote the
/// payload, so it goes to the dead-letter topic only, never to logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

impl From<&Refusal> for Rejection {
    /// A refused redemption or cancel as a dead letter: its reason code, and the refusal's
    /// words (balances and ids, no PII) as the detail.
    fn from(refusal: &Refusal) -> Self {
        Rejection::new(RejectReason::of_refusal(refusal), refusal.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in RejectReason::ALL {
            assert!(seen.insert(r.as_str()), "{r} twice");
            assert!(
                r.as_str()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_'),
                "{r}"
            );
        }
    }

    #[test]
    fn a_refused_redemption_is_dead_lettered_with_its_refusal_code() {
        let refusals = [
            Refusal::Redeem(RedeemError::NotPositive(0)),
            Refusal::Redeem(RedeemError::Insufficient {
                requested: 500,
                available: 120,
            }),
            Refusal::Redeem(RedeemError::UnknownReward("mug".into())),
            Refusal::Redeem(RedeemError::CostMismatch {
                reward: "mug".into(),
                cost: 300,
                requested: 200,
            }),
            Refusal::Redeem(RedeemError::TierTooLow {
                reward: "lounge".into(),
                min_tier: "gold".into(),
                tier: "member".into(),
            }),
            Refusal::UnknownRedemption("r9".into()),
            Refusal::NoPoints,
        ];
        for refusal in &refusals {
            let rejection = Rejection::from(refusal);
            assert_eq!(rejection.reason.as_str(), refusal.code(), "{refusal:?}");
            assert!(RejectReason::ALL.contains(&rejection.reason));
        }
    }
}
