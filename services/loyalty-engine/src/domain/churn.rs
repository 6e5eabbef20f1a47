//! Churn risk that says why: a behavioural base from the fitted purchase model (BG/NBD,
//! Pareto/NBD or MBG/NBD: 1 − P(alive)), raised by
//! attitudinal and service drivers, each with its contribution, a level with hysteresis, and
//! the play marketing should run.
//!
//! The score combines the base and the drivers as independent risks (a "noisy OR"):
//! `score = 1 − (1 − base) · Π (1 − wᵢ)` over the drivers present. The score is shared out
//! in proportion to each term's `−ln(1 − wᵢ)` (its share of the combined log-survival), so
//! contributions sum to the score and do not depend on the order drivers are listed in.

use chrono::{DateTime, Utc};

use super::metrics::{Metrics, NpsCategory};
use super::model::{
    ClvHorizon, CustomerSummary, GammaGammaParams, PurchaseForecast, PurchaseModel, clv,
};
use super::segment::Segment;

pub use super::programme::ChurnRules;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Low,
    Medium,
    High,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Play {
    /// Dissatisfaction or service drives the risk: fix the experience, no promotion.
    ServiceRecovery,
    /// A lapse with good sentiment: a win-back offer is welcome.
    WinBackOffer,
    /// A high-value hostage: personal, fast outreach.
    VipOutreach,
    /// A rebel: the standard playbook.
    Playbook,
    /// Risk went down: nothing to do.
    None,
}

impl Play {
    pub fn as_str(self) -> &'static str {
        match self {
            Play::ServiceRecovery => "service_recovery",
            Play::WinBackOffer => "win_back_offer",
            Play::VipOutreach => "vip_outreach",
            Play::Playbook => "playbook",
            Play::None => "none",
        }
    }
}

/// One reason for the score and its share.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Driver {
    pub name: String,
    pub contribution: f64,
    pub detail: String,
}

/// Whether a driver is about satisfaction or service (as opposed to plain inactivity).
fn is_dissatisfaction(name: &str) -> bool {
    matches!(
        name,
        "detractor_nps" | "low_csat" | "high_ces" | "bad_experiences" | "aging_ticket"
    )
}

/// The fitted population models.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub version: i64,
    /// The purchase model chosen by `kizuna fit-model` (BG/NBD, Pareto/NBD or MBG/NBD).
    pub purchases: PurchaseModel,
    pub spend: Option<GammaGammaParams>,
    /// Driver weights and calibration learned by `kizuna fit-model` (None: the hand-set
    /// weights of the programme's `[churn]` section, uncalibrated).
    pub weights: Option<DriverWeights>,
}

/// The score's terms, in order. Each is a non-negative feature `xᵢ` with a weight `λᵢ ≥ 0` in
/// log-survival form: `score = 1 − exp(−Σ λᵢ·xᵢ)`, a noisy OR in which a present driver with
/// weight `w` has `λ = −ln(1 − w)`.
/// - `baseline`: 1 for everyone (learned only; 0 by hand);
/// - `inactivity`: `−ln(1 − base)`, base = 1 − P(alive) or the rhythm fallback (λ = 1 by hand);
/// - `rhythm`: `−ln(1 − e^(−H/E))`, a quiet spell of H days for an active customer buying every
///   E days (learned only);
/// - `few_purchases`: `1 / (1 + x)` with x repeat purchase days: new and occasional
///   customers lapse more often (learned only);
/// - the drivers: 1 when present.
pub const FEATURES: [&str; 12] = [
    "baseline",
    "inactivity",
    "rhythm",
    "few_purchases",
    "detractor_nps",
    "low_csat",
    "high_ces",
    "bad_experience_1",
    "bad_experience_2",
    "aging_ticket",
    "falling_spend",
    "drift",
];

/// Number of features.
pub const N_FEATURES: usize = FEATURES.len();

/// A monotone map from the raw score to a calibrated probability: straight lines between
/// `(raw, calibrated)` knots, flat outside them. No knots: the identity.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Calibration {
    pub knots: Vec<(f64, f64)>,
}

impl Calibration {
    pub fn apply(&self, raw: f64) -> f64 {
        let k = &self.knots;
        let (Some(first), Some(last)) = (k.first(), k.last()) else {
            return raw;
        };
        if raw <= first.0 {
            return first.1;
        }
        if raw >= last.0 {
            return last.1;
        }
        let i = k.partition_point(|(x, _)| *x <= raw).clamp(1, k.len() - 1);
        let ((x0, y0), (x1, y1)) = (k[i - 1], k[i]);
        if x1 <= x0 {
            return y1;
        }
        y0 + (y1 - y0) * (raw - x0) / (x1 - x0)
    }
}

/// Driver weights learned from the shop's own history, with the calibration of the score
/// they give (see `churn_weights`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DriverWeights {
    /// λ by feature name (see [`FEATURES`]); a missing name is 0.
    pub lambda: std::collections::BTreeMap<String, f64>,
    pub calibration: Calibration,
    /// H: the score is the probability of no purchase within this many days.
    pub window_days: u32,
    /// Learned (true) or the hand-set defaults, calibrated (false).
    pub learned: bool,
}

impl DriverWeights {
    pub fn vector(&self) -> [f64; N_FEATURES] {
        let mut v = [0.0; N_FEATURES];
        for (i, name) in FEATURES.iter().enumerate() {
            v[i] = self.lambda.get(*name).copied().unwrap_or(0.0).max(0.0);
        }
        v
    }

    pub fn from_vector(
        v: &[f64; N_FEATURES],
        calibration: Calibration,
        window_days: u32,
        learned: bool,
    ) -> Self {
        Self {
            lambda: FEATURES
                .iter()
                .zip(v)
                .map(|(n, l)| ((*n).to_owned(), *l))
                .collect(),
            calibration,
            window_days,
            learned,
        }
    }
}

/// `−ln(1 − w)`, with `w` kept below 1.
fn log_survival(w: f64) -> f64 {
    -(1.0 - w.clamp(0.0, 0.999_999)).ln()
}

/// The hand-set weights of the programme's `[churn]` section as λ.
pub fn default_lambda(rules: &ChurnRules) -> [f64; N_FEATURES] {
    [
        0.0,
        1.0,
        0.0,
        0.0,
        log_survival(rules.detractor),
        log_survival(rules.low_csat),
        log_survival(rules.high_ces),
        log_survival(rules.bad_experience[0]),
        log_survival(rules.bad_experience[1]),
        log_survival(rules.aging_ticket),
        log_survival(rules.falling_trend),
        log_survival(rules.drift),
    ]
}

/// Whether the customer drifts away against their own rhythm (see `ChurnRules::drift`).
pub fn drifting(m: &Metrics, rules: &ChurnRules) -> bool {
    m.gap_trend.is_some_and(|g| g >= rules.drift_gap_ratio)
        || m.frequency_trend
            .is_some_and(|f| f <= rules.drift_frequency_below)
}

fn drift_detail(m: &Metrics) -> String {
    let mut parts = Vec::new();
    if let Some(g) = m.gap_trend {
        parts.push(format!("recent gaps {g:.1}× the earlier ones"));
    }
    if let Some(f) = m.frequency_trend {
        parts.push(format!(
            "purchase days at {:.0}% of the previous period",
            f * 100.0
        ));
    }
    format!("drifting away: {}", parts.join(", "))
}

/// The feature vector of a customer with behavioural base `base` (see [`FEATURES`]).
pub fn features(m: &Metrics, rules: &ChurnRules, base: f64) -> [f64; N_FEATURES] {
    let h = f64::from(rules.window_days);
    let quiet = (-(h / m.expected_interval_days.max(1.0))).exp();
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let aging = m
        .bad_experience_kinds
        .contains(&super::metrics::BadExperience::AgingOpenTicket)
        && m.oldest_open_ticket_days.is_some();
    [
        1.0,
        log_survival(base),
        if m.first_purchase_at.is_some() {
            log_survival(quiet)
        } else {
            0.0
        },
        if m.first_purchase_at.is_some() {
            1.0 / (1.0 + f64::from(m.repeat_purchases))
        } else {
            0.0
        },
        flag(m.nps_category == NpsCategory::Detractor),
        flag(m.csat_avg.is_some_and(|v| v <= rules.low_csat_max)),
        flag(m.ces_avg.is_some_and(|v| v >= rules.high_ces_min)),
        flag(m.bad_experiences == 1),
        flag(m.bad_experiences >= 2),
        flag(aging),
        flag(m.spend_trend.is_some_and(|t| t < rules.falling_trend_below)),
        flag(drifting(m, rules)),
    ]
}

/// P(alive) of the fitted purchase model (for BG/NBD only once the customer has bought again) and the
/// behavioural base: 1 − P(alive), or the rhythm fallback.
pub fn base(m: &Metrics, rules: &ChurnRules, model: Option<&Model>) -> (Option<f64>, f64) {
    let p_alive = match (model, summary(m)) {
        // BG/NBD puts P(alive) at 1 without a repeat purchase; the others say more.
        (Some(model), Some(s)) if s.x() > 0 || model.purchases.p_alive_without_repeat() => {
            model.purchases.p_alive(&s).ok()
        }
        _ => None,
    };
    let base = match p_alive {
        Some(p) => (1.0 - p).clamp(0.0, 1.0),
        None => rhythm_lapse(m, rules.lapse_prior),
    };
    (p_alive, base)
}

/// A churn assessment at one moment.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Assessment {
    pub score: f64,
    /// BG/NBD P(alive), when a model is fitted and the customer has bought.
    pub p_alive: Option<f64>,
    /// 1 − P(alive), or the rhythm fallback.
    pub base: f64,
    /// Ranked, largest first (the base appears as "inactivity").
    pub drivers: Vec<Driver>,
    pub expected_purchases: Option<f64>,
    pub clv_minor: Option<f64>,
    pub model_version: Option<i64>,
    /// The purchase model that scored (`bgnbd`, `pareto-nbd`, `mbgnbd`), when one is fitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// The BG/NBD statistics of a customer in weeks: (x, t_x, T).
pub fn summary(m: &Metrics) -> Option<CustomerSummary> {
    let first = m.first_purchase_at?;
    let age_weeks = ((m.as_of - first).num_seconds() as f64 / 86_400.0 / 7.0).max(0.0);
    let t_x = (m.recency_days / 7.0).min(age_weeks);
    CustomerSummary::new(m.repeat_purchases, t_x, age_weeks).ok()
}

/// Probability of having lapsed from the customer's own rhythm alone, used without a fitted
/// model and for customers with a single purchase day (for whom BG/NBD's P(alive) is 1 by
/// construction). An active customer's gaps are taken as exponential with the expected
/// interval `E`, so `d` silent days happen to an active customer with probability `e^(−d/E)`;
/// with a prior lapse probability `p₀`, Bayes gives
/// `P(lapsed | d) = p₀ / (p₀ + (1 − p₀)·e^(−d/E))`: 0.05 at once, 0.28 after 2E, 0.74 after
/// 4E (with p₀ = 0.05).
pub fn rhythm_lapse(m: &Metrics, prior: f64) -> f64 {
    match m.days_since_last_purchase {
        Some(d) => {
            let e = m.expected_interval_days.max(1.0);
            let survive = (-(d / e)).exp();
            prior / (prior + (1.0 - prior) * survive)
        }
        None => 0.0,
    }
}

/// Assesses churn risk from the metrics (and the model, when one is fitted).
pub fn assess(m: &Metrics, rules: &ChurnRules, model: Option<&Model>) -> Assessment {
    let summary = summary(m);
    let (p_alive, base) = base(m, rules, model);
    let horizon_weeks = f64::from(rules.horizon_days) / 7.0;
    let (expected_purchases, clv_minor) = match (model, &summary) {
        (Some(model), Some(s)) => {
            let purchases = model
                .purchases
                .expected_purchases_conditional(horizon_weeks, s)
                .ok();
            let value = model.spend.as_ref().and_then(|gg| {
                let m_x = m.repeat_mean_spend_minor.unwrap_or(0.0);
                clv(
                    &model.purchases,
                    gg,
                    s,
                    m_x,
                    &ClvHorizon::undiscounted(horizon_weeks),
                )
                .ok()
            });
            (purchases, value)
        }
        _ => (None, None),
    };

    let x = features(m, rules, base);
    let lambda = model
        .and_then(|m| m.weights.as_ref())
        .map_or_else(|| default_lambda(rules), DriverWeights::vector);
    let horizon = model
        .and_then(|m| m.weights.as_ref())
        .map_or(rules.window_days, |w| w.window_days);
    let inactivity_detail = match (p_alive, m.days_since_last_purchase) {
        (Some(p), Some(d)) => format!(
            "P(alive) {:.2}: {d:.0} days since the last purchase, usually every {:.0} days",
            p, m.expected_interval_days
        ),
        (None, Some(d)) => format!(
            "{d:.0} days since the last purchase, usually every {:.0} days",
            m.expected_interval_days
        ),
        (_, None) => "no purchase yet".to_owned(),
    };
    let bad_kinds = || {
        let kinds: Vec<&str> = m
            .bad_experience_kinds
            .iter()
            .map(|k| match k {
                super::metrics::BadExperience::Reopened => "reopened",
                super::metrics::BadExperience::SlaBreached => "SLA breached",
                super::metrics::BadExperience::Escalated => "escalated",
                super::metrics::BadExperience::LowCsat => "low post-ticket CSAT",
                super::metrics::BadExperience::NegativeSentiment => "negative sentiment",
                super::metrics::BadExperience::AgingOpenTicket => "aging open ticket",
            })
            .collect();
        format!(
            "{} bad service experiences ({})",
            m.bad_experiences,
            kinds.join(", ")
        )
    };
    // (name, log-survival term λ·x, detail), in feature order.
    let mut terms: Vec<(String, f64, String)> = Vec::new();
    for (i, name) in FEATURES.iter().enumerate() {
        let l = lambda[i] * x[i];
        if l <= 0.0 || !l.is_finite() {
            continue;
        }
        let detail = match *name {
            "baseline" => {
                format!("the shop's baseline: some customers buy nothing in any {horizon} days")
            }
            "inactivity" => inactivity_detail.clone(),
            "rhythm" => format!(
                "buys about every {:.0} days: {horizon} quiet days are likely even while active",
                m.expected_interval_days
            ),
            "few_purchases" => format!(
                "{} purchase days so far: new and occasional customers lapse more often",
                m.repeat_purchases + 1
            ),
            "detractor_nps" => format!("NPS {} (detractor)", m.nps.unwrap_or(0)),
            "low_csat" => format!("CSAT average {:.1}", m.csat_avg.unwrap_or(0.0)),
            "high_ces" => format!("CES average {:.1} (high effort)", m.ces_avg.unwrap_or(0.0)),
            "bad_experience_1" | "bad_experience_2" => bad_kinds(),
            "aging_ticket" => format!(
                "a ticket open for {:.0} days",
                m.oldest_open_ticket_days.unwrap_or(0.0)
            ),
            "falling_spend" => format!(
                "spend down to {:.0}% of the previous period",
                m.spend_trend.unwrap_or(0.0) * 100.0
            ),
            "drift" => drift_detail(m),
            _ => String::new(),
        };
        let shown = match *name {
            "bad_experience_1" | "bad_experience_2" => "bad_experiences",
            other => other,
        };
        terms.push((shown.to_owned(), l, detail));
    }
    let logs: Vec<f64> = terms.iter().map(|(_, l, _)| *l).collect();
    let total_log: f64 = logs.iter().sum();
    let raw = 1.0 - (-total_log).exp();
    let score = model
        .and_then(|m| m.weights.as_ref())
        .map_or(raw, |w| w.calibration.apply(raw));
    let mut drivers: Vec<Driver> = terms
        .into_iter()
        .zip(&logs)
        .map(|((name, _, detail), l)| Driver {
            name,
            contribution: if total_log > 0.0 {
                score * l / total_log
            } else {
                0.0
            },
            detail,
        })
        .collect();
    drivers.retain(|d| d.contribution > 1e-9);
    drivers.sort_by(|a, b| {
        b.contribution
            .total_cmp(&a.contribution)
            .then(a.name.cmp(&b.name))
    });
    Assessment {
        score: score.clamp(0.0, 1.0),
        p_alive,
        base,
        drivers,
        expected_purchases,
        clv_minor,
        model_version: model.map(|m| m.version),
        model: model.map(|m| m.purchases.kind().as_str().to_owned()),
    }
}

/// The level for `score`, moving away from `previous` only past the hysteresis band.
pub fn level(score: f64, previous: Option<Level>, rules: &ChurnRules) -> Level {
    let raw = if score >= rules.high_at {
        Level::High
    } else if score >= rules.medium_at {
        Level::Medium
    } else {
        Level::Low
    };
    let Some(previous) = previous else { return raw };
    if raw >= previous {
        return raw;
    }
    // Going down: the score must clear the band below the current level's threshold.
    let threshold = match previous {
        Level::High => rules.high_at,
        Level::Medium => rules.medium_at,
        Level::Low => return raw,
    };
    if score < threshold - rules.hysteresis {
        // Step down to where the score is, with the same band for the level below.
        if previous == Level::High && score >= rules.medium_at - rules.hysteresis {
            Level::Medium
        } else {
            raw
        }
    } else {
        previous
    }
}

/// The play for a customer at `level`.
pub fn play(level: Level, assessment: &Assessment, segment: Option<Segment>, m: &Metrics) -> Play {
    if level == Level::Low {
        return Play::None;
    }
    match segment {
        Some(Segment::Hostage) => return Play::VipOutreach,
        Some(Segment::Rebel) => return Play::Playbook,
        _ => {}
    }
    let service: f64 = assessment
        .drivers
        .iter()
        .filter(|d| is_dissatisfaction(&d.name))
        .map(|d| d.contribution)
        .sum();
    let good_sentiment = m.nps_category != NpsCategory::Detractor
        && m.bad_experiences == 0
        && m.csat_avg.is_none_or(|v| v >= 3.0);
    if service > 0.0 && (service >= assessment.base || !good_sentiment) {
        Play::ServiceRecovery
    } else if good_sentiment {
        Play::WinBackOffer
    } else {
        Play::ServiceRecovery
    }
}

/// The churn status kept in the customer state.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChurnStatus {
    pub level: Level,
    pub score: f64,
    pub play: Play,
    pub since: DateTime<Utc>,
    /// CLV over the horizon at the evaluation, when a model with Gamma-Gamma is fitted: with the
    /// score it gives the value at risk the console's churn queue is sorted by.
    #[serde(default)]
    pub clv_minor: Option<f64>,
}

impl ChurnStatus {
    /// The value at risk: score × CLV, or score × lifetime spend where no CLV is known.
    pub fn value_at_risk(&self, lifetime_spend_minor: i64) -> f64 {
        self.score * self.clv_minor.unwrap_or(lifetime_spend_minor as f64)
    }
}

/// One sentence for a churn change.
pub fn reason(previous: Option<Level>, new: Level, a: &Assessment, play: Play) -> String {
    let top: Vec<String> = a
        .drivers
        .iter()
        .take(3)
        .map(|d| format!("{} (+{:.2})", d.detail, d.contribution))
        .collect();
    format!(
        "churn risk {} → {} at {:.2}: {}; play: {}",
        previous.map_or("none", Level::as_str),
        new.as_str(),
        a.score,
        if top.is_empty() {
            "no driver".to_owned()
        } else {
            top.join("; ")
        },
        play.as_str()
    )
}
