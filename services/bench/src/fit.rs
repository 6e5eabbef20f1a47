//! `kizuna-bench fit`: `kizuna fit-model`'s pooling, fitting and choice over 1,000,000 simulated
//! customers (no Kafka, no PostgreSQL): how long the three purchase models, their time-split
//! refits and the choice take once the customers' summaries are read.
//!
//! Each customer is acquired on a uniform day of the last two years, buys on a Poisson
//! rhythm (rate lognormal across customers, mean one purchase per ~45 days) and may drop out
//! after each purchase (probability uniform in 5–40%). Their `(x, t_x, T)` at `as_of` and at
//! `as_of − 91 days` are pooled exactly as `fit-model` pools them
//! ([`kizuna::commands::fit_model::Pooled::add_summaries`]), then
//! [`kizuna::commands::fit_model::fit_purchase_models`] runs as in the command.
//!
//! Not measured here: reading the customers' states from PostgreSQL and deriving their
//! metrics (`Pooled::add`), which the command does before this.

use std::time::Instant;

use chrono::{DateTime, Utc};
use kizuna::commands::fit_model::{FitModelOptions, Pooled, fit_purchase_models};
use kizuna::domain::model::CustomerSummary;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const HISTORY_DAYS: f64 = 730.0;
const HOLDOUT_DAYS: f64 = 91.0;

/// What the scenario measured.
#[derive(Debug)]
pub struct FitReport {
    pub customers: u64,
    pub distinct_full: usize,
    pub distinct_split: usize,
    pub simulate_and_pool_s: f64,
    pub fit_s: f64,
    pub report: String,
}

/// `(x, t_x, T)` in weeks at `day` of purchase days `days` (sorted, first = acquisition).
fn summary_at(days: &[i64], day: i64) -> Option<CustomerSummary> {
    let seen: Vec<i64> = days.iter().copied().filter(|d| *d <= day).collect();
    let (&first, &last) = (seen.first()?, seen.last()?);
    let x = u32::try_from(seen.len() - 1).ok()?;
    CustomerSummary::new(x, (last - first) as f64 / 7.0, (day - first) as f64 / 7.0).ok()
}

pub fn run(customers: u64, seed: u64, as_of: DateTime<Utc>) -> anyhow::Result<FitReport> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pooled = Pooled::default();
    let end = HISTORY_DAYS as i64;
    let cut = end - HOLDOUT_DAYS as i64;
    let mut days = Vec::new();
    for _ in 0..customers {
        days.clear();
        let first = rng.random_range(0..end);
        // Lognormal rate: exp(N(ln(1/45) − ½, 1)) per day, by Box-Muller.
        let (u1, u2): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
        let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let rate = ((1.0_f64 / 45.0).ln() - 0.5 + normal).exp();
        let dropout = rng.random_range(0.05..0.40);
        let mut t = first as f64;
        days.push(first);
        loop {
            if rng.random::<f64>() < dropout {
                break;
            }
            t += -rng.random_range(f64::EPSILON..1.0).ln() / rate;
            if t >= end as f64 {
                break;
            }
            let d = t.floor() as i64;
            if days.last() != Some(&d) {
                days.push(d);
            }
        }
        let full = summary_at(&days, end);
        let early = summary_at(&days, cut);
        pooled.add_summaries(full.as_ref(), early.as_ref());
    }
    let simulate_and_pool_s = started.elapsed().as_secs_f64();
    let fit_started = Instant::now();
    let options = FitModelOptions {
        model: None,
        holdout_days: HOLDOUT_DAYS as u32,
    };
    let (_, report) = fit_purchase_models(&pooled, as_of, options)?;
    Ok(FitReport {
        customers,
        distinct_full: pooled.full.len(),
        distinct_split: pooled.split.len(),
        simulate_and_pool_s,
        fit_s: fit_started.elapsed().as_secs_f64(),
        report,
    })
}

pub fn print(r: &FitReport) {
    println!("fit-model at scale: {} simulated customers", r.customers);
    println!(
        "  pooled into {} distinct (x, t_x, T) summaries and {} (calibration summary, holdout purchases) groups",
        r.distinct_full, r.distinct_split
    );
    println!(
        "  simulate + pool: {:.2} s; fit BG/NBD, Pareto/NBD, MBG/NBD on the whole history and on the calibration split, choose: {:.2} s",
        r.simulate_and_pool_s, r.fit_s
    );
    println!("{}", r.report);
}
