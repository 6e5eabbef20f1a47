//! What the domain asks the outside world to publish.

use chrono::{DateTime, Utc};

use super::ids::{CustomerId, EventId};
use super::state::CustomerState;

/// What caused an output: an input event, or the passing of time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Cause {
    Event(EventId),
    Sweep,
}

impl Cause {
    pub fn as_str(&self) -> &str {
        match self {
            Cause::Event(id) => id.as_str(),
            Cause::Sweep => "sweep",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TierChangeKind {
    Upgrade,
    Downgrade,
}

/// An output event of the domain, with the state snapshot that decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub customer_id: CustomerId,
    pub cause: Cause,
    pub effective_at: DateTime<Utc>,
    pub snapshot: CustomerState,
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
}

impl OutputKind {
    /// A short, PII-free name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            OutputKind::TierChanged { .. } => "tier_changed",
        }
    }
}
