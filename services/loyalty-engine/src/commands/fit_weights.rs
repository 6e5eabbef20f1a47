//! The churn driver weights step of `kizuna fit-model` (issue 17, item 2): reads the customers'
//! facts, learns the weights with `domain::churn_weights` against the model just fitted, and
//! stores the winner (the learned weights, or the hand-set ones calibrated) with the model
//! version. `kizuna-bench churn` calls [`learn`], the same path without the database.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::domain::churn::{DriverWeights, Model};
use crate::domain::churn_weights::{self, LearnOptions, Learned};
use crate::domain::facts::Facts;
use crate::domain::programme::Programme;
use crate::store::{churn_weights as stored, customers};

/// Customers whose facts the learner reads at most (an even sample by customer id beyond).
pub const MAX_CUSTOMERS: usize = 50_000;

/// Learns the weights over `customers` and says what came of it: the weights to store (None
/// when there was not enough history) and the report.
pub fn learn(
    customers: &[&Facts],
    programme: &Programme,
    model: Option<&Model>,
    as_of: DateTime<Utc>,
) -> (Option<Learned>, String) {
    match churn_weights::learn(customers, programme, model, as_of, &LearnOptions::default()) {
        Ok(l) => {
            let report = churn_weights::report(&l);
            (Some(l), report)
        }
        Err(e) => (
            None,
            format!("churn driver weights not learned, the hand-set weights stay: {e}"),
        ),
    }
}

/// Reads a sample of the customers' facts, learns, and stores the chosen weights with model
/// `model.version`. Returns the report.
pub async fn run(
    pool: &PgPool,
    programme: &Programme,
    model: &Model,
    as_of: DateTime<Utc>,
) -> anyhow::Result<String> {
    let total = usize::try_from(customers::count(pool).await?).unwrap_or(0);
    let every = total.div_ceil(MAX_CUSTOMERS).max(1);
    let bar = super::progress(total as u64, "reading customers for the churn weights");
    let mut facts: Vec<Facts> = Vec::with_capacity(total.min(MAX_CUSTOMERS));
    let mut seen = 0usize;
    customers::for_each_page(pool, 5_000, async |page| {
        for (state, _) in page {
            if seen.is_multiple_of(every) {
                facts.push(state.facts.clone());
            }
            seen += 1;
        }
        bar.inc(page.len() as u64);
        Ok(())
    })
    .await?;
    bar.finish_and_clear();
    let programme = programme.clone();
    let model_owned = model.clone();
    let (learned, mut report) = tokio::task::spawn_blocking(move || {
        let refs: Vec<&Facts> = facts.iter().collect();
        learn(&refs, &programme, Some(&model_owned), as_of)
    })
    .await?;
    if every > 1 {
        report.push_str(&format!(
            "\n  (learned over every {every}th customer: {} of {total})",
            total.div_ceil(every)
        ));
    }
    if let Some(l) = learned {
        let chosen: &DriverWeights = l.chosen();
        stored::store(pool, model.version, chosen, &report).await?;
    }
    Ok(report)
}
