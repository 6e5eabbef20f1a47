//! The objectives: mean log-likelihoods per customer in the optimiser's coordinates.

use super::*;

/// Rows above which a likelihood is summed on several threads.
const PARALLEL_ABOVE: usize = 4_096;

/// Rescaled observations grouped by `x`, so that the `x`-only terms of a likelihood (the
/// `ln Γ` calls) are computed once per distinct `x` per evaluation.
#[derive(Debug)]
pub(super) struct GroupedByX<S> {
    pub(super) xs: Vec<u32>,
    pub(super) rows: Vec<(usize, S, f64)>,
}

impl<S> GroupedByX<S> {
    pub(super) fn new<T>(
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

    /// The weighted sum of `ll(group, summary)` over the rows, divided by `total`. Large
    /// inputs are summed on every available core, in fixed chunks added in order, so the
    /// result does not depend on scheduling.
    pub(super) fn mean(&self, total: f64, ll: impl Fn(usize, &S) -> f64 + Sync) -> f64
    where
        S: Sync,
    {
        let part =
            |rows: &[(usize, S, f64)]| -> f64 { rows.iter().map(|(g, s, w)| w * ll(*g, s)).sum() };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        if self.rows.len() < PARALLEL_ABOVE || threads < 2 {
            return part(&self.rows) / total;
        }
        let chunk = self.rows.len().div_ceil(threads);
        let sums: Vec<f64> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .rows
                .chunks(chunk)
                .map(|rows| scope.spawn(move || part(rows)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(f64::NAN))
                .collect()
        });
        sums.iter().sum::<f64>() / total
    }
}

/// Optimiser coordinates of BG/NBD: `ln r`, `ln(r/α)` (the mean purchase rate), `logit
/// a/(a+b)` (the mean dropout probability) and `ln(a+b)` (the concentration of the dropout
/// distribution). Letting `r` or `a+b` grow with the means fixed moves along one coordinate
/// towards a point-mass distribution, where the likelihood flattens out.
pub(super) const SHAPE: usize = 0;
pub(super) const MEAN_RATE: usize = 1;
pub(super) const MEAN_DROPOUT: usize = 2;
pub(super) const CONCENTRATION: usize = 3;

/// `[r, α, a, b]` at the optimiser coordinates `theta`.
pub(super) fn bgnbd_natural(theta: &[f64]) -> [f64; 4] {
    let at = |i: usize| theta.get(i).copied().unwrap_or(f64::NAN);
    let (shape, mean) = (at(SHAPE), at(MEAN_DROPOUT));
    [
        shape.exp(),
        (shape - at(MEAN_RATE)).exp(),
        (at(CONCENTRATION) + ln_sigmoid(mean)).exp(),
        (at(CONCENTRATION) + ln_sigmoid(-mean)).exp(),
    ]
}

/// `ln(1 / (1 + e^−x))` without overflow.
pub(super) fn ln_sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        -(-x).exp().ln_1p()
    } else {
        x - x.exp().ln_1p()
    }
}

/// Three significant digits, without an exponent when it reads naturally.
pub(super) fn significant(v: f64) -> String {
    if v != 0.0 && (1e-3..1e4).contains(&v.abs()) {
        let digits = (2.0 - v.abs().log10().floor()).max(0.0);
        format!("{v:.*}", digits as usize)
    } else {
        format!("{v:.2e}")
    }
}

pub(super) fn bgnbd_mean_ll(theta: &[f64], data: &GroupedByX<CustomerSummary>, total: f64) -> f64 {
    let [r, alpha, a, b] = bgnbd_natural(theta);
    let Ok(params) = BgNbdParams::new(r, alpha, a, b) else {
        return f64::NEG_INFINITY;
    };
    let terms = params.x_terms_ascending(&data.xs);
    data.mean(total, |g, s| params.log_likelihood_with(&terms[g], s))
}

pub(super) fn mbgnbd_mean_ll(theta: &[f64], data: &GroupedByX<CustomerSummary>, total: f64) -> f64 {
    let [r, alpha, a, b] = bgnbd_natural(theta);
    let Ok(params) = MbgNbdParams::new(r, alpha, a, b) else {
        return f64::NEG_INFINITY;
    };
    let terms: Vec<_> = data.xs.iter().map(|&x| params.x_terms(x)).collect();
    data.mean(total, |g, s| params.log_likelihood_with(&terms[g], s))
}

/// `[r, α, s, β]` at the Pareto/NBD coordinates `ln r, ln(r/α), ln s, ln(s/β)`.
pub(super) fn pareto_natural(theta: &[f64]) -> [f64; 4] {
    let at = |i: usize| theta.get(i).copied().unwrap_or(f64::NAN);
    [
        at(0).exp(),
        (at(0) - at(1)).exp(),
        at(2).exp(),
        (at(2) - at(3)).exp(),
    ]
}

/// A row whose `₂F₁` cannot be summed makes the whole point `−∞`, which the simplex avoids.
pub(super) fn pareto_mean_ll(theta: &[f64], data: &GroupedByX<CustomerSummary>, total: f64) -> f64 {
    let [r, alpha, s, beta] = pareto_natural(theta);
    let Ok(params) = ParetoNbdParams::new(r, alpha, s, beta) else {
        return f64::NEG_INFINITY;
    };
    let terms: Vec<_> = data.xs.iter().map(|&x| params.x_terms(x)).collect();
    data.mean(total, |g, s| {
        params
            .log_likelihood_with(&terms[g], s)
            .unwrap_or(f64::NEG_INFINITY)
    })
}

pub(super) fn gamma_gamma_mean_ll(
    theta: &[f64],
    data: &GroupedByX<SpendSummary>,
    total: f64,
) -> f64 {
    let [p, q, gamma] = unlog(theta);
    let Ok(params) = GammaGammaParams::new(p, q, gamma) else {
        return f64::NEG_INFINITY;
    };
    let terms: Vec<_> = data.xs.iter().map(|&x| params.x_terms(x)).collect();
    data.mean(total, |g, s| params.log_likelihood_with(&terms[g], s))
}
