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

/// How a simulated customer stops buying.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dropout {
    /// The BG/NBD story: with probability `p` right after each repeat purchase.
    AfterPurchase(f64),
    /// At this time after the first purchase, whatever the purchases (not the BG/NBD story).
    At(f64),
}

/// Repeat-purchase times in `(0, horizon]` of a customer with rate `λ` who stops as `dropout`
/// says, and whether the customer is still alive at `horizon`.
fn purchase_times(
    lambda: f64,
    dropout: Dropout,
    horizon: f64,
    rng: &mut StdRng,
) -> (Vec<f64>, bool) {
    let (end, alive_at_end) = match dropout {
        Dropout::AfterPurchase(_) => (horizon, true),
        Dropout::At(death) => (death.min(horizon), death > horizon),
    };
    let mut times = Vec::new();
    let mut now = 0.0;
    loop {
        // Exponential inter-purchase time; 1 − U lies in (0, 1].
        now += -(1.0 - rng.random::<f64>()).ln() / lambda;
        if now > end {
            return (times, alive_at_end);
        }
        times.push(now);
        if let Dropout::AfterPurchase(p) = dropout
            && rng.random::<f64>() < p
        {
            return (times, false);
        }
    }
}

/// Mean number of repeat purchases in `(0, t]` over `n` simulated new customers.
pub fn simulate_bgnbd_purchases(params: &BgNbdParams, t: f64, n: usize, seed: u64) -> f64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let total: usize = (0..n)
        .map(|_| {
            let (lambda, p) = draw_latent(params, &mut rng);
            purchase_times(lambda, Dropout::AfterPurchase(p), t, &mut rng)
                .0
                .len()
        })
        .sum();
    total as f64 / n as f64
}

/// A simulated customer as observed, and the truth the observer does not see.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Simulated {
    pub summary: CustomerSummary,
    /// Still buying at `T`.
    pub alive: bool,
}

/// `n` customers observed for `T ~ U(t_min, t_max)` after their first purchase, each with a
/// purchase rate `λ` and a way of dropping out drawn by `latent`.
pub fn simulate_population(
    n: usize,
    (t_min, t_max): (f64, f64),
    seed: u64,
    mut latent: impl FnMut(&mut StdRng) -> (f64, Dropout),
) -> Vec<Simulated> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let age = rng.random_range(t_min..t_max);
            let (lambda, dropout) = latent(&mut rng);
            let (times, alive) = purchase_times(lambda, dropout, age, &mut rng);
            let t_x = times.last().copied().unwrap_or(0.0);
            let x = u32::try_from(times.len()).expect("fits in u32");
            Simulated {
                summary: CustomerSummary::new(x, t_x, age).expect("valid simulated summary"),
                alive,
            }
        })
        .collect()
}

/// `n` customers observed for `T ~ U(t_min, t_max)` after their first purchase, drawn from the
/// BG/NBD model itself.
pub fn simulate_bgnbd_population(
    params: &BgNbdParams,
    n: usize,
    ages: (f64, f64),
    seed: u64,
) -> Vec<CustomerSummary> {
    simulate_population(n, ages, seed, |rng| {
        let (lambda, p) = draw_latent(params, rng);
        (lambda, Dropout::AfterPurchase(p))
    })
    .into_iter()
    .map(|s| s.summary)
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
