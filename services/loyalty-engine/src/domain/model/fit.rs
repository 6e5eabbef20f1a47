//! Maximum-likelihood fitting of [`BgNbdParams`] and [`GammaGammaParams`].
//!
//! The mean log-likelihood per (weighted) customer is maximised with the Nelder-Mead simplex
//! method of the [`argmin`] crate over the **logarithms** of the parameters, which keeps them
//! positive without constraints; gradients of eq. (6) are awkward and not needed.
//!
//! Before fitting, times are divided by the weighted mean age `T̄` (BG/NBD) and spends by the
//! weighted mean `m_x` (Gamma-Gamma), so that the problem is the same whatever the time or
//! currency unit; `α` and `γ` are scaled back afterwards and the reported log-likelihood is
//! computed on the original data.
//!
//! # When is a fit `converged`?
//! All of the following must hold, otherwise [`FitReport::converged`] is `false` and
//! [`FitReport::reason`] says which failed:
//! 1. every Nelder-Mead run stopped because the spread of the simplex's objective values fell
//!    below [`FitOptions::tolerance`] (not because it hit [`FitOptions::max_iterations`]);
//! 2. a restart from the optimum with a fresh simplex improved the mean log-likelihood by no
//!    more than [`FitOptions::tolerance`] (within [`FitOptions::max_restarts`] restarts);
//! 3. the log-likelihood is finite;
//! 4. every (unit-free, rescaled) parameter lies in `[1e-6, 1e6]` — a parameter that runs off
//!    towards 0 or ∞ is one the data do not identify;
//! 5. the numerical Hessian of the mean log-likelihood in log-parameter space is negative
//!    definite (a strict local maximum, not a ridge or plateau).
//!
//! Input that cannot identify the model at all (no customers, total weight below
//! [`MIN_CUSTOMERS`], no repeat purchase at all) is an error instead.

use argmin::core::{CostFunction, Executor, State, TerminationReason};
use argmin::solver::neldermead::NelderMead;

use super::bgnbd::BgNbdParams;
use super::gamma_gamma::GammaGammaParams;
use super::{CustomerSummary, ModelError, SpendSummary, Weighted};

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

/// Knobs of the optimiser. The defaults suit populations from hundreds to millions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitOptions {
    /// Iteration limit of each Nelder-Mead run.
    pub max_iterations: u64,
    /// How many times the simplex is rebuilt around the current optimum.
    pub max_restarts: u32,
    /// Convergence tolerance on the mean log-likelihood per customer.
    pub tolerance: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            max_iterations: 5_000,
            max_restarts: 5,
            tolerance: 1e-10,
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
    let mean_ll = |theta: &[f64]| bgnbd_mean_ll(theta, &data, total);
    // Start at r = 1, a = b = 1 and α matching the observed repeat-purchase rate (r/α = rate).
    let rate = repeat / (scale * total);
    let start = vec![0.0, (1.0 / rate).ln(), 0.0, 0.0];
    let outcome = maximise(&mean_ll, start, total, options);
    let [r, alpha, a, b] = unlog(&outcome.theta);
    let params = BgNbdParams::new(r, alpha * scale, a, b)?;
    let log_likelihood = customers
        .iter()
        .map(|c| c.weight * params.log_likelihood(&c.value))
        .sum();
    Ok(outcome.report(params, log_likelihood, &["r", "alpha/T̄", "a", "b"], total))
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
    let outcome = maximise(&mean_ll, start, total, options);
    let [p, q, gamma] = unlog(&outcome.theta);
    let params = GammaGammaParams::new(p, q, gamma * scale)?;
    let log_likelihood = customers
        .iter()
        .map(|c| c.weight * params.log_likelihood(&c.value))
        .sum();
    Ok(outcome.report(params, log_likelihood, &["p", "q", "gamma/m̄"], total))
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

/// Rescaled observations grouped by `x`, so that the `x`-only terms of a likelihood (the
/// `ln Γ` calls) are computed once per distinct `x` per evaluation.
#[derive(Debug)]
struct GroupedByX<S> {
    xs: Vec<u32>,
    rows: Vec<(usize, S, f64)>,
}

impl<S> GroupedByX<S> {
    fn new<T>(
        customers: &[Weighted<T>],
        x_of: impl Fn(&T) -> u32,
        rescale: impl Fn(&T) -> Result<S, ModelError>,
    ) -> Result<Self, ModelError> {
        let mut xs: Vec<u32> = customers.iter().map(|c| x_of(&c.value)).collect();
        xs.sort_unstable();
        xs.dedup();
        let rows = customers
            .iter()
            .filter(|c| c.weight > 0.0)
            .map(|c| {
                let group = xs.binary_search(&x_of(&c.value)).unwrap_or_default();
                Ok((group, rescale(&c.value)?, c.weight))
            })
            .collect::<Result<_, ModelError>>()?;
        Ok(Self { xs, rows })
    }
}

fn bgnbd_mean_ll(theta: &[f64], data: &GroupedByX<CustomerSummary>, total: f64) -> f64 {
    let [r, alpha, a, b] = unlog(theta);
    let Ok(params) = BgNbdParams::new(r, alpha, a, b) else {
        return f64::NEG_INFINITY;
    };
    let terms: Vec<_> = data.xs.iter().map(|&x| params.x_terms(x)).collect();
    let sum: f64 = data
        .rows
        .iter()
        .map(|(g, s, w)| w * params.log_likelihood_with(&terms[*g], s))
        .sum();
    sum / total
}

fn gamma_gamma_mean_ll(theta: &[f64], data: &GroupedByX<SpendSummary>, total: f64) -> f64 {
    let [p, q, gamma] = unlog(theta);
    let Ok(params) = GammaGammaParams::new(p, q, gamma) else {
        return f64::NEG_INFINITY;
    };
    let terms: Vec<_> = data.xs.iter().map(|&x| params.x_terms(x)).collect();
    let sum: f64 = data
        .rows
        .iter()
        .map(|(g, s, w)| w * params.log_likelihood_with(&terms[*g], s))
        .sum();
    sum / total
}

/// The negated objective as an argmin cost; non-finite values become `+∞` so that the simplex
/// moves away from them.
struct Cost<'a> {
    mean_ll: &'a dyn Fn(&[f64]) -> f64,
}

impl CostFunction for Cost<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, theta: &Self::Param) -> Result<f64, argmin::core::Error> {
        let value = -(self.mean_ll)(theta);
        Ok(if value.is_finite() {
            value
        } else {
            f64::INFINITY
        })
    }
}

/// Where the optimiser ended and whether it may be trusted.
#[derive(Debug)]
struct Outcome {
    theta: Vec<f64>,
    iterations: u64,
    evaluations: u64,
    /// `Err(reason)` if a criterion failed; `Ok(details)` otherwise.
    verdict: Result<String, String>,
}

impl Outcome {
    fn report<P>(self, params: P, log_likelihood: f64, names: &[&str], total: f64) -> FitReport<P> {
        let verdict = self.verdict.and_then(|details| {
            if !log_likelihood.is_finite() {
                return Err(format!("log-likelihood is not finite ({log_likelihood})"));
            }
            check_range(&self.theta, names)?;
            Ok(details)
        });
        let (converged, what) = match verdict {
            Ok(details) => (true, format!("converged: {details}")),
            Err(failure) => (false, format!("not converged: {failure}")),
        };
        FitReport {
            params,
            log_likelihood,
            iterations: self.iterations,
            converged,
            reason: format!(
                "{what} ({} iterations, {} evaluations)",
                self.iterations, self.evaluations
            ),
            customers: total,
        }
    }
}

fn check_range(theta: &[f64], names: &[&str]) -> Result<(), String> {
    let (lo, hi) = PARAM_RANGE;
    for (value, name) in theta.iter().map(|t| t.exp()).zip(names) {
        if !(lo..=hi).contains(&value) {
            return Err(format!(
                "{name} = {value:e} left the range [{lo:e}, {hi:e}]: the data do not identify it"
            ));
        }
    }
    Ok(())
}

/// One Nelder-Mead run from `start` with a simplex of side `step`.
#[derive(Debug)]
struct Run {
    theta: Vec<f64>,
    value: f64,
    iterations: u64,
    evaluations: u64,
    converged: bool,
    stop: String,
}

fn nelder_mead(
    mean_ll: &dyn Fn(&[f64]) -> f64,
    start: &[f64],
    step: f64,
    options: &FitOptions,
) -> Result<Run, String> {
    let mut simplex = vec![start.to_vec()];
    for i in 0..start.len() {
        let mut vertex = start.to_vec();
        vertex[i] += step;
        simplex.push(vertex);
    }
    let solver = NelderMead::new(simplex)
        .with_sd_tolerance(options.tolerance)
        .map_err(|e| e.to_string())?;
    let result = Executor::new(Cost { mean_ll }, solver)
        .configure(|state| state.max_iters(options.max_iterations).counting(true))
        .run()
        .map_err(|e| format!("optimiser failed: {e}"))?;
    let state = result.state();
    let theta = state
        .get_best_param()
        .cloned()
        .ok_or("optimiser returned no parameters")?;
    let reason = state.get_termination_reason();
    Ok(Run {
        value: -state.get_best_cost(),
        iterations: state.get_iter(),
        evaluations: state
            .get_func_counts()
            .get("cost_count")
            .copied()
            .unwrap_or(0),
        converged: matches!(reason, Some(TerminationReason::SolverConverged)),
        stop: reason.map_or_else(|| "unknown".to_owned(), |r| r.text().to_owned()),
        theta,
    })
}

/// Maximise `mean_ll` from `start`: Nelder-Mead, then restarts from the optimum until a restart
/// no longer improves it, then the Hessian check.
fn maximise(
    mean_ll: &dyn Fn(&[f64]) -> f64,
    start: Vec<f64>,
    total: f64,
    options: &FitOptions,
) -> Outcome {
    let mut outcome = Outcome {
        theta: start,
        iterations: 0,
        evaluations: 0,
        verdict: Err("no optimiser run".to_owned()),
    };
    let mut best = f64::NEG_INFINITY;
    for round in 0..=options.max_restarts {
        let step = if round == 0 { FIRST_STEP } else { RESTART_STEP };
        let run = match nelder_mead(mean_ll, &outcome.theta, step, options) {
            Ok(run) => run,
            Err(failure) => {
                outcome.verdict = Err(failure);
                return outcome;
            }
        };
        outcome.iterations += run.iterations;
        outcome.evaluations += run.evaluations;
        let improvement = run.value - best;
        outcome.theta = run.theta;
        best = run.value;
        if !run.converged {
            outcome.verdict = Err(format!(
                "Nelder-Mead stopped without converging: {}",
                run.stop
            ));
            return outcome;
        }
        if round > 0 && improvement <= options.tolerance {
            outcome.verdict = hessian_check(mean_ll, &outcome.theta).map(|curvature| {
                format!(
                    "simplex converged, restart {round} improved the mean log-likelihood by \
                     {improvement:.1e}, Hessian negative definite (smallest pivot {curvature:.2e} \
                     per customer, {:.2e} in total)",
                    curvature * total
                )
            });
            return outcome;
        }
    }
    outcome.verdict = Err(format!(
        "still improving after {} restarts (increase max_restarts)",
        options.max_restarts
    ));
    outcome
}

/// Check that `mean_ll` has a strict local maximum at `theta`: Gaussian elimination of
/// the negated finite-difference Hessian must give pivots above [`HESSIAN_FLOOR`].
/// Returns the smallest pivot.
fn hessian_check(mean_ll: &dyn Fn(&[f64]) -> f64, theta: &[f64]) -> Result<f64, String> {
    let h = negated_hessian(mean_ll, theta);
    if h.iter().flatten().any(|v| !v.is_finite()) {
        return Err("the Hessian at the optimum is not finite".to_owned());
    }
    min_elimination_pivot(h).ok_or_else(|| {
        "the Hessian at the optimum is not negative definite: the likelihood is flat or a \
         ridge in some direction, so the parameters are not identified"
            .to_owned()
    })
}

fn negated_hessian(f: &dyn Fn(&[f64]) -> f64, theta: &[f64]) -> Vec<Vec<f64>> {
    let at = |moves: &[(usize, f64)]| {
        let mut p = theta.to_vec();
        for &(i, sign) in moves {
            p[i] += sign * HESSIAN_STEP;
        }
        f(&p)
    };
    let centre = f(theta);
    let h2 = HESSIAN_STEP * HESSIAN_STEP;
    let entry = |i: usize, j: usize| {
        if i == j {
            -(at(&[(i, 1.0)]) - 2.0 * centre + at(&[(i, -1.0)])) / h2
        } else {
            -(at(&[(i, 1.0), (j, 1.0)]) - at(&[(i, 1.0), (j, -1.0)]) - at(&[(i, -1.0), (j, 1.0)])
                + at(&[(i, -1.0), (j, -1.0)]))
                / (4.0 * h2)
        }
    };
    let n = theta.len();
    (0..n)
        .map(|i| (0..n).map(|j| entry(i, j)).collect())
        .collect()
}

/// Smallest pivot of Gaussian elimination without pivoting (the diagonal of `LDLᵀ`) of a
/// symmetric matrix, or `None` if one is below [`HESSIAN_FLOOR`] (not positive definite, or
/// too close to singular).
fn min_elimination_pivot(mut m: Vec<Vec<f64>>) -> Option<f64> {
    let mut smallest = f64::INFINITY;
    for k in 0..m.len() {
        let (done, rest) = m.split_at_mut(k + 1);
        let row_k = &done[k];
        let pivot = row_k[k];
        if pivot.is_nan() || pivot <= HESSIAN_FLOOR {
            return None;
        }
        smallest = smallest.min(pivot);
        for row in rest.iter_mut() {
            let factor = row[k] / pivot;
            for (value, &above) in row.iter_mut().zip(row_k).skip(k + 1) {
                *value -= factor * above;
            }
        }
    }
    Some(smallest)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::testkit::{simulate_bgnbd_population, simulate_spend};
    use super::*;

    fn assert_near(name: &str, got: f64, want: f64, tol: f64) {
        let rel = (got - want).abs() / want;
        assert!(
            rel <= tol,
            "{name}: fitted {got}, true {want}, relative error {rel:.3} > {tol}"
        );
    }

    fn truth() -> BgNbdParams {
        BgNbdParams::new(0.25, 4.0, 0.8, 2.5).expect("valid")
    }

    #[test]
    fn bgnbd_fit_recovers_simulated_parameters() {
        let customers = simulate_bgnbd_population(&truth(), 5_000, (30.0, 78.0), 11);
        let started = Instant::now();
        let fit = fit_bgnbd(&customers, &FitOptions::default()).expect("fit runs");
        let p = fit.params;
        eprintln!(
            "BG/NBD fit of 5000 in {:?}: r={:.4} alpha={:.4} a={:.4} b={:.4} LL={:.2} {}",
            started.elapsed(),
            p.r(),
            p.alpha(),
            p.a(),
            p.b(),
            fit.log_likelihood,
            fit.reason
        );
        assert!(fit.converged, "{}", fit.reason);
        assert_eq!(fit.customers, 5_000.0);
        assert_near("r", p.r(), 0.25, 0.2);
        assert_near("alpha", p.alpha(), 4.0, 0.25);
        assert_near("a", p.a(), 0.8, 0.25);
        assert_near("b", p.b(), 2.5, 0.25);
        // The maximum must beat the generating parameters on the same data.
        let at_truth: f64 = customers.iter().map(|c| truth().log_likelihood(c)).sum();
        assert!(
            fit.log_likelihood >= at_truth,
            "{} < {at_truth}",
            fit.log_likelihood
        );
    }

    #[test]
    fn bgnbd_fit_does_not_depend_on_time_unit_or_aggregation() {
        let weeks = simulate_bgnbd_population(&truth(), 2_000, (30.0, 78.0), 5);
        let days: Vec<_> = weeks
            .iter()
            .map(|c| CustomerSummary::new(c.x(), c.t_x() * 7.0, c.age() * 7.0).expect("valid"))
            .collect();
        let options = FitOptions::default();
        let in_weeks = fit_bgnbd(&weeks, &options).expect("fit runs");
        let in_days = fit_bgnbd(&days, &options).expect("fit runs");
        assert!(in_weeks.converged && in_days.converged);
        let (w, d) = (in_weeks.params, in_days.params);
        for (got, want) in [
            (d.r(), w.r()),
            (d.alpha() / 7.0, w.alpha()),
            (d.a(), w.a()),
            (d.b(), w.b()),
        ] {
            assert_near("unit change", got, want, 1e-3);
        }
        // Log-likelihood in days = in weeks − Σx·ln 7 (the density of purchase times scales).
        let repeats: f64 = weeks.iter().map(|c| f64::from(c.x())).sum();
        let shifted = in_weeks.log_likelihood - repeats * 7.0_f64.ln();
        assert!(
            (in_days.log_likelihood - shifted).abs() < 1e-3,
            "{} vs {shifted}",
            in_days.log_likelihood
        );
        // Doubling each customer through a weight of 2 gives the same parameters.
        let doubled: Vec<_> = weeks
            .iter()
            .map(|&value| Weighted { value, weight: 2.0 })
            .collect();
        let weighted = fit_bgnbd_weighted(&doubled, &options).expect("fit runs");
        assert!(weighted.converged);
        assert_near("weighted r", weighted.params.r(), w.r(), 1e-3);
        assert!((weighted.log_likelihood - 2.0 * in_weeks.log_likelihood).abs() < 1e-3);
    }

    #[test]
    fn degenerate_inputs_are_rejected() {
        let options = FitOptions::default();
        let nobody_returned = vec![CustomerSummary::new(0, 0.0, 40.0).expect("valid"); 1_000];
        assert!(matches!(
            fit_bgnbd(&nobody_returned, &options),
            Err(ModelError::InsufficientData(_))
        ));
        let three = [
            CustomerSummary::new(2, 10.0, 40.0).expect("valid"),
            CustomerSummary::new(0, 0.0, 35.0).expect("valid"),
            CustomerSummary::new(5, 30.0, 31.0).expect("valid"),
        ];
        assert!(matches!(
            fit_bgnbd(&three, &options),
            Err(ModelError::InsufficientData(_))
        ));
        assert!(fit_bgnbd(&[], &options).is_err());
        let negative = [Weighted {
            value: three[0],
            weight: -1.0,
        }];
        assert!(matches!(
            fit_bgnbd_weighted(&negative, &options),
            Err(ModelError::InvalidInput(_))
        ));
        assert!(fit_gamma_gamma(&[], &options).is_err());
    }

    #[test]
    fn unidentifiable_population_is_not_reported_converged() {
        // Twenty identical customers: one repeat purchase right away, then silence. Nothing
        // separates slow buyers from early dropouts, so some parameter must run off.
        let same = vec![CustomerSummary::new(1, 1.0, 52.0).expect("valid"); 20];
        let fit = fit_bgnbd(&same, &FitOptions::default()).expect("fit runs");
        eprintln!("identical customers: {} {:?}", fit.reason, fit.params);
        assert!(!fit.converged, "{}", fit.reason);
        assert!(fit.reason.starts_with("not converged"), "{}", fit.reason);
    }

    #[test]
    fn iteration_limit_is_reported_as_not_converged() {
        let customers = simulate_bgnbd_population(&truth(), 500, (30.0, 78.0), 3);
        let options = FitOptions {
            max_iterations: 10,
            ..FitOptions::default()
        };
        let fit = fit_bgnbd(&customers, &options).expect("fit runs");
        assert!(!fit.converged);
        assert!(
            fit.reason.contains("Maximum number of iterations"),
            "{}",
            fit.reason
        );
    }

    #[test]
    fn elimination_pivots_detect_definiteness() {
        // [[2,1],[1,2]]: pivots 2 and 2 − 1/2 = 1.5; eigenvalues 1 and 3.
        assert_eq!(
            min_elimination_pivot(vec![vec![2.0, 1.0], vec![1.0, 2.0]]),
            Some(1.5)
        );
        // [[1,2],[2,1]]: eigenvalues −1 and 3, second pivot 1 − 4 = −3.
        assert_eq!(
            min_elimination_pivot(vec![vec![1.0, 2.0], vec![2.0, 1.0]]),
            None
        );
        // Singular: [[1,1],[1,1]].
        assert_eq!(
            min_elimination_pivot(vec![vec![1.0, 1.0], vec![1.0, 1.0]]),
            None
        );
    }

    #[test]
    fn gamma_gamma_fit_recovers_simulated_parameters() {
        let customers = simulate_spend((6.25, 3.74, 15.44), 5_000, 10, 21);
        let started = Instant::now();
        let fit = fit_gamma_gamma(&customers, &FitOptions::default()).expect("fit runs");
        let p = fit.params;
        eprintln!(
            "Gamma-Gamma fit of 5000 in {:?}: p={:.4} q={:.4} gamma={:.4} LL={:.2} {}",
            started.elapsed(),
            p.p(),
            p.q(),
            p.gamma(),
            fit.log_likelihood,
            fit.reason
        );
        assert!(fit.converged, "{}", fit.reason);
        assert_near("p", p.p(), 6.25, 0.2);
        assert_near("q", p.q(), 3.74, 0.25);
        assert_near("gamma", p.gamma(), 15.44, 0.25);
        let truth = GammaGammaParams::new(6.25, 3.74, 15.44).expect("valid");
        let at_truth: f64 = customers.iter().map(|c| truth.log_likelihood(c)).sum();
        assert!(fit.log_likelihood >= at_truth);
    }

    /// Rough timings (debug build): `cargo test -p kizuna-loyalty-engine --lib
    /// domain::model::fit::tests::fit_timing -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing only"]
    fn fit_timing() {
        for n in [5_000, 100_000] {
            let customers = simulate_bgnbd_population(&truth(), n, (30.0, 78.0), 99);
            let started = Instant::now();
            let fit = fit_bgnbd(&customers, &FitOptions::default()).expect("fit runs");
            eprintln!(
                "BG/NBD n={n}: {:?}, converged={}, r={:.4} alpha={:.4} a={:.4} b={:.4}; {}",
                started.elapsed(),
                fit.converged,
                fit.params.r(),
                fit.params.alpha(),
                fit.params.a(),
                fit.params.b(),
                fit.reason
            );
            let spends = simulate_spend((6.25, 3.74, 15.44), n, 10, 98);
            let started = Instant::now();
            let fit = fit_gamma_gamma(&spends, &FitOptions::default()).expect("fit runs");
            eprintln!("Gamma-Gamma n={n}: {:?}; {}", started.elapsed(), fit.reason);
        }
    }
}
