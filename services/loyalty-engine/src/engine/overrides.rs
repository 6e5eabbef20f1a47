//! Manual tier overrides: set by an operator until a date, audited, published as a
//! `TierChanged` of kind OVERRIDE; when they expire the rules apply again.

use chrono::{DateTime, Utc};

use crate::domain::apply::override_tier;
use crate::domain::ids::CustomerId;
use crate::domain::metrics::Metrics;
use crate::domain::state::CustomerState;
use crate::domain::tier::TierOverride;
use crate::store::{audit, customers};

use super::Core;
use super::write::{self, Evaluated};

/// An operator's request.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
pub struct OverrideRequest {
    /// A tier of the programme.
    pub tier: String,
    /// Why (kept in the audit trail, published as the change's reason).
    pub reason: String,
    /// When the customer returns to the rules; in the future.
    pub expires_at: DateTime<Utc>,
    /// Who sets it (an operator's name or email, for the audit trail). Over HTTP it is
    /// optional: the audit records the caller's token name, then this.
    #[serde(default)]
    pub set_by: String,
}

/// Why an override was not set, for the caller to answer.
#[derive(Debug)]
pub enum OverrideError {
    UnknownTier,
    MissingReason,
    InThePast,
    UnknownCustomer,
    Store(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for OverrideError {
    fn from(e: E) -> Self {
        OverrideError::Store(e.into())
    }
}

/// The customer after the override, as it was written.
#[derive(Debug)]
pub struct Overridden {
    pub state: CustomerState,
    pub metrics: Metrics,
    pub now: DateTime<Utc>,
}

/// Sets the override in one transaction: the customer re-evaluated, the output queued, the
/// audit row written.
pub async fn set_override(
    core: &Core,
    customer: &CustomerId,
    req: &OverrideRequest,
) -> Result<Overridden, OverrideError> {
    if core.programme.tier_named(&req.tier).is_none() {
        return Err(OverrideError::UnknownTier);
    }
    if req.reason.trim().is_empty() || req.set_by.trim().is_empty() {
        return Err(OverrideError::MissingReason);
    }
    let mut tx = core.pool.begin().await?;
    let now = core.clock.now(&mut *tx).await?;
    if req.expires_at <= now {
        return Err(OverrideError::InThePast);
    }
    let mut loaded = customers::load_for_update(&mut tx, &[customer]).await?;
    let Some(row) = loaded.remove(customer) else {
        return Err(OverrideError::UnknownCustomer);
    };
    let previous_tier = row.state.tier().to_owned();
    let manual = TierOverride {
        tier: req.tier.clone(),
        reason: req.reason.clone(),
        expires_at: req.expires_at,
        set_at: now,
        set_by: req.set_by.clone(),
    };
    let model = core.model.get();
    let (state, metrics, outputs) =
        override_tier(row.state, manual, &core.programme, model.as_deref(), now);
    let evaluated = [Evaluated {
        state,
        home_partition: row.home_partition,
        metrics,
        outputs,
        replaces: row.version,
    }];
    write::write(&mut tx, core, &evaluated, Vec::new()).await?;
    audit::record_override(
        &mut tx,
        customer.as_str(),
        &previous_tier,
        &req.tier,
        &req.reason,
        &req.set_by,
        now,
        req.expires_at,
    )
    .await?;
    tx.commit().await?;
    let [done] = evaluated;
    for out in &done.outputs {
        core.metrics.output(out);
    }
    tracing::info!(tier = %req.tier, "manual tier override set");
    Ok(Overridden {
        state: done.state,
        metrics: done.metrics,
        now,
    })
}
