//! Maximum-likelihood fitting of [`BgNbdParams`], [`MbgNbdParams`] (same coordinates),
//! [`ParetoNbdParams`] (see [`fit_pareto_nbd_weighted`]) and [`GammaGammaParams`].
//!
//! The mean log-likelihood per (weighted) customer is maximised with the Nelder-Mead simplex
//! method of the [`argmin`] crate over unconstrained coordinates (logarithms, a logit), which
//! keep the parameters in range without constraints; gradients of eq. (6) are awkward and not
//! needed. Gamma-Gamma uses `ln p, ln q, ln γ`. BG/NBD uses the means and the concentrations
//! of its two mixing distributions:
//!
//! | coordinate      | meaning                                            |
//! |-----------------|----------------------------------------------------|
//! | `ln r`          | shape (concentration) of the purchase-rate Gamma   |
//! | `ln(r/α)`       | mean purchase rate                                 |
//! | `logit a/(a+b)` | mean dropout probability                           |
//! | `ln(a+b)`       | concentration of the dropout Beta                  |
//!
//! Before fitting, times are divided by the weighted mean age `T̄` (BG/NBD) and spends by the
//! weighted mean `m_x` (Gamma-Gamma), so that the problem is the same whatever the time or
//! currency unit; `α` and `γ` are scaled back afterwards and the reported log-likelihood is
//! computed on the original data.
//!
//! # The boundary: everyone alike
//! When every customer has (nearly) the same dropout probability `p`, the likelihood keeps
//! increasing as `a + b → ∞` at fixed `a/(a+b)`: the maximum is the point mass `Beta(a, b) →
//! δ(a/(a+b))`, on the boundary of the parameter space, and no finite `(a, b)` attains it. The
//! same holds for `r → ∞` at fixed `r/α` when everyone buys at the same rate `λ`. In the
//! coordinates above this is a single coordinate running off while the others settle, so
//! `r` and `a + b` are capped at [`FitOptions::max_concentration`] (`10⁸` by default: a Beta
//! with `a + b = 10⁸` has a relative spread of `10⁻⁴/√(a/(a+b))`; at `10⁶` a population of
//! frequent buyers with `a/(a+b) ≈ 0.004` still gained `10⁻⁶` per customer from a higher
//! cap). The cap is a boundary solution, and the fit reports it as converged ("converged at
//! the boundary: the dropout probability is the same for every customer (a+b capped at 1e8;
//! a/(a+b) = 0.00434) …"), when:
//! - the cap fits as well as the best value below it, to within `BOUNDARY_TOLERANCE`
//!   (`10⁻⁶`) in mean log-likelihood per customer (an optimum below the cap but that close to
//!   it is moved to the cap and the other coordinates re-optimised: the data cannot tell it
//!   from a point mass, and the reason says how much better it fitted); and
//! - raising the cap up to `RAISE_CAP` (100) times gains less than `BOUNDARY_TOLERANCE`
//!   per customer; otherwise the cap is too low for the data and the fit is not converged.
//!
//! The likelihood itself is evaluated so that it stays accurate for huge `r, α, a, b` (see
//! [`BgNbdParams::log_likelihood`]), and so are `P(alive)` and the expectations used with the
//! stored parameters.
//!
//! # When is a fit `converged`?
//! All of the following must hold, otherwise [`FitReport::converged`] is `false` and
//! [`FitReport::reason`] says which failed:
//! 1. every Nelder-Mead run stopped because the spread of the simplex's objective values fell
//!    below [`FitOptions::tolerance`] (not because it hit [`FitOptions::max_iterations`]);
//! 2. a restart from the optimum with a fresh simplex improved the mean log-likelihood by no
//!    more than [`FitOptions::tolerance`] (within [`FitOptions::max_restarts`] restarts);
//! 3. the log-likelihood is finite;
//! 4. every (unit-free, rescaled) coordinate not held at its cap lies in `[1e-6, 1e6]` once
//!    exponentiated (for the logit, the odds `a/b`) — a parameter that runs off towards 0 or
//!    ∞ is one the data do not identify;
//! 5. the numerical Hessian of the mean log-likelihood over the coordinates not held at a cap
//!    is negative definite (a strict local maximum, not a ridge or plateau);
//! 6. for a coordinate held at its cap, the two boundary conditions above.
//!
//! Input that cannot identify the model at all (no customers, total weight below
//! [`MIN_CUSTOMERS`], no repeat purchase at all) is an error instead.

use argmin::core::{CostFunction, Executor, State, TerminationReason};
use argmin::solver::neldermead::NelderMead;

use super::bgnbd::BgNbdParams;
use super::gamma_gamma::GammaGammaParams;
use super::mbgnbd::MbgNbdParams;
use super::pareto_nbd::ParetoNbdParams;
use super::purchase::{ModelKind, PurchaseModel};
use super::{CustomerSummary, ModelError, SpendSummary, Weighted};

mod hessian;
mod likelihood;
mod optimiser;
#[cfg(test)]
mod tests;

use hessian::*;
use likelihood::*;
use optimiser::*;

/// Smallest total weight (number of customers) accepted by the fitting functions.
pub const MIN_CUSTOMERS: f64 = 10.0;

/// Sane range for a unit-free parameter (after rescaling time or spend).
const PARAM_RANGE: (f64, f64) = (1e-6, 1e6);

/// Side of the initial simplex in log-parameter space, first run and restarts.
const FIRST_STEP: f64 = 0.5;
const RESTART_STEP: f64 = 0.1;

/// Finite-difference step (log space) and curvature floor for the Hessian check. The floor is
/// far above the rounding noise of the differences (~1e-9) and far below the per-customer
/// information of an identified parameter.
const HESSIAN_STEP: f64 = 1e-3;
const HESSIAN_FLOOR: f64 = 1e-6;

/// A capped parameter is at the boundary when its cap fits as well as the best value below
/// it, and raising the cap [`RAISE_CAP`] times gains no more than this, in mean log-likelihood
/// per customer: the data cannot tell the cap from a point-mass distribution.
const BOUNDARY_TOLERANCE: f64 = 1e-6;
const RAISE_CAP: f64 = 100.0;
/// Points of the log grid from the cap to [`RAISE_CAP`] times it.
const RAISE_STEPS: u32 = 8;

/// Knobs of the optimiser. The defaults suit populations from hundreds to millions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitOptions {
    /// Iteration limit of each Nelder-Mead run.
    pub max_iterations: u64,
    /// How many times the simplex is rebuilt around the current optimum.
    pub max_restarts: u32,
    /// Convergence tolerance on the mean log-likelihood per customer.
    pub tolerance: f64,
    /// Cap on the BG/NBD concentrations: the shape `r` of the purchase-rate distribution and
    /// `a + b` of the dropout distribution. At the cap the distribution is, for the data,
    /// a point mass (everyone has the same rate, or the same dropout probability); see the
    /// [module docs](self).
    pub max_concentration: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            max_iterations: 5_000,
            max_restarts: 5,
            tolerance: 1e-10,
            max_concentration: 1e8,
        }
    }
}

/// The outcome of a maximum-likelihood fit.
#[derive(Debug, Clone, PartialEq)]
pub struct FitReport<P> {
    /// The best parameters found (in the caller's units), whether or not the fit converged.
    pub params: P,
    /// Total (weighted) log-likelihood of the data at `params`.
    pub log_likelihood: f64,
    /// Nelder-Mead iterations over all runs.
    pub iterations: u64,
    /// Whether every convergence criterion of the [module docs](self) holds.
    pub converged: bool,
    /// What happened, in words (the failed criterion when not converged).
    pub reason: String,
    /// Total weight of the customers used (their number for unweighted data).
    pub customers: f64,
}

/// Fit BG/NBD to unweighted customers. See [`fit_bgnbd_weighted`].
///
/// # Errors
/// As for [`fit_bgnbd_weighted`].
pub fn fit_bgnbd(
    customers: &[CustomerSummary],
    options: &FitOptions,
) -> Result<FitReport<BgNbdParams>, ModelError> {
    fit_bgnbd_weighted(&unit_weights(customers), options)
}

/// Fit BG/NBD `(r, α, a, b)` by maximum likelihood (eq. 6 summed with weights).
///
/// # Errors
/// [`ModelError::InvalidInput`] for a negative or non-finite weight;
/// [`ModelError::InsufficientData`] if the total weight is below [`MIN_CUSTOMERS`], nobody made
/// a repeat purchase, or every customer has `T = 0`.
pub fn fit_bgnbd_weighted(
    customers: &[Weighted<CustomerSummary>],
    options: &FitOptions,
) -> Result<FitReport<BgNbdParams>, ModelError> {
    let prepared = Prepared::new(customers, options)?;
    let mean_ll = |theta: &[f64]| bgnbd_mean_ll(theta, &prepared.data, prepared.total);
    let outcome = prepared.maximise_bg_like(&mean_ll, options);
    let [r, alpha, a, b] = bgnbd_natural(&outcome.theta);
    let params = BgNbdParams::new(r, alpha * prepared.scale, a, b)?;
    let log_likelihood = customers
        .iter()
        .map(|c| c.weight * params.log_likelihood(&c.value))
        .sum();
    Ok(prepared.report_bg_like(outcome, params, log_likelihood))
}

/// Fit MBG/NBD `(r, α, a, b)` by maximum likelihood, in the same coordinates, with the same
/// caps and checks as BG/NBD ([`fit_bgnbd_weighted`]).
///
/// # Errors
/// As for [`fit_bgnbd_weighted`].
pub fn fit_mbgnbd_weighted(
    customers: &[Weighted<CustomerSummary>],
    options: &FitOptions,
) -> Result<FitReport<MbgNbdParams>, ModelError> {
    let prepared = Prepared::new(customers, options)?;
    let mean_ll = |theta: &[f64]| mbgnbd_mean_ll(theta, &prepared.data, prepared.total);
    let outcome = prepared.maximise_bg_like(&mean_ll, options);
    let [r, alpha, a, b] = bgnbd_natural(&outcome.theta);
    let params = MbgNbdParams::new(r, alpha * prepared.scale, a, b)?;
    let log_likelihood = customers
        .iter()
        .map(|c| c.weight * params.log_likelihood(&c.value))
        .sum();
    Ok(prepared.report_bg_like(outcome, params, log_likelihood))
}

/// Fit Pareto/NBD `(r, α, s, β)` by maximum likelihood over the coordinates `ln r`, `ln(r/α)`
/// (mean purchase rate), `ln s` and `ln(s/β)` (mean dropout rate), `r` and `s` capped at
/// [`FitOptions::max_concentration`] as for BG/NBD.
///
/// # Errors
/// As for [`fit_bgnbd_weighted`]; [`ModelError::Hypergeometric`] if the log-likelihood at the
/// optimum cannot be evaluated.
pub fn fit_pareto_nbd_weighted(
    customers: &[Weighted<CustomerSummary>],
    options: &FitOptions,
) -> Result<FitReport<ParetoNbdParams>, ModelError> {
    let prepared = Prepared::new(customers, options)?;
    let (total, scale, cap) = (prepared.total, prepared.scale, prepared.cap);
    let mean_ll = |theta: &[f64]| pareto_mean_ll(theta, &prepared.data, total);
    // r = 1, s = 1, the observed repeat-purchase rate, and one dropout per mean age.
    let start = vec![0.0, prepared.rate.ln(), 0.0, 0.0];
    let caps = [
        Cap {
            coordinate: 0,
            value: cap,
            name: "r",
        },
        Cap {
            coordinate: 2,
            value: cap,
            name: "s",
        },
    ];
    let outcome = maximise(&mean_ll, start, &caps, total, options);
    let [r, alpha, s, beta] = pareto_natural(&outcome.theta);
    let params = ParetoNbdParams::new(r, alpha * scale, s, beta * scale)?;
    let mut log_likelihood = 0.0;
    for c in customers {
        log_likelihood += c.weight * params.log_likelihood(&c.value)?;
    }
    let describe = |coordinate: usize, theta: &[f64]| {
        if coordinate == 0 {
            format!(
                "the purchase rate is the same for every customer (r capped at {cap:e}; r/α = {} \
                 purchases per time unit)",
                significant(theta[1].exp() / scale)
            )
        } else {
            format!(
                "the dropout rate is the same for every customer (s capped at {cap:e}; s/β = {} \
                 per time unit)",
                significant(theta[3].exp() / scale)
            )
        }
    };
    Ok(outcome.report(
        params,
        log_likelihood,
        &["r", "r·T̄/α", "s", "s·T̄/β"],
        total,
        &describe,
    ))
}

/// Fit the purchase model of `kind`. See [`fit_bgnbd_weighted`], [`fit_pareto_nbd_weighted`]
/// and [`fit_mbgnbd_weighted`].
///
/// # Errors
/// As for those.
pub fn fit_purchase_model(
    kind: ModelKind,
    customers: &[Weighted<CustomerSummary>],
    options: &FitOptions,
) -> Result<FitReport<PurchaseModel>, ModelError> {
    fn erase<P: Into<PurchaseModel>>(r: FitReport<P>) -> FitReport<PurchaseModel> {
        FitReport {
            params: r.params.into(),
            log_likelihood: r.log_likelihood,
            iterations: r.iterations,
            converged: r.converged,
            reason: r.reason,
            customers: r.customers,
        }
    }
    Ok(match kind {
        ModelKind::BgNbd => erase(fit_bgnbd_weighted(customers, options)?),
        ModelKind::ParetoNbd => erase(fit_pareto_nbd_weighted(customers, options)?),
        ModelKind::MbgNbd => erase(fit_mbgnbd_weighted(customers, options)?),
    })
}

/// What every purchase-model fit does first: validate, rescale time by the weighted mean age
/// `T̄`, group by `x`.
struct Prepared {
    total: f64,
    scale: f64,
    /// Repeat purchases per customer per rescaled time unit.
    rate: f64,
    cap: f64,
    data: GroupedByX<CustomerSummary>,
}

impl Prepared {
    fn new(
        customers: &[Weighted<CustomerSummary>],
        options: &FitOptions,
    ) -> Result<Self, ModelError> {
        let cap = options.max_concentration;
        if !(cap.is_finite() && cap > 1.0) {
            return Err(ModelError::InvalidParameter {
                name: "max_concentration",
                value: cap,
                reason: "must be finite and above 1",
            });
        }
        let total = total_weight(customers)?;
        let repeat: f64 = customers
            .iter()
            .map(|c| c.weight * f64::from(c.value.x()))
            .sum();
        if repeat <= 0.0 {
            return Err(ModelError::InsufficientData(
                "no customer made a repeat purchase: purchase rates and dropout are not identified"
                    .to_owned(),
            ));
        }
        let scale = customers
            .iter()
            .map(|c| c.weight * c.value.age())
            .sum::<f64>()
            / total;
        if scale <= 0.0 {
            return Err(ModelError::InsufficientData(
                "every customer has T = 0: nothing has been observed yet".to_owned(),
            ));
        }
        let data = GroupedByX::new(customers, |s| s.x(), |s| rescale_times(s, scale))?;
        Ok(Self {
            total,
            scale,
            rate: repeat / (scale * total),
            cap,
            data,
        })
    }

    /// BG/NBD and MBG/NBD: start at r = 1, a = b = 1 (mean dropout ½, a + b = 2) and the
    /// observed repeat-purchase rate as the mean purchase rate r/α; cap r and a + b.
    fn maximise_bg_like(&self, mean_ll: &dyn Fn(&[f64]) -> f64, options: &FitOptions) -> Outcome {
        let start = vec![0.0, self.rate.ln(), 0.0, 2.0_f64.ln()];
        let caps = [
            Cap {
                coordinate: SHAPE,
                value: self.cap,
                name: "r",
            },
            Cap {
                coordinate: CONCENTRATION,
                value: self.cap,
                name: "a+b",
            },
        ];
        maximise(mean_ll, start, &caps, self.total, options)
    }

    fn report_bg_like<P>(&self, outcome: Outcome, params: P, log_likelihood: f64) -> FitReport<P> {
        let (cap, scale) = (self.cap, self.scale);
        let describe = |coordinate: usize, theta: &[f64]| {
            if coordinate == SHAPE {
                format!(
                    "the purchase rate is the same for every customer (r capped at {cap:e}; r/α = {} \
                     purchases per time unit)",
                    significant(theta[MEAN_RATE].exp() / scale)
                )
            } else {
                format!(
                    "the dropout probability is the same for every customer (a+b capped at {cap:e}; \
                     a/(a+b) = {})",
                    significant(ln_sigmoid(theta[MEAN_DROPOUT]).exp())
                )
            }
        };
        outcome.report(
            params,
            log_likelihood,
            &["r", "r·T̄/α", "a/b", "a+b"],
            self.total,
            &describe,
        )
    }
}

/// Fit Gamma-Gamma to unweighted customers. See [`fit_gamma_gamma_weighted`].
///
/// # Errors
/// As for [`fit_gamma_gamma_weighted`].
pub fn fit_gamma_gamma(
    customers: &[SpendSummary],
    options: &FitOptions,
) -> Result<FitReport<GammaGammaParams>, ModelError> {
    fit_gamma_gamma_weighted(&unit_weights(customers), options)
}

/// Fit Gamma-Gamma `(p, q, γ)` by maximum likelihood over customers with `x ≥ 1` (which
/// [`SpendSummary`] guarantees).
///
/// # Errors
/// [`ModelError::InvalidInput`] for a negative or non-finite weight;
/// [`ModelError::InsufficientData`] if the total weight is below [`MIN_CUSTOMERS`].
pub fn fit_gamma_gamma_weighted(
    customers: &[Weighted<SpendSummary>],
    options: &FitOptions,
) -> Result<FitReport<GammaGammaParams>, ModelError> {
    let total = total_weight(customers)?;
    let scale = customers
        .iter()
        .map(|c| c.weight * c.value.mean_spend())
        .sum::<f64>()
        / total;
    let data = GroupedByX::new(
        customers,
        |s| s.x(),
        |s| SpendSummary::new(s.x(), s.mean_spend() / scale),
    )?;
    let mean_ll = |theta: &[f64]| gamma_gamma_mean_ll(theta, &data, total);
    // Start at p = 1, q = 2, γ = 1: population mean pγ/(q−1) equal to the (rescaled) mean.
    let start = vec![0.0, 2.0_f64.ln(), 0.0];
    let outcome = maximise(&mean_ll, start, &[], total, options);
    let [p, q, gamma] = unlog(&outcome.theta);
    let params = GammaGammaParams::new(p, q, gamma * scale)?;
    let log_likelihood = customers
        .iter()
        .map(|c| c.weight * params.log_likelihood(&c.value))
        .sum();
    Ok(outcome.report(
        params,
        log_likelihood,
        &["p", "q", "gamma/m̄"],
        total,
        &|_, _| String::new(),
    ))
}

fn unit_weights<S: Copy>(items: &[S]) -> Vec<Weighted<S>> {
    items
        .iter()
        .map(|&value| Weighted { value, weight: 1.0 })
        .collect()
}

/// Validate the weights and return their sum.
fn total_weight<S>(customers: &[Weighted<S>]) -> Result<f64, ModelError> {
    if let Some(bad) = customers
        .iter()
        .find(|c| !(c.weight.is_finite() && c.weight >= 0.0))
    {
        return Err(ModelError::InvalidInput(format!(
            "weight {} must be finite and non-negative",
            bad.weight
        )));
    }
    let total: f64 = customers.iter().map(|c| c.weight).sum();
    if total < MIN_CUSTOMERS {
        return Err(ModelError::InsufficientData(format!(
            "total weight {total} is below the minimum of {MIN_CUSTOMERS} customers"
        )));
    }
    Ok(total)
}

fn rescale_times(s: &CustomerSummary, scale: f64) -> Result<CustomerSummary, ModelError> {
    CustomerSummary::new(s.x(), s.t_x() / scale, s.age() / scale)
}

fn unlog<const N: usize>(theta: &[f64]) -> [f64; N] {
    std::array::from_fn(|i| theta.get(i).map_or(f64::NAN, |v| v.exp()))
}
