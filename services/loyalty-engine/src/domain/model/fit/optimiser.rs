//! Nelder-Mead runs, caps at the boundary, restarts and the final convergence checks.

use super::*;

/// The negated objective as an argmin cost; non-finite values become `+∞` so that the simplex
/// moves away from them.
pub(super) struct Cost<'a> {
    pub(super) mean_ll: &'a dyn Fn(&[f64]) -> f64,
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

/// An upper bound on one optimiser coordinate (the log of a concentration parameter). At the
/// bound the mixing distribution is numerically a point mass: the boundary of the parameter
/// space, where the maximum likelihood may lie.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cap {
    pub(super) coordinate: usize,
    /// The cap on the parameter; the coordinate is its logarithm.
    pub(super) value: f64,
    pub(super) name: &'static str,
}

impl Cap {
    pub(super) fn max(&self) -> f64 {
        self.value.ln()
    }
}

/// A capped coordinate held at its bound.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct AtBoundary {
    pub(super) coordinate: usize,
    pub(super) name: &'static str,
    /// When a better optimum was found below the cap: that value of the coordinate, and how
    /// much higher the mean log-likelihood was there than at the cap.
    pub(super) interior: Option<(f64, f64)>,
    /// Improvement of the mean log-likelihood when the cap is raised [`RAISE_CAP`] times.
    pub(super) gain_beyond: f64,
}

/// Where the optimiser ended and whether it may be trusted.
#[derive(Debug)]
pub(super) struct Outcome {
    pub(super) theta: Vec<f64>,
    pub(super) iterations: u64,
    pub(super) evaluations: u64,
    /// The capped coordinates at their bound (empty for an interior optimum).
    pub(super) boundary: Vec<AtBoundary>,
    /// `Err(reason)` if a criterion failed; `Ok(details)` otherwise.
    pub(super) verdict: Result<String, String>,
}

impl Outcome {
    /// The report; `describe(coordinate, theta)` says in words what a capped coordinate at its
    /// bound means.
    pub(super) fn report<P>(
        self,
        params: P,
        log_likelihood: f64,
        names: &[&str],
        total: f64,
        describe: &dyn Fn(usize, &[f64]) -> String,
    ) -> FitReport<P> {
        let fixed: Vec<usize> = self.boundary.iter().map(|b| b.coordinate).collect();
        let verdict = self.verdict.and_then(|details| {
            if !log_likelihood.is_finite() {
                return Err(format!("log-likelihood is not finite ({log_likelihood})"));
            }
            check_range(&self.theta, names, &fixed)?;
            Ok(details)
        });
        let (converged, what) = match verdict {
            Ok(details) if self.boundary.is_empty() => (true, format!("converged: {details}")),
            Ok(details) => {
                let what: Vec<String> = self
                    .boundary
                    .iter()
                    .map(|b| describe(b.coordinate, &self.theta))
                    .collect();
                (
                    true,
                    format!(
                        "converged at the boundary: {}; {details}",
                        what.join(" and ")
                    ),
                )
            }
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

/// Check that every coordinate not in `skip` lies in [`PARAM_RANGE`] once exponentiated.
pub(super) fn check_range(theta: &[f64], names: &[&str], skip: &[usize]) -> Result<(), String> {
    let (lo, hi) = PARAM_RANGE;
    for (i, (value, name)) in theta.iter().map(|t| t.exp()).zip(names).enumerate() {
        if !skip.contains(&i) && !(lo..=hi).contains(&value) {
            return Err(format!(
                "{name} = {value:e} left the range [{lo:e}, {hi:e}]: the data do not identify it"
            ));
        }
    }
    Ok(())
}

/// One Nelder-Mead run from `start` with a simplex of side `step`.
#[derive(Debug)]
pub(super) struct Run {
    pub(super) theta: Vec<f64>,
    pub(super) value: f64,
    pub(super) iterations: u64,
    pub(super) evaluations: u64,
    pub(super) converged: bool,
    pub(super) stop: String,
}

pub(super) fn nelder_mead(
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

/// `theta` with coordinate `i` set to `value`.
pub(super) fn with(theta: &[f64], i: usize, value: f64) -> Vec<f64> {
    let mut moved = theta.to_vec();
    moved[i] = value;
    moved
}

/// Maximise `mean_ll` from `start` with the capped coordinates held at or below their caps:
/// Nelder-Mead and restarts (see [`restarts`]); then every capped coordinate whose cap fits
/// the data as well as the optimum, to within [`BOUNDARY_TOLERANCE`], is fixed at its cap and
/// the others are optimised again; finally the boundary and Hessian checks.
pub(super) fn maximise(
    mean_ll: &dyn Fn(&[f64]) -> f64,
    start: Vec<f64>,
    caps: &[Cap],
    total: f64,
    options: &FitOptions,
) -> Outcome {
    // Beyond its cap a coordinate does not change the objective: the optimiser may wander
    // there, but it is moved back onto the cap afterwards.
    let clamp = |theta: &[f64]| {
        let mut clamped = theta.to_vec();
        for cap in caps {
            clamped[cap.coordinate] = clamped[cap.coordinate].min(cap.max());
        }
        clamped
    };
    let mut outcome = Outcome {
        theta: clamp(&start),
        iterations: 0,
        evaluations: 0,
        boundary: Vec::new(),
        verdict: Err("no optimiser run".to_owned()),
    };
    loop {
        let base = outcome.theta.clone();
        let free = free_coordinates(&base, &outcome.boundary);
        let embed = |y: &[f64]| {
            let mut theta = base.clone();
            for (&i, &v) in free.iter().zip(y) {
                theta[i] = v;
            }
            clamp(&theta)
        };
        let reduced = |y: &[f64]| mean_ll(&embed(y));
        let start: Vec<f64> = free.iter().map(|&i| base[i]).collect();
        let (theta, run) = restarts(&reduced, start, options);
        outcome.theta = embed(&theta);
        outcome.iterations += run.iterations;
        outcome.evaluations += run.evaluations;
        let details = match run.verdict {
            Ok(details) => details,
            Err(failure) => {
                outcome.verdict = Err(failure);
                return outcome;
            }
        };
        // Fix at their caps the capped coordinates whose cap is as good as the optimum.
        let best = mean_ll(&outcome.theta);
        let mut moved = false;
        for cap in caps {
            if outcome
                .boundary
                .iter()
                .any(|b| b.coordinate == cap.coordinate)
            {
                continue;
            }
            let at_cap = with(&outcome.theta, cap.coordinate, cap.max());
            let gap = best - mean_ll(&at_cap);
            if gap <= BOUNDARY_TOLERANCE {
                let value = outcome.theta[cap.coordinate];
                moved |= value < cap.max();
                let interior = (value < cap.max() && gap > 0.0).then_some((value, gap));
                outcome.theta = at_cap;
                outcome.boundary.push(AtBoundary {
                    coordinate: cap.coordinate,
                    name: cap.name,
                    interior,
                    gain_beyond: f64::NAN,
                });
            }
        }
        if !moved {
            outcome.verdict = final_checks(mean_ll, &mut outcome, caps, total, details);
            return outcome;
        }
    }
}

/// The coordinates not held at a cap.
pub(super) fn free_coordinates(theta: &[f64], boundary: &[AtBoundary]) -> Vec<usize> {
    (0..theta.len())
        .filter(|i| !boundary.iter().any(|b| b.coordinate == *i))
        .collect()
}

/// At the optimum found: each coordinate held at its cap must gain less than
/// [`BOUNDARY_TOLERANCE`] when the cap is raised [`RAISE_CAP`] times, and the Hessian over the
/// other coordinates must be negative definite.
pub(super) fn final_checks(
    mean_ll: &dyn Fn(&[f64]) -> f64,
    outcome: &mut Outcome,
    caps: &[Cap],
    total: f64,
    details: String,
) -> Result<String, String> {
    let theta = outcome.theta.clone();
    let value = mean_ll(&theta);
    let mut notes = Vec::new();
    for at in &mut outcome.boundary {
        let Some(cap) = caps.iter().find(|c| c.coordinate == at.coordinate) else {
            continue;
        };
        // The best of the caps raised up to RAISE_CAP times, on a log grid, so that an
        // optimum between the cap and RAISE_CAP times it is not missed.
        let raised = cap.value * RAISE_CAP;
        at.gain_beyond = (1..=RAISE_STEPS)
            .map(|k| {
                let ln_cap = cap.max() + RAISE_CAP.ln() * f64::from(k) / f64::from(RAISE_STEPS);
                mean_ll(&with(&theta, at.coordinate, ln_cap)) - value
            })
            .fold(f64::NEG_INFINITY, f64::max);
        let name = at.name;
        if at.gain_beyond.is_nan() || at.gain_beyond >= BOUNDARY_TOLERANCE {
            return Err(format!(
                "{name} reached its cap {:e} but the mean log-likelihood still improves by \
                 {:.1e} per customer up to {:e}: the cap (FitOptions::max_concentration) is \
                 too low for these data",
                cap.value, at.gain_beyond, raised
            ));
        }
        if let Some((below, gap)) = at.interior {
            notes.push(format!(
                "{name} = {:.2e} below the cap fitted better by only {gap:.1e} per customer",
                below.exp()
            ));
        }
        notes.push(format!(
            "raising the cap on {name} up to {:e} improves the mean log-likelihood by at most \
             {:.1e} per customer",
            raised, at.gain_beyond
        ));
    }
    let free = free_coordinates(&theta, &outcome.boundary);
    let reduced = |y: &[f64]| {
        let mut full = theta.clone();
        for (&i, &v) in free.iter().zip(y) {
            full[i] = v;
        }
        mean_ll(&full)
    };
    let at: Vec<f64> = free.iter().map(|&i| theta[i]).collect();
    let curvature = hessian_check(&reduced, &at)?;
    let over = if outcome.boundary.is_empty() {
        String::new()
    } else {
        notes.push(String::new());
        "over the other parameters: ".to_owned()
    };
    Ok(format!(
        "{}{over}{details}, Hessian negative definite (smallest pivot {curvature:.2e} per \
         customer, {:.2e} in total)",
        notes.join("; "),
        curvature * total
    ))
}

/// What [`restarts`] did.
#[derive(Debug)]
pub(super) struct Restarts {
    pub(super) iterations: u64,
    pub(super) evaluations: u64,
    /// `Ok(details)` when a restart no longer improved the optimum.
    pub(super) verdict: Result<String, String>,
}

/// Nelder-Mead from `start`, then restarts from the optimum until a restart no longer
/// improves it. Returns the best point found.
pub(super) fn restarts(
    mean_ll: &dyn Fn(&[f64]) -> f64,
    start: Vec<f64>,
    options: &FitOptions,
) -> (Vec<f64>, Restarts) {
    let mut theta = start;
    let mut done = Restarts {
        iterations: 0,
        evaluations: 0,
        verdict: Err("no optimiser run".to_owned()),
    };
    let mut best = f64::NEG_INFINITY;
    for round in 0..=options.max_restarts {
        let step = if round == 0 { FIRST_STEP } else { RESTART_STEP };
        let run = match nelder_mead(mean_ll, &theta, step, options) {
            Ok(run) => run,
            Err(failure) => {
                done.verdict = Err(failure);
                return (theta, done);
            }
        };
        done.iterations += run.iterations;
        done.evaluations += run.evaluations;
        let improvement = run.value - best;
        theta = run.theta;
        best = run.value;
        if !run.converged {
            done.verdict = Err(format!(
                "Nelder-Mead stopped without converging: {}",
                run.stop
            ));
            return (theta, done);
        }
        if round > 0 && improvement <= options.tolerance {
            done.verdict = Ok(format!(
                "simplex converged, restart {round} improved the mean log-likelihood by \
                 {improvement:.1e}"
            ));
            return (theta, done);
        }
    }
    done.verdict = Err(format!(
        "still improving after {} restarts (increase max_restarts)",
        options.max_restarts
    ));
    (theta, done)
}
