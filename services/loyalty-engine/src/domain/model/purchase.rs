//! One interface over the three purchase models, so that churn scoring, CLV, the export and
//! the store do not care which one was chosen.

use std::fmt;
use std::str::FromStr;

use super::bgnbd::BgNbdParams;
use super::mbgnbd::MbgNbdParams;
use super::pareto_nbd::ParetoNbdParams;
use super::{CustomerSummary, ModelError};

/// Which purchase model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ModelKind {
    BgNbd,
    ParetoNbd,
    MbgNbd,
}

impl ModelKind {
    /// Every model, in the order they are fitted and reported.
    pub const ALL: [ModelKind; 3] = [ModelKind::BgNbd, ModelKind::ParetoNbd, ModelKind::MbgNbd];

    /// The name used on the command line, in the store, the export and the churn events.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::BgNbd => "bgnbd",
            ModelKind::ParetoNbd => "pareto-nbd",
            ModelKind::MbgNbd => "mbgnbd",
        }
    }

    /// The names of the four parameters, in the order of [`PurchaseModel::params`].
    pub fn param_names(self) -> [&'static str; 4] {
        match self {
            ModelKind::BgNbd | ModelKind::MbgNbd => ["r", "alpha", "a", "b"],
            ModelKind::ParetoNbd => ["r", "alpha", "s", "beta"],
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ModelKind {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                ModelError::InvalidInput(format!(
                    "unknown purchase model {s:?} (one of bgnbd, pareto-nbd, mbgnbd)"
                ))
            })
    }
}

/// Fitted parameters of one of the purchase models.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PurchaseModel {
    BgNbd(BgNbdParams),
    ParetoNbd(ParetoNbdParams),
    MbgNbd(MbgNbdParams),
}

impl From<BgNbdParams> for PurchaseModel {
    fn from(p: BgNbdParams) -> Self {
        PurchaseModel::BgNbd(p)
    }
}

impl From<ParetoNbdParams> for PurchaseModel {
    fn from(p: ParetoNbdParams) -> Self {
        PurchaseModel::ParetoNbd(p)
    }
}

impl From<MbgNbdParams> for PurchaseModel {
    fn from(p: MbgNbdParams) -> Self {
        PurchaseModel::MbgNbd(p)
    }
}

impl PurchaseModel {
    /// The model of `kind` with the four parameters in [`ModelKind::param_names`] order.
    ///
    /// # Errors
    /// [`ModelError::InvalidParameter`] unless all are positive and finite.
    pub fn new(kind: ModelKind, p: [f64; 4]) -> Result<Self, ModelError> {
        Ok(match kind {
            ModelKind::BgNbd => BgNbdParams::new(p[0], p[1], p[2], p[3])?.into(),
            ModelKind::ParetoNbd => ParetoNbdParams::new(p[0], p[1], p[2], p[3])?.into(),
            ModelKind::MbgNbd => MbgNbdParams::new(p[0], p[1], p[2], p[3])?.into(),
        })
    }

    pub fn kind(&self) -> ModelKind {
        match self {
            PurchaseModel::BgNbd(_) => ModelKind::BgNbd,
            PurchaseModel::ParetoNbd(_) => ModelKind::ParetoNbd,
            PurchaseModel::MbgNbd(_) => ModelKind::MbgNbd,
        }
    }

    /// The four parameters, named by [`ModelKind::param_names`].
    pub fn params(&self) -> [f64; 4] {
        match self {
            PurchaseModel::BgNbd(p) => [p.r(), p.alpha(), p.a(), p.b()],
            PurchaseModel::ParetoNbd(p) => [p.r(), p.alpha(), p.s(), p.beta()],
            PurchaseModel::MbgNbd(p) => [p.r(), p.alpha(), p.a(), p.b()],
        }
    }

    /// Log-likelihood of one customer's `(x, t_x, T)`.
    ///
    /// # Errors
    /// Pareto/NBD: [`ModelError::Hypergeometric`] if its `₂F₁` cannot be summed.
    pub fn log_likelihood(&self, customer: &CustomerSummary) -> Result<f64, ModelError> {
        match self {
            PurchaseModel::BgNbd(p) => Ok(p.log_likelihood(customer)),
            PurchaseModel::ParetoNbd(p) => p.log_likelihood(customer),
            PurchaseModel::MbgNbd(p) => Ok(p.log_likelihood(customer)),
        }
    }

    /// Probability that the customer is alive at `T`.
    ///
    /// # Errors
    /// As for [`Self::log_likelihood`].
    pub fn p_alive(&self, customer: &CustomerSummary) -> Result<f64, ModelError> {
        match self {
            PurchaseModel::BgNbd(p) => Ok(p.p_alive(customer)),
            PurchaseModel::ParetoNbd(p) => p.p_alive(customer),
            PurchaseModel::MbgNbd(p) => Ok(p.p_alive(customer)),
        }
    }

    /// Whether `P(alive)` says anything for a customer without repeat purchases: BG/NBD puts it
    /// at 1 by construction, the other two models do not.
    pub fn p_alive_without_repeat(&self) -> bool {
        !matches!(self, PurchaseModel::BgNbd(_))
    }

    /// Expected repeat purchases in `(0, t]` of a customer just acquired.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] for a bad `t`; [`ModelError::Hypergeometric`].
    pub fn expected_purchases(&self, t: f64) -> Result<f64, ModelError> {
        match self {
            PurchaseModel::BgNbd(p) => p.expected_purchases(t),
            PurchaseModel::ParetoNbd(p) => p.expected_purchases(t),
            PurchaseModel::MbgNbd(p) => p.expected_purchases(t),
        }
    }
}

/// Expected purchases in `(T, T+t]` given a customer's history: what CLV needs of a model.
pub trait PurchaseForecast {
    /// # Errors
    /// [`ModelError::InvalidInput`] for a bad `t`; [`ModelError::Hypergeometric`].
    fn expected_purchases_conditional(
        &self,
        t: f64,
        customer: &CustomerSummary,
    ) -> Result<f64, ModelError>;
}

impl PurchaseForecast for PurchaseModel {
    fn expected_purchases_conditional(
        &self,
        t: f64,
        customer: &CustomerSummary,
    ) -> Result<f64, ModelError> {
        match self {
            PurchaseModel::BgNbd(p) => p.expected_purchases_conditional(t, customer),
            PurchaseModel::ParetoNbd(p) => p.expected_purchases_conditional(t, customer),
            PurchaseModel::MbgNbd(p) => p.expected_purchases_conditional(t, customer),
        }
    }
}

impl PurchaseForecast for BgNbdParams {
    fn expected_purchases_conditional(
        &self,
        t: f64,
        customer: &CustomerSummary,
    ) -> Result<f64, ModelError> {
        BgNbdParams::expected_purchases_conditional(self, t, customer)
    }
}
