//! `kizuna fit-model [--as-of TIME]`: fits BG/NBD (r, α, a, b) over all customers and the
//! Gamma-Gamma (p, q, γ) over those with repeat purchases, by maximum likelihood, and stores
//! them as a new model version. A fit that did not converge is refused, with the reason.

use std::collections::HashMap;

use anyhow::bail;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::domain::churn::summary;
use crate::domain::metrics::Metrics;
use crate::domain::model::{
    FitOptions, SpendSummary, Weighted, fit_bgnbd_weighted, fit_gamma_gamma_weighted,
};
use crate::domain::programme::Programme;
use crate::store::{customers, models};

/// What the fit produced.
#[derive(Debug)]
pub struct FitOutcome {
    pub version: i64,
    pub report: String,
}

pub async fn run(
    pool: &PgPool,
    programme: &Programme,
    as_of: DateTime<Utc>,
) -> anyhow::Result<FitOutcome> {
    let total = customers::count(pool).await?;
    let bar = super::progress(u64::try_from(total).unwrap_or(0), "reading customers");
    // Identical (x, t_x, T) rounded to days are pooled with a weight.
    let mut purchases: HashMap<(u32, i64, i64), f64> = HashMap::new();
    let mut spend = Vec::new();
    customers::for_each_page(pool, 5_000, async |page| {
        for (state, _) in page {
            let m = Metrics::derive(&state.facts, programme, as_of);
            let Some(s) = summary(&m) else { continue };
            let key = (
                s.x(),
                (s.t_x() * 7.0).round() as i64,
                (s.age() * 7.0).round() as i64,
            );
            *purchases.entry(key).or_default() += 1.0;
            if let Some(m_x) = m.repeat_mean_spend_minor.filter(|v| *v > 0.0)
                && let Ok(summary) = SpendSummary::new(s.x(), m_x)
            {
                spend.push(Weighted {
                    value: summary,
                    weight: 1.0,
                });
            }
        }
        bar.inc(page.len() as u64);
        Ok(())
    })
    .await?;
    bar.finish_and_clear();
    let data: Vec<_> = purchases
        .into_iter()
        .filter_map(|((x, t_x, age), weight)| {
            crate::domain::model::CustomerSummary::new(x, t_x as f64 / 7.0, age as f64 / 7.0)
                .ok()
                .map(|value| Weighted { value, weight })
        })
        .collect();
    let options = FitOptions::default();
    let bg = fit_bgnbd_weighted(&data, &options)?;
    let p = &bg.params;
    let mut report = format!(
        "BG/NBD over {:.0} customers as of {as_of}: r = {:.4}, alpha = {:.4} weeks, a = {:.4}, b = {:.4}; log-likelihood {:.2}; {} iterations; {}",
        bg.customers,
        p.r(),
        p.alpha(),
        p.a(),
        p.b(),
        bg.log_likelihood,
        bg.iterations,
        bg.reason
    );
    if !bg.converged {
        bail!(
            "the BG/NBD fit did not converge, nothing stored: {}\n{report}",
            bg.reason
        );
    }
    let gg = match fit_gamma_gamma_weighted(&spend, &options) {
        Ok(gg) if gg.converged => {
            report.push_str(&format!(
                "\nGamma-Gamma over {:.0} repeat customers: p = {:.4}, q = {:.4}, gamma = {:.4}; log-likelihood {:.2}; {}",
                gg.customers,
                gg.params.p(),
                gg.params.q(),
                gg.params.gamma(),
                gg.log_likelihood,
                gg.reason
            ));
            Some(gg)
        }
        Ok(gg) => {
            report.push_str(&format!(
                "\nGamma-Gamma did not converge ({}): stored without it, so no CLV",
                gg.reason
            ));
            None
        }
        Err(e) => {
            report.push_str(&format!(
                "\nGamma-Gamma not fitted ({e}): stored without it, so no CLV"
            ));
            None
        }
    };
    let version = models::store(pool, as_of, &bg, gg.as_ref(), &report).await?;
    let model = crate::domain::churn::Model {
        version,
        purchases: bg.params,
        spend: gg.map(|g| g.params),
        weights: None,
    };
    let weights = super::fit_weights::run(pool, programme, &model, as_of).await?;
    report.push('\n');
    report.push_str(&weights);
    Ok(FitOutcome { version, report })
}
