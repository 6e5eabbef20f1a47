use chrono::TimeZone;

use super::*;
use crate::domain::facts::OrderRec;

/// A small deterministic generator (SplitMix64), so the synthetic data is the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

const TRUTH: [f64; N_FEATURES] = [0.2, 0.8, 0.5, 0.4, 0.6, 0.0, 0.3, 0.4, 0.9, 0.2, 0.3, 0.7];

fn synthetic(n: usize, seed: u64) -> Vec<Sample> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let mut x = [0.0; N_FEATURES];
            x[0] = 1.0;
            x[1] = if rng.next() < 0.5 {
                0.0
            } else {
                3.0 * rng.next()
            };
            x[2] = 2.0 * rng.next() * rng.next();
            x[3] = 1.0 / (1.0 + (10.0 * rng.next()).floor());
            for (j, p) in [
                (4, 0.2),
                (5, 0.15),
                (6, 0.1),
                (7, 0.2),
                (9, 0.1),
                (10, 0.25),
                (11, 0.2),
            ] {
                x[j] = f64::from(u8::from(rng.next() < p));
            }
            // Two or more bad experiences only with none of the "one" flag.
            x[8] = f64::from(u8::from(x[7] == 0.0 && rng.next() < 0.1));
            let p = raw_score(&TRUTH, &x);
            Sample {
                x,
                lapsed: rng.next() < p,
            }
        })
        .collect()
}

#[test]
fn the_learner_recovers_known_weights_from_synthetic_history() {
    let samples = synthetic(60_000, 17);
    // Start far from the truth: the hand-set weights of the default programme.
    let prior = churn::default_lambda(&churn::ChurnRules::default());
    let fitted = fit(&samples, &prior, 1.0);
    assert!(fitted.converged, "{fitted:?}");
    for (i, name) in churn::FEATURES.iter().enumerate() {
        assert!(
            (fitted.lambda[i] - TRUTH[i]).abs() < 0.08,
            "{name}: learned {:.3}, true {:.3}",
            fitted.lambda[i],
            TRUTH[i]
        );
    }
    // The truth's own likelihood is not higher than the optimum's (penalty aside, it is close).
    let (at_truth, _, _) = objective(&samples, &TRUTH, &prior, 1.0);
    assert!(fitted.objective >= at_truth - 1e-6);
}

#[test]
fn a_heavy_ridge_keeps_the_hand_set_weights() {
    let samples = synthetic(5_000, 3);
    let prior = churn::default_lambda(&churn::ChurnRules::default());
    let fitted = fit(&samples, &prior, 1e7);
    for (i, (l, p)) in fitted.lambda.iter().zip(&prior).enumerate().skip(1) {
        assert!((l - p).abs() < 0.01, "{i}");
    }
}

#[test]
fn weights_stay_non_negative_when_the_data_says_a_driver_protects() {
    // A driver whose presence halves the lapse rate: its best λ is negative, so it sits at 0.
    let mut rng = Rng(5);
    let samples: Vec<Sample> = (0..20_000)
        .map(|_| {
            let mut x = [0.0; N_FEATURES];
            x[0] = 1.0;
            x[4] = f64::from(u8::from(rng.next() < 0.5));
            let p = if x[4] > 0.0 { 0.2 } else { 0.4 };
            Sample {
                x,
                lapsed: rng.next() < p,
            }
        })
        .collect();
    let fitted = fit(&samples, &[0.0; N_FEATURES], 1.0);
    assert_eq!(fitted.lambda[4], 0.0);
    assert!((fitted.lambda[0] - -(0.7f64.ln())).abs() < 0.03);
}

#[test]
fn isotonic_calibration_is_monotone_and_matches_observed_rates() {
    let mut rng = Rng(11);
    let raw: Vec<f64> = (0..50_000).map(|_| rng.next()).collect();
    // The true probability is the square of the raw score: the raw score overstates it.
    let lapsed: Vec<bool> = raw.iter().map(|r| rng.next() < r * r).collect();
    let cal = isotonic(&raw, &lapsed);
    assert!(
        cal.knots
            .windows(2)
            .all(|w| w[0].1 < w[1].1 && w[0].0 < w[1].0)
    );
    // Strictly increasing: the ranking, and so the AUC, is unchanged.
    let calibrated: Vec<f64> = raw.iter().map(|r| cal.apply(*r)).collect();
    assert_eq!(auc(&calibrated, &lapsed), auc(&raw, &lapsed));
    let before = worst_decile_gap(&reliability(&raw, &lapsed));
    let p: Vec<f64> = raw.iter().map(|r| cal.apply(*r)).collect();
    let after = worst_decile_gap(&reliability(&p, &lapsed));
    assert!(before > 0.15, "{before}");
    assert!(after < 0.02, "{after}");
    assert!((cal.apply(0.5) - 0.25).abs() < 0.03, "{}", cal.apply(0.5));
}

#[test]
fn calibration_interpolates_between_knots_and_is_flat_outside() {
    let c = Calibration {
        knots: vec![(0.2, 0.1), (0.6, 0.5)],
    };
    assert_eq!(c.apply(0.0), 0.1);
    assert!((c.apply(0.4) - 0.3).abs() < 1e-12);
    assert_eq!(c.apply(0.9), 0.5);
    assert_eq!(Calibration::default().apply(0.37), 0.37);
}

#[test]
fn auc_brier_and_the_reliability_table() {
    let labels = [false, false, true, true];
    assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &labels), 1.0);
    assert_eq!(auc(&[0.5; 4], &labels), 0.5);
    assert_eq!(auc(&[0.1, 0.6, 0.5, 0.9], &labels), 0.75);
    assert!((brier(&[0.0, 0.5, 1.0, 0.5], &labels) - 0.125).abs() < 1e-12);
    let p: Vec<f64> = (0..100).map(|i| f64::from(i) / 100.0).collect();
    let y: Vec<bool> = (0..100).map(|i| i >= 50).collect();
    let table = reliability(&p, &y);
    assert_eq!(table.len(), 10);
    assert!(table.iter().all(|d| d.customers == 10));
    assert_eq!(table[0].observed, 0.0);
    assert_eq!(table[9].observed, 1.0);
}

fn at(day: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0)
        .single()
        .expect("date")
        + Duration::days(day)
}

fn order(day: i64) -> OrderRec {
    OrderRec {
        at: at(day),
        amount: 1_000,
        discount: 0,
        coupon: None,
        channel: String::new(),
        category: String::new(),
    }
}

fn weekly_until(last_day: i64) -> Facts {
    let mut f = Facts::default();
    for d in (0..=last_day).step_by(7) {
        f.orders.insert(format!("o{d}"), order(d));
    }
    f
}

#[test]
fn a_sample_is_labelled_by_the_purchases_in_the_next_window() {
    let programme = crate::domain::programme::builtin();
    let h = i64::from(programme.churn.window_days);
    let facts = weekly_until(210);
    let buying = sample(&facts, &programme, None, at(100)).expect("sample");
    assert!(!buying.lapsed);
    // The last purchase is at day 210: from day 211 nothing comes.
    let gone = sample(&facts, &programme, None, at(211)).expect("sample");
    assert!(gone.lapsed);
    // One day before the last purchase, it still falls in the window.
    assert!(
        !sample(&facts, &programme, None, at(209))
            .expect("sample")
            .lapsed
    );
    assert!(h > 2);
    // Before the first purchase: no sample.
    assert!(sample(&facts, &programme, None, at(-1)).is_none());
    // The features are the ones the score uses.
    assert_eq!(buying.x[0], 1.0);
}

#[test]
fn gaps_that_lengthen_raise_the_drift_driver() {
    let programme = crate::domain::programme::builtin();
    let mut f = weekly_until(70);
    // Then gaps of 20 and 30 days.
    for d in [90, 120] {
        f.orders.insert(format!("late{d}"), order(d));
    }
    let m = Metrics::derive(&f, &programme, at(121));
    let g = m.gap_trend.expect("gap trend");
    assert!((g - 25.0 / 7.0).abs() < 1e-9, "{g}");
    assert!(churn::drifting(&m, &programme.churn));
    let steady = Metrics::derive(&weekly_until(120), &programme, at(121));
    assert!(!churn::drifting(&steady, &programme.churn));
    let a = churn::assess(&m, &programme.churn, None);
    assert!(
        a.drivers.iter().any(|d| d.name == "drift"),
        "{:?}",
        a.drivers
    );
}
