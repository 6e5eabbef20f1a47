//! Probabilistic customer-base models (BG/NBD, Gamma-Gamma) and expected customer lifetime
//! value. Pure functions: no I/O, no clock.
//!
//! # Models
//! - **BG/NBD** (Fader, Hardie & Lee 2005, "Counting your customers the easy way: an
//!   alternative to the Pareto/NBD model", *Marketing Science* 24(2)): see [`bgnbd`].
//! - **Gamma-Gamma** spend model (Fader, Hardie & Lee 2005, "RFM and CLV: using iso-value
//!   curves for customer base analysis", *JMR* 42(4); Fader & Hardie 2013, "The Gamma-Gamma
//!   model of monetary value"): see [`gamma_gamma`].
//! - **Pareto/NBD** (Schmittlein, Morrison & Colombo 1987; Fader, Hardie & Lee 2005 note):
//!   dropout at any time, at an exponential rate `μ ~ Gamma(s, β)`: see [`pareto_nbd`].
//! - **MBG/NBD** (Batislam, Denizel & Filiztekin 2007): BG/NBD with a possible dropout right
//!   after the first purchase too: see [`mbgnbd`]. The three share one interface,
//!   [`PurchaseModel`].
//! - Maximum-likelihood fitting of all: see [`fit`]; expected CLV over a horizon: see [`clv`].
//!
//! # Assumptions (what the numbers mean only if they hold)
//! - **Non-contractual** setting: customers never announce that they leave; dropout is latent.
//! - While alive, a customer buys according to a **Poisson process** with rate `λ`.
//! - **Dropout happens only right after a repeat purchase**, with probability `p` (so a customer
//!   who has made no repeat purchase is certainly alive: `P(alive | x = 0) = 1`).
//! - **Heterogeneity**: `λ ~ Gamma(r, α)` (shape `r`, rate `α`) and `p ~ Beta(a, b)` across
//!   customers, independently of each other.
//!   Homogeneity is the limit: a fit may put `r` or `a + b` at a large cap (see [`fit`]),
//!   which means everyone has the same `λ` (mean `r/α`) or the same `p` (mean `a/(a+b)`).
//! - **Spend** (Gamma-Gamma): each transaction value is `Gamma(p, ν)` with `ν ~ Gamma(q, γ)`
//!   across customers, and the spend process is **independent of the transaction process** —
//!   this is what justifies CLV = expected purchases × expected spend.
//!
//! # Per-customer sufficient statistics
//! Everything is computed from a [`CustomerSummary`]: `x` repeat purchases (purchases after the
//! first one), `t_x` the time of the last purchase measured from the first purchase (`0` when
//! `x = 0`), and `T` (here `age`) the time from the first purchase to the observation time.
//! Gamma-Gamma uses a [`SpendSummary`]: the same `x` and the mean value `m_x` of those repeat
//! purchases.
//!
//! # Time unit
//! All durations are plain `f64`s in a unit the caller chooses and uses consistently: `α`, `T`,
//! `t_x` and forecast horizons share it. The engine passes **weeks** (`days / 7`), which matches
//! the published CDNOW figures used in the tests. Fitting rescales time internally, so the fit
//! itself does not depend on the unit.

pub mod bgnbd;
pub mod choice;
pub mod clv;
pub mod fit;
pub mod gamma_gamma;
pub mod mbgnbd;
pub mod pareto_nbd;
pub mod purchase;
pub mod special;

#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod testkit;

pub use bgnbd::BgNbdParams;
pub use clv::{ClvHorizon, clv};
pub use fit::{
    FitOptions, FitReport, fit_bgnbd, fit_bgnbd_weighted, fit_gamma_gamma,
    fit_gamma_gamma_weighted, fit_mbgnbd_weighted, fit_pareto_nbd_weighted, fit_purchase_model,
};
pub use gamma_gamma::GammaGammaParams;
pub use mbgnbd::MbgNbdParams;
pub use pareto_nbd::ParetoNbdParams;
pub use purchase::{ModelKind, PurchaseForecast, PurchaseModel};

/// Why a model computation or fit could not be carried out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// A model parameter is not a positive finite number (or violates a stated bound).
    #[error("parameter {name} = {value} is invalid: {reason}")]
    InvalidParameter {
        name: &'static str,
        value: f64,
        reason: &'static str,
    },
    /// A customer summary or argument is inconsistent (negative time, `t_x > T`, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The data cannot identify the model (too few customers, no repeat purchases, ...).
    #[error("insufficient data: {0}")]
    InsufficientData(String),
    /// The hypergeometric function could not be evaluated.
    #[error("2F1({a}, {b}; {c}; {z}) failed: {reason}")]
    Hypergeometric {
        a: f64,
        b: f64,
        c: f64,
        z: f64,
        reason: &'static str,
    },
}

/// Check that a named parameter is a positive, finite number.
pub(crate) fn positive(name: &'static str, value: f64) -> Result<f64, ModelError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(ModelError::InvalidParameter {
            name,
            value,
            reason: "must be positive and finite",
        })
    }
}

/// Check that a duration is finite and non-negative.
pub(crate) fn duration(name: &str, value: f64) -> Result<f64, ModelError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(ModelError::InvalidInput(format!(
            "{name} = {value} must be a finite, non-negative duration"
        )))
    }
}

/// The BG/NBD sufficient statistics `(x, t_x, T)` of one customer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CustomerSummary {
    x: u32,
    t_x: f64,
    age: f64,
}

impl CustomerSummary {
    /// `x` repeat purchases, the last one at `t_x` after the first purchase, observed `age`
    /// (`T`) after the first purchase. `t_x` is ignored (and may be 0) when `x = 0`.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] if a time is negative or not finite, or `t_x > T`.
    pub fn new(x: u32, t_x: f64, age: f64) -> Result<Self, ModelError> {
        let t_x = duration("t_x", t_x)?;
        let age = duration("T", age)?;
        if t_x > age {
            return Err(ModelError::InvalidInput(format!(
                "t_x = {t_x} is later than T = {age}"
            )));
        }
        Ok(Self { x, t_x, age })
    }

    /// A customer just acquired: no repeat purchase, `T = 0`.
    pub fn new_customer() -> Self {
        Self {
            x: 0,
            t_x: 0.0,
            age: 0.0,
        }
    }

    /// Number of repeat purchases `x`.
    pub fn x(&self) -> u32 {
        self.x
    }

    /// Time of the last purchase since the first, `t_x`.
    pub fn t_x(&self) -> f64 {
        self.t_x
    }

    /// Time from the first purchase to the observation time, `T`.
    pub fn age(&self) -> f64 {
        self.age
    }
}

/// The Gamma-Gamma sufficient statistics `(x, m_x)` of one customer: `x ≥ 1` repeat
/// transactions whose mean value is `m_x > 0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpendSummary {
    x: u32,
    mean_spend: f64,
}

impl SpendSummary {
    /// # Errors
    /// [`ModelError::InvalidInput`] if `x = 0` or `m_x` is not positive and finite.
    pub fn new(x: u32, mean_spend: f64) -> Result<Self, ModelError> {
        if x == 0 {
            return Err(ModelError::InvalidInput(
                "a spend summary needs at least one transaction (x ≥ 1)".to_owned(),
            ));
        }
        if !(mean_spend.is_finite() && mean_spend > 0.0) {
            return Err(ModelError::InvalidInput(format!(
                "mean spend m_x = {mean_spend} must be positive and finite"
            )));
        }
        Ok(Self { x, mean_spend })
    }

    /// Number of transactions `x` averaged into `m_x`.
    pub fn x(&self) -> u32 {
        self.x
    }

    /// Mean transaction value `m_x`.
    pub fn mean_spend(&self) -> f64 {
        self.mean_spend
    }
}

/// An observation with a non-negative weight, e.g. the number of customers sharing the same
/// summary (aggregated data) or a sampling weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weighted<S> {
    pub value: S,
    pub weight: f64,
}
