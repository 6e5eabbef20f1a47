//! Choosing the purchase model by evidence (issue 17).
//!
//! Every model is fitted to the whole history given (`full`). When the caller also gives a
//! time split — each customer's summary at the calibration end `as_of − H` and the number of
//! purchases they made in the holdout `(as_of − H, as_of]` — every model is fitted again to the
//! calibration summaries alone and predicts each customer's holdout purchases
//! (`E[Y(H) | x, t_x, T]`). The model with the smallest **mean absolute error** per customer
//! in the holdout is chosen; the aggregate error `(Σ predicted − Σ actual) / Σ actual` is
//! reported alongside. Without a usable split (history too short, too few customers, or no
//! calibration fit converged) the model with the highest log-likelihood on the whole history
//! is chosen: all three have four parameters, so this is also the BIC (and AIC) choice.
//!
//! Only a model whose fit to the whole history converged can be chosen; the stored parameters
//! are always those of the whole-history fit.

use super::fit::{FitOptions, FitReport, fit_purchase_model};
use super::purchase::{ModelKind, PurchaseForecast, PurchaseModel};
use super::{CustomerSummary, ModelError, Weighted};

/// One customer group of the time split: the summary at the calibration end, the purchases
/// made in the holdout, and how many customers share both.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HoldoutRow {
    pub calibration: CustomerSummary,
    pub holdout_purchases: u32,
    pub weight: f64,
}

/// The time split: rows and the holdout length (in the summaries' time unit).
#[derive(Debug, Clone, PartialEq)]
pub struct Holdout {
    pub rows: Vec<HoldoutRow>,
    pub length: f64,
}

/// How a model predicted the holdout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HoldoutScore {
    /// Mean absolute error of the predicted purchases per customer.
    pub mae: f64,
    /// `(Σ predicted − Σ actual) / Σ actual`.
    pub aggregate_error: f64,
    /// Customers scored (total weight).
    pub customers: f64,
}

/// One model's evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub kind: ModelKind,
    /// The fit to the whole history, or why there is none.
    pub fit: Result<FitReport<PurchaseModel>, ModelError>,
    /// The holdout score of the calibration fit, or why there is none (`None`: no split).
    pub holdout: Option<Result<HoldoutScore, String>>,
}

impl Candidate {
    fn converged(&self) -> Option<&FitReport<PurchaseModel>> {
        self.fit.as_ref().ok().filter(|f| f.converged)
    }
}

/// The outcome: the candidates, which one was chosen, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub candidates: Vec<Candidate>,
    pub chosen: ModelKind,
    /// The criterion, in words.
    pub selection: String,
}

impl Choice {
    /// The chosen model's whole-history fit.
    pub fn chosen_fit(&self) -> Option<&FitReport<PurchaseModel>> {
        self.candidates
            .iter()
            .find(|c| c.kind == self.chosen)
            .and_then(Candidate::converged)
    }
}

/// Fit `kinds` (every model for `auto`) and choose one (see the module docs).
///
/// # Errors
/// [`ModelError::InsufficientData`] if no candidate's whole-history fit converged (the
/// candidates' reasons are in the message).
pub fn choose(
    full: &[Weighted<CustomerSummary>],
    holdout: Option<&Holdout>,
    force: Option<ModelKind>,
    options: &FitOptions,
) -> Result<Choice, ModelError> {
    let kinds: Vec<ModelKind> = force.map_or(ModelKind::ALL.to_vec(), |k| vec![k]);
    let split = holdout.filter(|_| force.is_none());
    let calibration: Option<Vec<Weighted<CustomerSummary>>> = split.map(|h| {
        h.rows
            .iter()
            .map(|r| Weighted {
                value: r.calibration,
                weight: r.weight,
            })
            .collect()
    });
    let candidates: Vec<Candidate> = kinds
        .iter()
        .map(|&kind| {
            let fit = fit_purchase_model(kind, full, options);
            let holdout = split.zip(calibration.as_deref()).map(|(h, cal)| {
                let fit = fit_purchase_model(kind, cal, options).map_err(|e| e.to_string())?;
                if !fit.converged {
                    return Err(format!("calibration fit did not converge: {}", fit.reason));
                }
                score(&fit.params, h)
            });
            Candidate { kind, fit, holdout }
        })
        .collect();
    let failures = || {
        candidates
            .iter()
            .map(|c| match &c.fit {
                Ok(f) => format!("{}: {}", c.kind, f.reason),
                Err(e) => format!("{}: {e}", c.kind),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let converged = || candidates.iter().filter(|c| c.converged().is_some());
    let by_holdout = converged()
        .filter_map(|c| match &c.holdout {
            Some(Ok(s)) => Some((c.kind, s.mae)),
            _ => None,
        })
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let (chosen, selection) = if let Some(kind) = force {
        if converged().next().is_none() {
            return Err(ModelError::InsufficientData(format!(
                "the {kind} fit did not converge: {}",
                failures()
            )));
        }
        (kind, format!("forced: --model {kind}"))
    } else if let (Some((kind, mae)), Some(h)) = (by_holdout, split) {
        (
            kind,
            format!(
                "time-split holdout: calibrated on the history before the last {:.2} time units, \
                 smallest mean absolute error of holdout purchases per customer ({mae:.4})",
                h.length
            ),
        )
    } else {
        let best = converged()
            .filter_map(|c| c.converged().map(|f| (c.kind, f.log_likelihood)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((kind, ll)) = best else {
            return Err(ModelError::InsufficientData(format!(
                "no purchase model converged: {}",
                failures()
            )));
        };
        let why = if split.is_some() {
            "no calibration fit could be scored on the holdout"
        } else {
            "no time split (history too short)"
        };
        (
            kind,
            format!(
                "{why}: highest log-likelihood on the whole history ({ll:.2}; four parameters \
                 each, so also the BIC choice)"
            ),
        )
    };
    Ok(Choice {
        candidates,
        chosen,
        selection,
    })
}

/// MAE and aggregate error of `model`'s holdout predictions.
fn score(model: &PurchaseModel, holdout: &Holdout) -> Result<HoldoutScore, String> {
    let (mut abs, mut predicted, mut actual, mut total) = (0.0, 0.0, 0.0, 0.0);
    for row in &holdout.rows {
        let p = model
            .expected_purchases_conditional(holdout.length, &row.calibration)
            .map_err(|e| e.to_string())?;
        let a = f64::from(row.holdout_purchases);
        abs += row.weight * (p - a).abs();
        predicted += row.weight * p;
        actual += row.weight * a;
        total += row.weight;
    }
    if total <= 0.0 {
        return Err("no customer in the calibration period".to_owned());
    }
    Ok(HoldoutScore {
        mae: abs / total,
        aggregate_error: if actual > 0.0 {
            (predicted - actual) / actual
        } else {
            f64::NAN
        },
        customers: total,
    })
}

#[cfg(test)]
mod tests {
    use super::super::reference_tests::cdnow_summaries;
    use super::*;

    #[test]
    fn without_a_split_the_log_likelihood_decides() {
        let data = cdnow_summaries();
        let choice = choose(&data, None, None, &FitOptions::default()).expect("a choice");
        assert_eq!(choice.candidates.len(), 3);
        let best = choice
            .candidates
            .iter()
            .filter_map(|c| c.fit.as_ref().ok().map(|f| (c.kind, f.log_likelihood)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|b| b.0);
        assert_eq!(Some(choice.chosen), best);
        // On CDNOW: MBG/NBD −9582.13 > BG/NBD −9582.43 > Pareto/NBD −9594.97 (as lifetimes).
        assert_eq!(choice.chosen, ModelKind::MbgNbd);
        assert!(
            choice.selection.starts_with("no time split"),
            "{}",
            choice.selection
        );
        assert!(choice.candidates.iter().all(|c| c.holdout.is_none()));
    }

    #[test]
    fn the_smallest_holdout_error_wins_and_a_forced_model_is_alone() {
        let data = cdnow_summaries();
        // Holdout purchases as Pareto/NBD at lifetimes' CDNOW parameters expects them, rounded:
        // the criterion must pick whichever model predicts them best, by its own MAE.
        let pareto = PurchaseModel::new(
            ModelKind::ParetoNbd,
            [0.553_265_7, 10.577_411, 0.606_187_9, 11.666_954],
        )
        .expect("valid");
        let rows = data
            .iter()
            .map(|c| HoldoutRow {
                calibration: c.value,
                holdout_purchases: pareto
                    .expected_purchases_conditional(13.0, &c.value)
                    .expect("finite")
                    .round() as u32,
                weight: c.weight,
            })
            .collect();
        let holdout = Holdout { rows, length: 13.0 };
        let choice = choose(&data, Some(&holdout), None, &FitOptions::default()).expect("a choice");
        let maes: Vec<(ModelKind, f64)> = choice
            .candidates
            .iter()
            .map(|c| match &c.holdout {
                Some(Ok(s)) => (c.kind, s.mae),
                other => panic!("{}: no holdout score: {other:?}", c.kind),
            })
            .collect();
        let best = maes.iter().min_by(|a, b| a.1.total_cmp(&b.1)).map(|b| b.0);
        assert_eq!(Some(choice.chosen), best, "{maes:?}");
        assert!(
            choice.selection.starts_with("time-split holdout"),
            "{}",
            choice.selection
        );

        let forced = choose(
            &data,
            Some(&holdout),
            Some(ModelKind::BgNbd),
            &FitOptions::default(),
        )
        .expect("a choice");
        assert_eq!(forced.candidates.len(), 1);
        assert_eq!(forced.chosen, ModelKind::BgNbd);
        assert!(forced.candidates[0].holdout.is_none());
        assert!(forced.chosen_fit().is_some());
    }
}
