//! `churn_weights`: the driver weights and calibration stored with a model version.

use sqlx::PgPool;

use crate::domain::churn::DriverWeights;

/// The weights stored with model `version`, if any. A row that no longer decodes (an older
/// shape) is ignored with a warning: the engine then runs on the hand-set weights.
pub async fn for_version(pool: &PgPool, version: i64) -> anyhow::Result<Option<DriverWeights>> {
    let row: Option<(serde_json::Value,)> =
        sqlx::query_as("SELECT weights FROM churn_weights WHERE model_version = $1")
            .bind(version)
            .fetch_optional(pool)
            .await?;
    Ok(row.and_then(
        |(value,)| match serde_json::from_value::<DriverWeights>(value) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(version, error = %e, "stored churn weights do not decode; using the hand-set weights");
                None
            }
        },
    ))
}

/// Stores the weights of model `version`.
pub async fn store(
    pool: &PgPool,
    version: i64,
    weights: &DriverWeights,
    report: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO churn_weights (model_version, learned, weights, report) VALUES ($1, $2, $3, $4)",
    )
    .bind(version)
    .bind(weights.learned)
    .bind(serde_json::to_value(weights)?)
    .bind(report)
    .execute(pool)
    .await?;
    Ok(())
}
