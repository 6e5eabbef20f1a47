//! `churn_models`: fitted population parameters, versioned, with the evidence of the model
//! choice (`churn_model_candidates`).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::domain::churn::Model;
use crate::domain::model::choice::Choice;
use crate::domain::model::{FitReport, GammaGammaParams, ModelKind, PurchaseModel};

/// The latest model, if any was stored.
pub async fn latest(pool: &PgPool) -> anyhow::Result<Option<(Model, DateTime<Utc>)>> {
    type Row = (
        i64,
        DateTime<Utc>,
        String,
        f64,
        f64,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<f64>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT version, fitted_at, model, r, alpha, a, b, s, beta, gg_p, gg_q, gg_gamma
         FROM churn_models ORDER BY version DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    let Some((version, fitted_at, kind, r, alpha, a, b, s, beta, p, q, gamma)) = row else {
        return Ok(None);
    };
    let kind: ModelKind = kind.parse()?;
    let (third, fourth) = match kind {
        ModelKind::ParetoNbd => (s, beta),
        ModelKind::BgNbd | ModelKind::MbgNbd => (a, b),
    };
    let (Some(third), Some(fourth)) = (third, fourth) else {
        anyhow::bail!("churn model version {version} ({kind}) lacks parameters");
    };
    let purchases = PurchaseModel::new(kind, [r, alpha, third, fourth])?;
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

/// Stores the chosen, converged fit and every candidate's evidence; returns the version.
pub async fn store(
    pool: &PgPool,
    as_of: DateTime<Utc>,
    choice: &Choice,
    spend: Option<&FitReport<GammaGammaParams>>,
    report: &str,
) -> anyhow::Result<i64> {
    let Some(purchases) = choice.chosen_fit() else {
        anyhow::bail!("the chosen model {} did not converge", choice.chosen);
    };
    let [r, alpha, third, fourth] = purchases.params.params();
    let (a, b, s, beta) = match choice.chosen {
        ModelKind::ParetoNbd => (None, None, Some(third), Some(fourth)),
        ModelKind::BgNbd | ModelKind::MbgNbd => (Some(third), Some(fourth), None, None),
    };
    let mut tx = pool.begin().await?;
    let (version,): (i64,) = sqlx::query_as(
        "INSERT INTO churn_models (as_of, model, r, alpha, a, b, s, beta, log_likelihood, customers,
                                   gg_p, gg_q, gg_gamma, gg_log_likelihood, gg_customers, report,
                                   selection)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         RETURNING version",
    )
    .bind(as_of)
    .bind(choice.chosen.as_str())
    .bind(r)
    .bind(alpha)
    .bind(a)
    .bind(b)
    .bind(s)
    .bind(beta)
    .bind(purchases.log_likelihood)
    .bind(purchases.customers)
    .bind(spend.map(|s| s.params.p()))
    .bind(spend.map(|s| s.params.q()))
    .bind(spend.map(|s| s.params.gamma()))
    .bind(spend.map(|s| s.log_likelihood))
    .bind(spend.map(|s| s.customers))
    .bind(report)
    .bind(&choice.selection)
    .fetch_one(&mut *tx)
    .await?;
    for c in &choice.candidates {
        let (converged, params, ll, reason) = match &c.fit {
            Ok(f) => {
                let params: serde_json::Map<String, serde_json::Value> = c
                    .kind
                    .param_names()
                    .iter()
                    .zip(f.params.params())
                    .map(|(n, v)| ((*n).to_owned(), serde_json::json!(v)))
                    .collect();
                (
                    f.converged,
                    Some(serde_json::Value::Object(params)),
                    Some(f.log_likelihood),
                    f.reason.clone(),
                )
            }
            Err(e) => (false, None, None, e.to_string()),
        };
        let (mae, aggregate, reason) = match &c.holdout {
            Some(Ok(h)) => (Some(h.mae), Some(h.aggregate_error), reason),
            Some(Err(why)) => (None, None, format!("{reason}; holdout: {why}")),
            None => (None, None, reason),
        };
        sqlx::query(
            "INSERT INTO churn_model_candidates (version, model, chosen, converged, params,
                 log_likelihood, holdout_mae, holdout_aggregate_error, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(version)
        .bind(c.kind.as_str())
        .bind(c.kind == choice.chosen)
        .bind(converged)
        .bind(params)
        .bind(ll)
        .bind(mae)
        .bind(aggregate.filter(|v| v.is_finite()))
        .bind(reason)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
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
