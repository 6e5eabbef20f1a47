//! `churn_models`: fitted population parameters, versioned.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::domain::churn::Model;
use crate::domain::model::{BgNbdParams, FitReport, GammaGammaParams};

/// The latest model, if any was stored.
pub async fn latest(pool: &PgPool) -> anyhow::Result<Option<(Model, DateTime<Utc>)>> {
    type Row = (
        i64,
        DateTime<Utc>,
        f64,
        f64,
        f64,
        f64,
        Option<f64>,
        Option<f64>,
        Option<f64>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT version, fitted_at, r, alpha, a, b, gg_p, gg_q, gg_gamma FROM churn_models ORDER BY version DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    let Some((version, fitted_at, r, alpha, a, b, p, q, gamma)) = row else {
        return Ok(None);
    };
    let purchases = BgNbdParams::new(r, alpha, a, b)?;
    let spend = match (p, q, gamma) {
        (Some(p), Some(q), Some(g)) => GammaGammaParams::new(p, q, g).ok(),
        _ => None,
    };
    Ok(Some((
        Model {
            version,
            purchases,
            spend,
            weights: None,
        },
        fitted_at,
    )))
}

/// Stores a converged fit; returns its version.
pub async fn store(
    pool: &PgPool,
    as_of: DateTime<Utc>,
    purchases: &FitReport<BgNbdParams>,
    spend: Option<&FitReport<GammaGammaParams>>,
    report: &str,
) -> anyhow::Result<i64> {
    let p = &purchases.params;
    let (version,): (i64,) = sqlx::query_as(
        "INSERT INTO churn_models (as_of, r, alpha, a, b, log_likelihood, customers,
                                   gg_p, gg_q, gg_gamma, gg_log_likelihood, gg_customers, report)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         RETURNING version",
    )
    .bind(as_of)
    .bind(p.r())
    .bind(p.alpha())
    .bind(p.a())
    .bind(p.b())
    .bind(purchases.log_likelihood)
    .bind(purchases.customers)
    .bind(spend.map(|s| s.params.p()))
    .bind(spend.map(|s| s.params.q()))
    .bind(spend.map(|s| s.params.gamma()))
    .bind(spend.map(|s| s.log_likelihood))
    .bind(spend.map(|s| s.customers))
    .bind(report)
    .fetch_one(pool)
    .await?;
    Ok(version)
}

/// What the console shows of the latest model.
#[derive(Debug, Clone)]
pub struct ModelSummary {
    pub version: i64,
    pub fitted_at: DateTime<Utc>,
    pub customers: f64,
    pub gamma_gamma: bool,
}

/// The latest model's version, fit time and size, if any was stored.
pub async fn latest_info(pool: &PgPool) -> sqlx::Result<Option<ModelSummary>> {
    let row: Option<(i64, DateTime<Utc>, f64, bool)> = sqlx::query_as(
        "SELECT version, fitted_at, customers, gg_p IS NOT NULL FROM churn_models ORDER BY version DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(
        |(version, fitted_at, customers, gamma_gamma)| ModelSummary {
            version,
            fitted_at,
            customers,
            gamma_gamma,
        },
    ))
}
