//! What the domain asks the outside world to publish.

use chrono::{DateTime, Utc};

use super::churn::{Assessment, Level, Play};
use super::ids::{CustomerId, EventId};
use super::metrics::Metrics;
use super::segment::Segment;
use super::tier::TierChangeKind;

/// What caused an output: an input event, an operator, or the passing of time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Cause {
    Event(EventId),
    Sweep,
    Operator(String),
}

impl Cause {
    pub fn as_str(&self) -> &str {
        match self {
            Cause::Event(id) => id.as_str(),
            Cause::Sweep => "sweep",
            Cause::Operator(who) => who.as_str(),
        }
    }
}

/// An output event of the domain, with the metrics that decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub customer_id: CustomerId,
    pub cause: Cause,
    pub effective_at: DateTime<Utc>,
    pub metrics: Box<Metrics>,
    /// The churn assessment at the same moment.
    pub churn: Option<Box<Assessment>>,
    pub kind: OutputKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OutputKind {
    TierChanged {
        previous: String,
        new: String,
        change: TierChangeKind,
        reason: String,
    },
    TierWillDowngrade {
        current: String,
        to: String,
        downgrade_at: DateTime<Utc>,
        to_keep: Vec<String>,
        reason: String,
    },
    SegmentChanged {
        previous: Option<Segment>,
        new: Segment,
        reason: String,
    },
    ChurnRiskChanged {
        previous: Option<Level>,
        new: Level,
        play: Play,
        reason: String,
    },
    /// What a batch (or the passing of time) did to the customer's points.
    PointsChanged {
        changes: super::points::summary::Changes,
        available: i64,
        pending: i64,
        debt: i64,
    },
    /// A lot of points will expire soon.
    PointsWillExpire {
        lot: String,
        amount: i64,
        expires_at: DateTime<Utc>,
    },
}

impl OutputKind {
    /// `PointsChanged` or `PointsWillExpire`.
    pub fn is_points(&self) -> bool {
        matches!(
            self,
            OutputKind::PointsChanged { .. } | OutputKind::PointsWillExpire { .. }
        )
    }

    /// A short, PII-free name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            OutputKind::TierChanged { .. } => "tier_changed",
            OutputKind::TierWillDowngrade { .. } => "tier_will_downgrade",
            OutputKind::SegmentChanged { .. } => "segment_changed",
            OutputKind::ChurnRiskChanged { .. } => "churn_risk_changed",
            OutputKind::PointsChanged { .. } => "points_changed",
            OutputKind::PointsWillExpire { .. } => "points_will_expire",
        }
    }
}
