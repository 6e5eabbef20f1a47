//! Driver weights learned from the shop's own history (issue 17, item 2), and the calibration
//! of the churn score to a probability.
//!
//! - **Labels.** At past cutoffs `c` inside the history, every customer who had bought by `c`
//!   is labelled by whether they bought nothing in `(c, c + H]` (H = `[churn] window_days`).
//!   Their features are those [`churn::features`] computes from the facts before `c`.
//! - **Model.** The score keeps its noisy-OR form, `score = 1 − exp(−Σ λᵢ·xᵢ)` with `λᵢ ≥ 0`
//!   (see [`churn::FEATURES`]), so each driver's share of the score is still `λᵢ·xᵢ / Σ λ·x`
//!   and the contributions add up to the score. `P(no purchase) = 1 − exp(−η)` is a binomial
//!   model with a log link on the complement; its log-likelihood is concave in λ. The λ are
//!   fitted by maximum likelihood with a ridge penalty that pulls them towards the hand-set
//!   weights (so a driver the history says little about keeps its hand-set weight), by
//!   projected Newton steps on the box `λ ≥ 0`.
//! - **Splits.** The validation cutoff is `as_of − H` (its labels are the last H days); the
//!   training cutoffs are `as_of − 2H, as_of − 3H, …`, so no training label looks into the
//!   validation window. The calibration (isotonic, pooled adjacent violators over 100 quantile
//!   bins) is fitted on the latest training cutoff and judged on the validation cutoff.
//! - **Verdict.** The learned weights win when, on the validation split, their ROC AUC is higher
//!   and their calibrated Brier score lower than the hand-set weights' (calibrated the same way).
//!
//! The population model (BG/NBD) is the one given, fitted at `as_of`, for every cutoff: a small
//! look-ahead in the behavioural base that the validation split shares with the training ones.

use chrono::{DateTime, Duration, Utc};

use super::churn::{self, Calibration, DriverWeights, Model, N_FEATURES};
use super::facts::Facts;
use super::metrics::Metrics;
use super::programme::Programme;

/// One labelled customer at one cutoff.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub x: [f64; N_FEATURES],
    /// No purchase within H days of the cutoff.
    pub lapsed: bool,
}

/// The raw (uncalibrated) score of features `x` under weights `lambda`.
pub fn raw_score(lambda: &[f64; N_FEATURES], x: &[f64; N_FEATURES]) -> f64 {
    1.0 - (-eta(lambda, x)).exp()
}

fn eta(lambda: &[f64; N_FEATURES], x: &[f64; N_FEATURES]) -> f64 {
    lambda.iter().zip(x).map(|(l, v)| l * v).sum()
}

/// The sample of a customer at `cutoff`: None when they had not bought by then, or when
/// orders after the cutoff may have been folded into the archive (the label is unknown).
pub fn sample(
    facts: &Facts,
    programme: &Programme,
    model: Option<&Model>,
    cutoff: DateTime<Utc>,
) -> Option<Sample> {
    if facts.archive.last_at.is_some_and(|t| t > cutoff) {
        return None;
    }
    let m = Metrics::derive(facts, programme, cutoff);
    m.first_purchase_at?;
    let rules = &programme.churn;
    let (_, base) = churn::base(&m, rules, model);
    let until = cutoff + Duration::days(i64::from(rules.window_days));
    let bought = facts
        .orders
        .values()
        .any(|o| o.at > cutoff && o.at <= until);
    Some(Sample {
        x: churn::features(&m, rules, base),
        lapsed: !bought,
    })
}

/// What [`fit`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    pub lambda: [f64; N_FEATURES],
    /// Penalised log-likelihood at the optimum.
    pub objective: f64,
    pub iterations: u32,
    pub converged: bool,
}

/// Penalised log-likelihood, gradient and (negated) Hessian at `lambda`.
fn objective(
    samples: &[Sample],
    lambda: &[f64; N_FEATURES],
    prior: &[f64; N_FEATURES],
    ridge: f64,
) -> (f64, [f64; N_FEATURES], [[f64; N_FEATURES]; N_FEATURES]) {
    let mut ll = 0.0;
    let mut g = [0.0; N_FEATURES];
    let mut h = [[0.0; N_FEATURES]; N_FEATURES];
    for s in samples {
        let e = eta(lambda, &s.x).max(1e-9);
        let (d1, d2) = if s.lapsed {
            // ln(1 − e^(−η)): first derivative 1/(e^η − 1), minus the second e^η/(e^η − 1)².
            let em1 = e.exp_m1();
            ll += (-(-e).exp_m1()).ln();
            (1.0 / em1, (em1 + 1.0) / (em1 * em1))
        } else {
            ll -= e;
            (-1.0, 0.0)
        };
        for (j, xj) in s.x.iter().enumerate() {
            if *xj == 0.0 {
                continue;
            }
            g[j] += d1 * xj;
            if d2 > 0.0 {
                for (hjk, xk) in h[j].iter_mut().zip(&s.x) {
                    *hjk += d2 * xj * xk;
                }
            }
        }
    }
    for j in 0..N_FEATURES {
        let d = lambda[j] - prior[j];
        ll -= 0.5 * ridge * d * d;
        g[j] -= ridge * d;
        h[j][j] += ridge;
    }
    (ll, g, h)
}

/// Solves `a·x = b` for a symmetric positive definite `a` (Cholesky); None if it is not.
fn solve_spd(a: &[Vec<f64>], b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let d = a[i][i] - s;
                if d <= 0.0 || !d.is_finite() {
                    return None;
                }
                l[i][j] = d.sqrt();
            } else {
                l[i][j] = (a[i][j] - s) / l[j][j];
            }
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (y[i] - (i + 1..n).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    Some(x)
}

/// Fits λ ≥ 0 by penalised maximum likelihood, starting from `prior` with the baseline set to
/// the overall lapse rate. `ridge` is the penalty on `(λ − prior)²`, in samples.
pub fn fit(samples: &[Sample], prior: &[f64; N_FEATURES], ridge: f64) -> Fitted {
    let mut lambda = *prior;
    let n = samples.len().max(1) as f64;
    let rate = samples.iter().filter(|s| s.lapsed).count() as f64 / n;
    lambda[0] = lambda[0].max(-(1.0 - rate.clamp(0.01, 0.99)).ln());
    let (mut value, mut g, mut h) = objective(samples, &lambda, prior, ridge);
    let mut iterations = 0;
    let mut converged = false;
    while iterations < 200 {
        iterations += 1;
        // Free variables: off the bound, or pulled into the interior by the gradient.
        let free: Vec<usize> = (0..N_FEATURES)
            .filter(|j| lambda[*j] > 0.0 || g[*j] > 0.0)
            .collect();
        if free.is_empty() {
            converged = true;
            break;
        }
        let a: Vec<Vec<f64>> = free
            .iter()
            .map(|j| free.iter().map(|k| h[*j][*k]).collect())
            .collect();
        let b: Vec<f64> = free.iter().map(|j| g[*j]).collect();
        let step = solve_spd(&a, &b).unwrap_or(b);
        let mut t = 1.0;
        let mut improved = false;
        for _ in 0..40 {
            let mut next = lambda;
            for (i, j) in free.iter().enumerate() {
                next[*j] = (lambda[*j] + t * step[i]).max(0.0);
            }
            let (v, g2, h2) = objective(samples, &next, prior, ridge);
            if v.is_finite() && v >= value {
                let gain = v - value;
                lambda = next;
                (value, g, h) = (v, g2, h2);
                improved = gain > 1e-10 * n;
                break;
            }
            t *= 0.5;
        }
        if !improved {
            // No step gains any more: the projected gradient is the check.
            converged = (0..N_FEATURES).all(|j| {
                let pg = if lambda[j] > 0.0 { g[j] } else { g[j].max(0.0) };
                pg.abs() < 1e-4 * n
            });
            break;
        }
    }
    Fitted {
        lambda,
        objective: value,
        iterations,
        converged,
    }
}

/// An isotonic map from raw scores to the observed lapse rate: pooled adjacent violators over
/// (up to) 100 quantile bins, a knot at each pooled block's mean score, straight lines between
/// them and to (0, 0) and (1, 1).
pub fn isotonic(raw: &[f64], lapsed: &[bool]) -> Calibration {
    let mut idx: Vec<usize> = (0..raw.len()).collect();
    idx.sort_by(|a, b| raw[*a].total_cmp(&raw[*b]));
    let bins = 100.min(idx.len());
    // Blocks: (sum of scores, sum of labels, count).
    let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
    for b in 0..bins {
        let (from, to) = (b * idx.len() / bins, (b + 1) * idx.len() / bins);
        if from == to {
            continue;
        }
        let mut block = (0.0, 0.0, 0.0);
        for i in &idx[from..to] {
            block.0 += raw[*i];
            block.1 += f64::from(u8::from(lapsed[*i]));
            block.2 += 1.0;
        }
        blocks.push(block);
        while blocks.len() >= 2 {
            let k = blocks.len();
            let (a, b) = (blocks[k - 2], blocks[k - 1]);
            if a.1 / a.2 <= b.1 / b.2 {
                break;
            }
            blocks.truncate(k - 2);
            blocks.push((a.0 + b.0, a.1 + b.1, a.2 + b.2));
        }
    }
    // Knots at the blocks' mean scores, strictly increasing (a hair of slope where two
    // blocks have the same rate), from (0, 0) to (1, 1): a strictly increasing map keeps the
    // ranking, so calibration changes no AUC.
    let mut knots: Vec<(f64, f64)> = vec![(0.0, 0.0)];
    for (s, y, n) in &blocks {
        let (x, y) = (s / n, y / n);
        let Some(&(px, py)) = knots.last() else { break };
        if x <= px {
            continue;
        }
        knots.push((x, y.max(py + 1e-6).min(1.0 - 1e-6)));
    }
    if knots.last().is_some_and(|(x, _)| *x < 1.0) {
        knots.push((1.0, 1.0));
    }
    Calibration { knots }
}

/// Area under the ROC curve (Mann-Whitney, ties counted half); NaN without both classes.
pub fn auc(scores: &[f64], labels: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += idx[i..=j].iter().filter(|k| labels[**k]).count() as f64 * mid;
        i = j + 1;
    }
    let pos = labels.iter().filter(|l| **l).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// Mean squared error of probabilities against outcomes.
pub fn brier(p: &[f64], labels: &[bool]) -> f64 {
    let n = p.len().max(1) as f64;
    p.iter()
        .zip(labels)
        .map(|(p, y)| (p - f64::from(u8::from(*y))).powi(2))
        .sum::<f64>()
        / n
}

/// One decile of predicted probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decile {
    pub customers: usize,
    pub predicted: f64,
    pub observed: f64,
}

/// The reliability table: customers sorted by prediction, cut into ten equal groups, each
/// group's mean prediction against its observed rate.
pub fn reliability(p: &[f64], labels: &[bool]) -> Vec<Decile> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|a, b| p[*a].total_cmp(&p[*b]));
    (0..10)
        .filter_map(|d| {
            let (from, to) = (d * idx.len() / 10, (d + 1) * idx.len() / 10);
            let group = &idx[from..to];
            (!group.is_empty()).then(|| Decile {
                customers: group.len(),
                predicted: group.iter().map(|i| p[*i]).sum::<f64>() / group.len() as f64,
                observed: group.iter().filter(|i| labels[**i]).count() as f64 / group.len() as f64,
            })
        })
        .collect()
}

/// The largest |observed − predicted| over the deciles.
pub fn worst_decile_gap(table: &[Decile]) -> f64 {
    table
        .iter()
        .map(|d| (d.observed - d.predicted).abs())
        .fold(0.0, f64::max)
}

/// How a set of weights does on one split.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub auc: f64,
    /// Of the raw noisy-OR score, and after calibration.
    pub brier_raw: f64,
    pub brier: f64,
    pub reliability: Vec<Decile>,
    /// Alert lead time on the history's apparent churners (see [`lead_times`]).
    pub lead: LeadTimes,
}

/// Alert lead times: for customers with two or more purchase days whose next purchase was due
/// (last purchase + their usual interval) at least H days before `as_of` and never came, the
/// first weekly check from the last purchase at which the calibrated score reached the high
/// level. Lead = due − alert, in days (negative: after the due date).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeadTimes {
    pub churners: usize,
    pub leads: Vec<f64>,
}

impl LeadTimes {
    pub fn median(&self) -> Option<f64> {
        let mut l = self.leads.clone();
        l.sort_by(f64::total_cmp);
        let n = l.len();
        (n > 0).then(|| {
            if n % 2 == 1 {
                l[n / 2]
            } else {
                (l[n / 2 - 1] + l[n / 2]) / 2.0
            }
        })
    }

    pub fn before_due(&self) -> usize {
        self.leads.iter().filter(|l| **l > 0.0).count()
    }
}

/// The calibrated score of a customer at `t` under `weights` (what `churn::assess` gives with
/// these weights on the model).
pub fn score_at(
    facts: &Facts,
    programme: &Programme,
    model: Option<&Model>,
    weights: &DriverWeights,
    t: DateTime<Utc>,
) -> f64 {
    let rules = &programme.churn;
    let m = Metrics::derive(facts, programme, t);
    let (_, base) = churn::base(&m, rules, model);
    weights.calibration.apply(raw_score(
        &weights.vector(),
        &churn::features(&m, rules, base),
    ))
}

/// See [`LeadTimes`]. At most `limit` churners are followed (the first ones in `customers`).
pub fn lead_times(
    customers: &[&Facts],
    programme: &Programme,
    model: Option<&Model>,
    weights: &DriverWeights,
    as_of: DateTime<Utc>,
    limit: usize,
) -> LeadTimes {
    let high_at = programme.churn.high_at;
    let h = Duration::days(i64::from(weights.window_days));
    let mut out = LeadTimes::default();
    for facts in customers {
        if out.churners >= limit {
            break;
        }
        let (Some(last), Some(due)) = (
            last_purchase(facts, as_of),
            due_date(facts, programme, as_of),
        ) else {
            continue;
        };
        if due > as_of - h {
            continue;
        }
        out.churners += 1;
        let mut t = last + Duration::days(7);
        while t <= as_of {
            if score_at(facts, programme, model, weights, t) >= high_at {
                out.leads.push((due - t).num_seconds() as f64 / 86_400.0);
                break;
            }
            t += Duration::days(7);
        }
    }
    out
}

fn last_purchase(facts: &Facts, as_of: DateTime<Utc>) -> Option<DateTime<Utc>> {
    facts
        .orders
        .values()
        .map(|o| o.at)
        .filter(|t| *t <= as_of)
        .max()
}

/// The due date of the purchase after the last one, for a customer with two or more purchase
/// days before `as_of`.
fn due_date(facts: &Facts, programme: &Programme, as_of: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let last = last_purchase(facts, as_of)?;
    let m = Metrics::derive(facts, programme, last);
    let rhythm = m.own_rhythm_days.filter(|_| m.repeat_purchases > 0)?;
    Some(last + Duration::seconds((rhythm.max(1.0) * 86_400.0) as i64))
}

/// Settings of [`learn`].
#[derive(Debug, Clone, PartialEq)]
pub struct LearnOptions {
    /// Training cutoffs before the validation one, H apart.
    pub training_cutoffs: u32,
    /// Ridge penalty towards the hand-set weights, in samples.
    pub ridge: f64,
    /// Churners followed for the lead times.
    pub lead_customers: usize,
}

impl Default for LearnOptions {
    fn default() -> Self {
        Self {
            training_cutoffs: 4,
            ridge: 10.0,
            lead_customers: 2_000,
        }
    }
}

/// Why no weights could be learned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LearnError {
    #[error(
        "not enough history to learn churn weights: {0} (needs customers at `as_of − 2H` and both outcomes; H = [churn] window_days)"
    )]
    NotEnoughHistory(String),
}

/// Everything [`learn`] found: the candidates, how each did on the validation split, and the
/// weights to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Learned {
    pub window_days: u32,
    pub validation_cutoff: DateTime<Utc>,
    pub training_cutoffs: Vec<DateTime<Utc>>,
    pub training_samples: usize,
    pub training_lapsed: usize,
    pub validation_samples: usize,
    pub validation_lapsed: usize,
    pub fitted: Fitted,
    pub default: DriverWeights,
    pub learned: DriverWeights,
    pub default_eval: Evaluation,
    pub learned_eval: Evaluation,
    /// The learned weights have the higher AUC and the lower calibrated Brier score on the
    /// validation split.
    pub learned_wins: bool,
}

impl Learned {
    /// What to store: the learned weights when they won, else the hand-set ones, calibrated.
    pub fn chosen(&self) -> &DriverWeights {
        if self.learned_wins {
            &self.learned
        } else {
            &self.default
        }
    }
}

/// Learns the driver weights from `customers`' facts up to `as_of` (see the module notes).
pub fn learn(
    customers: &[&Facts],
    programme: &Programme,
    model: Option<&Model>,
    as_of: DateTime<Utc>,
    options: &LearnOptions,
) -> Result<Learned, LearnError> {
    let rules = &programme.churn;
    let h = Duration::days(i64::from(rules.window_days));
    let validation_cutoff = as_of - h;
    let training_cutoffs: Vec<DateTime<Utc>> = (1..=options.training_cutoffs.max(1))
        .map(|k| validation_cutoff - h * k as i32)
        .collect();
    let at = |cutoff: DateTime<Utc>| -> Vec<Sample> {
        customers
            .iter()
            .filter_map(|f| sample(f, programme, model, cutoff))
            .collect()
    };
    let per_cutoff: Vec<Vec<Sample>> = training_cutoffs.iter().map(|c| at(*c)).collect();
    let validation = at(validation_cutoff);
    let training: Vec<Sample> = per_cutoff.iter().flatten().cloned().collect();
    let lapsed = |s: &[Sample]| s.iter().filter(|s| s.lapsed).count();
    for (name, s) in [("training", &training), ("validation", &validation)] {
        let l = lapsed(s);
        if l < 20 || s.len() - l < 20 {
            return Err(LearnError::NotEnoughHistory(format!(
                "{} {name} samples, {l} of them lapsed",
                s.len()
            )));
        }
    }
    let prior = churn::default_lambda(rules);
    let fitted = fit(&training, &prior, options.ridge);
    // Calibration on the latest training cutoff, judged on the validation one.
    let latest = &per_cutoff[0];
    let labels = |s: &[Sample]| s.iter().map(|s| s.lapsed).collect::<Vec<_>>();
    let calibrate = |lambda: &[f64; N_FEATURES], learned: bool| {
        let raw: Vec<f64> = latest.iter().map(|s| raw_score(lambda, &s.x)).collect();
        DriverWeights::from_vector(
            lambda,
            isotonic(&raw, &labels(latest)),
            rules.window_days,
            learned,
        )
    };
    let default = calibrate(&prior, false);
    let learned = calibrate(&fitted.lambda, true);
    let y = labels(&validation);
    let evaluate = |w: &DriverWeights| {
        let lambda = w.vector();
        let raw: Vec<f64> = validation
            .iter()
            .map(|s| raw_score(&lambda, &s.x))
            .collect();
        let cal: Vec<f64> = raw.iter().map(|r| w.calibration.apply(*r)).collect();
        Evaluation {
            auc: auc(&raw, &y),
            brier_raw: brier(&raw, &y),
            brier: brier(&cal, &y),
            reliability: reliability(&cal, &y),
            lead: lead_times(
                customers,
                programme,
                model,
                w,
                as_of,
                options.lead_customers,
            ),
        }
    };
    let default_eval = evaluate(&default);
    let learned_eval = evaluate(&learned);
    let learned_wins =
        learned_eval.auc > default_eval.auc && learned_eval.brier < default_eval.brier;
    Ok(Learned {
        window_days: rules.window_days,
        validation_cutoff,
        training_cutoffs,
        training_samples: training.len(),
        training_lapsed: lapsed(&training),
        validation_samples: validation.len(),
        validation_lapsed: lapsed(&validation),
        fitted,
        default,
        learned,
        default_eval,
        learned_eval,
        learned_wins,
    })
}

/// The report `kizuna fit-model` prints and stores.
pub fn report(l: &Learned) -> String {
    let mut out = format!(
        "churn driver weights: P(no purchase within {} days); training cutoffs {} ({} samples, {} lapsed), validation cutoff {} ({} samples, {} lapsed); fit: {} iterations, {}",
        l.window_days,
        l.training_cutoffs
            .iter()
            .map(|c| c.format("%Y-%m-%d").to_string())
            .collect::<Vec<_>>()
            .join(", "),
        l.training_samples,
        l.training_lapsed,
        l.validation_cutoff.format("%Y-%m-%d"),
        l.validation_samples,
        l.validation_lapsed,
        l.fitted.iterations,
        if l.fitted.converged {
            "converged"
        } else {
            "NOT converged"
        }
    );
    out.push_str("\n  weight (as w = 1 − e^(−λ); baseline and rhythm are per unit of their feature)   hand-set   learned");
    let (d, w) = (l.default.vector(), l.learned.vector());
    for (i, name) in churn::FEATURES.iter().enumerate() {
        out.push_str(&format!(
            "\n  {name:<20} {:>8.3} {:>9.3}",
            1.0 - (-d[i]).exp(),
            1.0 - (-w[i]).exp()
        ));
    }
    out.push_str("\n  on the validation split        hand-set   learned");
    let (a, b) = (&l.default_eval, &l.learned_eval);
    let lead = |e: &Evaluation| {
        e.lead
            .median()
            .map_or("-".to_owned(), |m| format!("{m:.0} d"))
    };
    for (name, x, y) in [
        ("ROC AUC", format!("{:.3}", a.auc), format!("{:.3}", b.auc)),
        (
            "Brier (raw score)",
            format!("{:.4}", a.brier_raw),
            format!("{:.4}", b.brier_raw),
        ),
        (
            "Brier (calibrated)",
            format!("{:.4}", a.brier),
            format!("{:.4}", b.brier),
        ),
        (
            "worst decile gap",
            format!("{:.3}", worst_decile_gap(&a.reliability)),
            format!("{:.3}", worst_decile_gap(&b.reliability)),
        ),
        ("median alert lead", lead(a), lead(b)),
        (
            "alerted before due",
            format!("{}/{}", a.lead.before_due(), a.lead.churners),
            format!("{}/{}", b.lead.before_due(), b.lead.churners),
        ),
    ] {
        out.push_str(&format!("\n  {name:<28} {x:>10} {y:>9}"));
    }
    out.push_str("\n  reliability of the learned weights (validation, calibrated): decile predicted observed customers");
    for (i, r) in b.reliability.iter().enumerate() {
        out.push_str(&format!(
            "\n    {:>2} {:>8.3} {:>8.3} {:>8}",
            i + 1,
            r.predicted,
            r.observed,
            r.customers
        ));
    }
    out.push_str(&format!(
        "\n  verdict: {}",
        if l.learned_wins {
            "the learned weights beat the hand-set ones on the validation split (higher AUC, lower Brier): stored"
        } else {
            "the learned weights do NOT beat the hand-set ones on the validation split: the hand-set weights are stored, calibrated"
        }
    ));
    out
}

#[cfg(test)]
mod tests;
