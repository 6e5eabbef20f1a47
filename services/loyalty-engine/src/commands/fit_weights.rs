//! The churn driver weights step of `kizuna fit-model` (issue 17, item 2): takes a sample of
//! the customers' facts while the command reads them for the purchase models, learns the weights with `domain::churn_weights` against the model just fitted, and
//! stores the winner (the learned weights, or the hand-set ones calibrated) with the model
//! version. `kizuna-bench churn` calls [`learn`], the same path without the database.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::domain::churn::{DriverWeights, Model};
use crate::domain::churn_weights::{self, LearnOptions, Learned};
use crate::domain::facts::Facts;
use crate::domain::programme::Programme;
use crate::store::churn_weights as stored;

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

/// An even sample of the customers' facts for the learner, taken while `fit-model` reads every
/// customer once for the purchase models: every `every`th customer, at most about
/// [`MAX_CUSTOMERS`].
#[derive(Debug)]
pub struct Sample {
    facts: Vec<Facts>,
    every: usize,
    total: usize,
    seen: usize,
}

impl Sample {
    /// A sample of `total` customers (the count before the read).
    pub fn new(total: usize) -> Self {
        Self {
            facts: Vec::with_capacity(total.min(MAX_CUSTOMERS)),
            every: total.div_ceil(MAX_CUSTOMERS).max(1),
            total,
            seen: 0,
        }
    }

    /// Offers the next customer read; keeps a copy of their facts when they are in the sample.
    pub fn offer(&mut self, facts: &Facts) {
        if self.seen.is_multiple_of(self.every) {
            self.facts.push(facts.clone());
        }
        self.seen += 1;
    }
}

/// Learns over `sample`, and stores the chosen weights with model `model.version`. Returns the
/// report.
pub async fn run(
    pool: &PgPool,
    programme: &Programme,
    model: &Model,
    as_of: DateTime<Utc>,
    sample: Sample,
) -> anyhow::Result<String> {
    let Sample {
        facts,
        every,
        total,
        ..
    } = sample;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_takes_every_nth_customer_up_to_the_limit() {
        let facts = Facts::default();
        let mut small = Sample::new(10);
        for _ in 0..10 {
            small.offer(&facts);
        }
        assert_eq!((small.every, small.facts.len()), (1, 10));
        let total = MAX_CUSTOMERS * 2 + 1;
        let mut big = Sample::new(total);
        for _ in 0..total {
            big.offer(&facts);
        }
        assert_eq!(big.every, 3);
        assert_eq!(big.facts.len(), total.div_ceil(3));
        assert!(big.facts.len() <= MAX_CUSTOMERS);
    }
}
