//! Test helpers: seeded simulation of the generative models, written directly from the model
//! assumptions (not from the closed forms under test).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution, Gamma};

use super::bgnbd::BgNbdParams;
use super::{CustomerSummary, SpendSummary};

pub fn assert_rel(got: f64, want: f64, tol: f64) {
    let rel = ((got - want) / want).abs();
    assert!(
        rel <= tol,
        "got {got}, want {want}: relative error {rel:e} > {tol:e}"
    );
}

/// One customer's latent `(λ, p)` drawn from the mixing distributions.
fn draw_latent(params: &BgNbdParams, rng: &mut StdRng) -> (f64, f64) {
    let rates = Gamma::new(params.r(), 1.0 / params.alpha()).expect("valid gamma");
    let dropout = Beta::new(params.a(), params.b()).expect("valid beta");
    (rates.sample(rng), dropout.sample(rng))
}

/// Repeat-purchase times in `(0, horizon]` of a customer with rate `λ` who drops out with
/// probability `p` right after each repeat purchase.
fn purchase_times(lambda: f64, p: f64, horizon: f64, rng: &mut StdRng) -> Vec<f64> {
    let mut times = Vec::new();
    let mut now = 0.0;
    loop {
        // Exponential inter-purchase time; 1 − U lies in (0, 1].
        now += -(1.0 - rng.random::<f64>()).ln() / lambda;
        if now > horizon {
            return times;
        }
        times.push(now);
        if rng.random::<f64>() < p {
            return times;
        }
    }
}

/// Mean number of repeat purchases in `(0, t]` over `n` simulated new customers.
pub fn simulate_bgnbd_purchases(params: &BgNbdParams, t: f64, n: usize, seed: u64) -> f64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let total: usize = (0..n)
        .map(|_| {
            let (lambda, p) = draw_latent(params, &mut rng);
            purchase_times(lambda, p, t, &mut rng).len()
        })
        .sum();
    total as f64 / n as f64
}

/// `n` customers observed for `T ~ U(t_min, t_max)` after their first purchase.
pub fn simulate_bgnbd_population(
    params: &BgNbdParams,
    n: usize,
    (t_min, t_max): (f64, f64),
    seed: u64,
) -> Vec<CustomerSummary> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let age = rng.random_range(t_min..t_max);
            let (lambda, p) = draw_latent(params, &mut rng);
            let times = purchase_times(lambda, p, age, &mut rng);
            let t_x = times.last().copied().unwrap_or(0.0);
            let x = u32::try_from(times.len()).expect("fits in u32");
            CustomerSummary::new(x, t_x, age).expect("valid simulated summary")
        })
        .collect()
}

/// `n` customers with `x ~ U{1..=max_x}` transactions each worth `Gamma(p, ν)` (shape `p`,
/// rate `ν`), `ν ~ Gamma(q, γ)` (shape `q`, rate `γ`).
pub fn simulate_spend(
    (p, q, gamma): (f64, f64, f64),
    n: usize,
    max_x: u32,
    seed: u64,
) -> Vec<SpendSummary> {
    let mut rng = StdRng::seed_from_u64(seed);
    let nu_dist = Gamma::new(q, 1.0 / gamma).expect("valid gamma");
    (0..n)
        .map(|_| {
            let x = rng.random_range(1..=max_x);
            let nu: f64 = nu_dist.sample(&mut rng);
            let spend = Gamma::new(p, 1.0 / nu).expect("valid gamma");
            let total: f64 = (0..x).map(|_| spend.sample(&mut rng)).sum();
            SpendSummary::new(x, total / f64::from(x)).expect("valid spend")
        })
        .collect()
}
