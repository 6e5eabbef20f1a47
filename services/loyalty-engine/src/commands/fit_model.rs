//! `kizuna fit-model [--as-of TIME] [--model auto|bgnbd|pareto-nbd|mbgnbd] [--holdout-days N]`:
//! fits the purchase models (BG/NBD, Pareto/NBD, MBG/NBD) over all customers from the same
//! pooled `(x, t_x, T)` summaries, chooses one by a time-split holdout (see
//! [`crate::domain::model::choice`]), fits the Gamma-Gamma (p, q, γ) over those with repeat
//! purchases, and stores them as a new model version with every candidate's evidence. A
//! chosen fit that did not converge is refused, with the reason.
//!
//! One pass over the customers derives each one's summary at `as_of` and at the calibration
//! end `as_of − holdout`, and the repeat purchases made between the two. Identical summaries,
//! rounded to days, are pooled with a weight; when that leaves more than [`MAX_ROWS`] distinct
//! rows (a large population over a long history), `t_x` and `T` are pooled to coarser steps
//! (2, 4, 7, 14 or 28 days, the first that fits; each time moves by at most half a step), and
//! the report says so.

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::bail;
use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;

use crate::domain::churn::summary;
use crate::domain::metrics::Metrics;
use crate::domain::model::choice::{Choice, Holdout, HoldoutRow, choose};
use crate::domain::model::fit::MIN_CUSTOMERS;
use crate::domain::model::{
    CustomerSummary, FitOptions, FitReport, GammaGammaParams, ModelKind, SpendSummary, Weighted,
    fit_gamma_gamma_weighted,
};
use crate::domain::programme::Programme;
use crate::store::{customers, models};

/// Default holdout of the time split: 13 weeks.
pub const DEFAULT_HOLDOUT_DAYS: u32 = 91;

/// What the caller asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitModelOptions {
    /// `None`: every model, chosen by evidence; `Some`: only this one.
    pub model: Option<ModelKind>,
    /// Length of the time split's holdout; 0 turns the split off (log-likelihood decides).
    pub holdout_days: u32,
}

impl Default for FitModelOptions {
    fn default() -> Self {
        Self {
            model: None,
            holdout_days: DEFAULT_HOLDOUT_DAYS,
        }
    }
}

/// What the fit produced.
#[derive(Debug)]
pub struct FitOutcome {
    pub version: i64,
    pub report: String,
}

/// The pooled sufficient statistics of one pass over the customers.
#[derive(Debug, Default)]
pub struct Pooled {
    /// `(x, t_x days, T days)` at `as_of` → customers.
    pub full: HashMap<(u32, i64, i64), f64>,
    /// `(x, t_x days, T days, holdout purchases)` at the calibration end → customers.
    pub split: HashMap<(u32, i64, i64, u32), f64>,
    pub spend: Vec<Weighted<SpendSummary>>,
    /// Customers read.
    pub customers: u64,
}

/// Pooling resolutions tried, in days, finest first.
const RESOLUTIONS_DAYS: [i64; 6] = [1, 2, 4, 7, 14, 28];

/// Most distinct whole-history rows fitted: beyond, times are pooled more coarsely. Each
/// likelihood evaluation is a pass over the rows, and a fit takes a few hundred evaluations.
pub const MAX_ROWS: usize = 50_000;

/// `days` rounded to the nearest multiple of `k` days (the grid's middle for `k` > 1).
fn coarse(days: i64, k: i64) -> i64 {
    if k <= 1 {
        days
    } else {
        (days.div_euclid(k)) * k + k / 2
    }
}

fn days_key(s: &CustomerSummary) -> (u32, i64, i64) {
    (
        s.x(),
        (s.t_x() * 7.0).round() as i64,
        (s.age() * 7.0).round() as i64,
    )
}

fn from_days(x: u32, t_x: i64, age: i64) -> Option<CustomerSummary> {
    CustomerSummary::new(x, t_x as f64 / 7.0, age as f64 / 7.0).ok()
}

impl Pooled {
    /// Adds one customer's facts.
    pub fn add(
        &mut self,
        facts: &crate::domain::facts::Facts,
        programme: &Programme,
        as_of: DateTime<Utc>,
        calibration_end: Option<DateTime<Utc>>,
    ) {
        let m = Metrics::derive(facts, programme, as_of);
        let Some(s) = summary(&m) else {
            self.customers += 1;
            return;
        };
        if let Some(m_x) = m.repeat_mean_spend_minor.filter(|v| *v > 0.0)
            && let Ok(summary) = SpendSummary::new(s.x(), m_x)
        {
            self.spend.push(Weighted {
                value: summary,
                weight: 1.0,
            });
        }
        let early =
            calibration_end.and_then(|end| summary(&Metrics::derive(facts, programme, end)));
        self.add_summaries(Some(&s), early.as_ref());
    }

    /// Adds one customer by their summaries at `as_of` and at the calibration end (`None`: no
    /// purchase by then). The holdout purchases are the repeat purchases between the two.
    pub fn add_summaries(
        &mut self,
        full: Option<&CustomerSummary>,
        early: Option<&CustomerSummary>,
    ) {
        self.customers += 1;
        let Some(s) = full else { return };
        *self.full.entry(days_key(s)).or_default() += 1.0;
        if let Some(c) = early {
            let (x, t_x, age) = days_key(c);
            let later = s.x().saturating_sub(c.x());
            *self.split.entry((x, t_x, age, later)).or_default() += 1.0;
        }
    }

    /// The coarsest-needed pooling resolution, in days: the first of [`RESOLUTIONS_DAYS`] at
    /// which the whole-history summaries make at most [`MAX_ROWS`] distinct rows.
    pub fn resolution_days(&self) -> i64 {
        RESOLUTIONS_DAYS
            .into_iter()
            .find(|&k| {
                let distinct: std::collections::HashSet<_> = self
                    .full
                    .keys()
                    .map(|&(x, t_x, age)| (x, coarse(t_x, k), coarse(age, k)))
                    .collect();
                distinct.len() <= MAX_ROWS
            })
            .unwrap_or(RESOLUTIONS_DAYS[RESOLUTIONS_DAYS.len() - 1])
    }

    fn full_summaries(&self, k: i64) -> Vec<Weighted<CustomerSummary>> {
        let mut pooled: HashMap<(u32, i64, i64), f64> = HashMap::new();
        for (&(x, t_x, age), &weight) in &self.full {
            *pooled
                .entry((x, coarse(t_x, k), coarse(age, k)))
                .or_default() += weight;
        }
        pooled
            .into_iter()
            .filter_map(|((x, t_x, age), weight)| {
                from_days(x, t_x, age).map(|value| Weighted { value, weight })
            })
            .collect()
    }

    /// The time split, when it has at least [`MIN_CUSTOMERS`] calibration customers with a
    /// repeat purchase in calibration.
    fn holdout(&self, holdout_days: u32, k: i64) -> Option<Holdout> {
        let mut pooled: HashMap<(u32, i64, i64, u32), f64> = HashMap::new();
        for (&(x, t_x, age, later), &weight) in &self.split {
            *pooled
                .entry((x, coarse(t_x, k), coarse(age, k), later))
                .or_default() += weight;
        }
        let rows: Vec<HoldoutRow> = pooled
            .into_iter()
            .filter_map(|((x, t_x, age, later), weight)| {
                from_days(x, t_x, age).map(|calibration| HoldoutRow {
                    calibration,
                    holdout_purchases: later,
                    weight,
                })
            })
            .collect();
        let repeaters: f64 = rows
            .iter()
            .filter(|r| r.calibration.x() > 0)
            .map(|r| r.weight)
            .sum();
        (holdout_days > 0 && repeaters >= MIN_CUSTOMERS).then(|| Holdout {
            rows,
            length: f64::from(holdout_days) / 7.0,
        })
    }
}

pub async fn run(
    pool: &PgPool,
    programme: &Programme,
    as_of: DateTime<Utc>,
    options: FitModelOptions,
) -> anyhow::Result<FitOutcome> {
    let calibration_end = (options.holdout_days > 0 && options.model.is_none())
        .then(|| as_of - Duration::days(i64::from(options.holdout_days)));
    let total = customers::count(pool).await?;
    let bar = super::progress(u64::try_from(total).unwrap_or(0), "reading customers");
    let mut pooled = Pooled::default();
    // One read of every customer feeds both steps: the purchase models' pool and the churn
    // weights' sample.
    let mut sample = super::fit_weights::Sample::new(usize::try_from(total).unwrap_or(0));
    customers::for_each_page(pool, 5_000, async |page| {
        for (state, _) in page {
            pooled.add(&state.facts, programme, as_of, calibration_end);
            sample.offer(&state.facts);
        }
        bar.inc(page.len() as u64);
        Ok(())
    })
    .await?;
    bar.finish_and_clear();
    let (choice, mut report) = fit_purchase_models(&pooled, as_of, options)?;
    let gg = fit_spend(&pooled.spend, &mut report);
    let version = models::store(pool, as_of, &choice, gg.as_ref(), &report).await?;
    let Some(purchases) = choice.chosen_fit() else {
        bail!("the chosen model {} did not converge", choice.chosen);
    };
    let model = crate::domain::churn::Model {
        version,
        purchases: purchases.params,
        spend: gg.map(|g| g.params),
        weights: None,
    };
    let weights = super::fit_weights::run(pool, programme, &model, as_of, sample).await?;
    report.push('\n');
    report.push_str(&weights);
    Ok(FitOutcome { version, report })
}

/// Fits the purchase models from the pooled summaries and chooses one; the report has a
/// table of every candidate.
///
/// # Errors
/// When the chosen (or forced) model did not converge: nothing may be stored.
pub fn fit_purchase_models(
    pooled: &Pooled,
    as_of: DateTime<Utc>,
    options: FitModelOptions,
) -> anyhow::Result<(Choice, String)> {
    let k = pooled.resolution_days();
    let data = pooled.full_summaries(k);
    let holdout = pooled.holdout(options.holdout_days, k);
    let choice = choose(
        &data,
        holdout.as_ref(),
        options.model,
        &FitOptions::default(),
    )?;
    let report = describe(&choice, as_of, (data.len(), k), holdout.as_ref());
    if choice.chosen_fit().is_none() {
        bail!(
            "the {} fit did not converge, nothing stored\n{report}",
            choice.chosen
        );
    }
    Ok((choice, report))
}

/// The report: one line per candidate, then the choice.
fn describe(
    choice: &Choice,
    as_of: DateTime<Utc>,
    (distinct, k): (usize, i64),
    holdout: Option<&Holdout>,
) -> String {
    let mut out = String::new();
    let customers = choice
        .candidates
        .iter()
        .find_map(|c| c.fit.as_ref().ok().map(|f| f.customers))
        .unwrap_or(0.0);
    let _ = writeln!(
        out,
        "purchase models over {customers:.0} customers ({distinct} distinct summaries{}) as of {as_of}{}:",
        if k > 1 {
            format!(", t_x and T pooled to {k}-day steps")
        } else {
            String::new()
        },
        holdout.map_or(String::new(), |h| format!(
            "; holdout: the last {:.1} weeks",
            h.length
        ))
    );
    let _ = writeln!(
        out,
        "{:<11} {:<6} {:>14} {:>12} {:>12} {:>12}  parameters (time in weeks)",
        "model", "chosen", "log-lik", "holdout MAE", "aggregate", "converged"
    );
    for c in &choice.candidates {
        let (ll, converged, params) = match &c.fit {
            Ok(f) => (
                format!("{:.2}", f.log_likelihood),
                f.converged.to_string(),
                c.kind
                    .param_names()
                    .iter()
                    .zip(f.params.params())
                    .map(|(n, v)| format!("{n} = {v:.4}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            Err(e) => ("-".into(), "false".into(), format!("not fitted: {e}")),
        };
        let (mae, aggregate) = match &c.holdout {
            Some(Ok(h)) => (
                format!("{:.4}", h.mae),
                format!("{:+.2}%", 100.0 * h.aggregate_error),
            ),
            _ => ("-".into(), "-".into()),
        };
        let chosen = if c.kind == choice.chosen { "*" } else { "" };
        let _ = writeln!(
            out,
            "{:<11} {chosen:<6} {ll:>14} {mae:>12} {aggregate:>12} {converged:>12}  {params}",
            c.kind.as_str()
        );
    }
    for c in &choice.candidates {
        match (&c.fit, &c.holdout) {
            (Ok(f), _) if !f.converged => {
                let _ = writeln!(out, "{}: {}", c.kind, f.reason);
            }
            (_, Some(Err(why))) => {
                let _ = writeln!(out, "{} holdout: {why}", c.kind);
            }
            _ => {}
        }
    }
    let _ = write!(out, "chosen: {} ({})", choice.chosen, choice.selection);
    out
}

/// The Gamma-Gamma spend model, when it converges; the report says either way.
fn fit_spend(
    spend: &[Weighted<SpendSummary>],
    report: &mut String,
) -> Option<FitReport<GammaGammaParams>> {
    match fit_gamma_gamma_weighted(spend, &FitOptions::default()) {
        Ok(gg) if gg.converged => {
            let _ = write!(
                report,
                "\nGamma-Gamma over {:.0} repeat customers: p = {:.4}, q = {:.4}, gamma = {:.4}; log-likelihood {:.2}; {}",
                gg.customers,
                gg.params.p(),
                gg.params.q(),
                gg.params.gamma(),
                gg.log_likelihood,
                gg.reason
            );
            Some(gg)
        }
        Ok(gg) => {
            let _ = write!(
                report,
                "\nGamma-Gamma did not converge ({}): stored without it, so no CLV",
                gg.reason
            );
            None
        }
        Err(e) => {
            let _ = write!(
                report,
                "\nGamma-Gamma not fitted ({e}): stored without it, so no CLV"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_distinct_summaries_are_pooled_coarser_keeping_every_customer() {
        let mut pooled = Pooled::default();
        // 120,000 distinct (x, t_x, T) in days: beyond MAX_ROWS at a 1-day resolution.
        for x in 1..=12u32 {
            for age in 0..100i64 {
                for t_x in 0..100i64 {
                    let s =
                        CustomerSummary::new(x, (t_x + 300) as f64 / 7.0, (age + 400) as f64 / 7.0)
                            .expect("valid");
                    pooled.add_summaries(Some(&s), None);
                }
            }
        }
        let k = pooled.resolution_days();
        assert!(k > 1, "{k}");
        let rows = pooled.full_summaries(k);
        assert!(rows.len() <= MAX_ROWS, "{}", rows.len());
        let total: f64 = rows.iter().map(|r| r.weight).sum();
        assert_eq!(total, 120_000.0);
        // Times move by at most half a step.
        assert!(coarse(401, 4) - 401 <= 2 && coarse(401, 1) == 401);
    }
}
