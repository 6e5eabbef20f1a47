//! The programme's `[churn]` section: level thresholds, hysteresis and driver weights.

/// Churn settings from the programme's `[churn]` section.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChurnRules {
    /// Scores at or above this are medium…
    pub medium_at: f64,
    /// …and at or above this, high.
    pub high_at: f64,
    /// A level is left downwards only when the score falls this far below its threshold.
    pub hysteresis: f64,
    /// Risk added by a detractor NPS answer (0–6).
    pub detractor: f64,
    /// Risk added by a CSAT average at or below `low_csat_max`.
    pub low_csat: f64,
    pub low_csat_max: f64,
    /// Risk added by a CES average (1–7, lower is better) at or above `high_ces_min`.
    pub high_ces: f64,
    pub high_ces_min: f64,
    /// Risk added by one bad service experience in the window, and by two or more. The seeds
    /// cite 61% of customers switching after one bad experience and 76% after two; those are
    /// stated intentions, which overstate behaviour, so the defaults take about three quarters.
    pub bad_experience: [f64; 2],
    /// Risk added by an open ticket older than the service's aging threshold.
    pub aging_ticket: f64,
    /// Risk added by a spend trend below `falling_trend_below` (recent period over previous).
    pub falling_trend: f64,
    pub falling_trend_below: f64,
    /// Risk added by drifting away against the customer's own rhythm: the last two gaps
    /// between purchase days at least `drift_gap_ratio` times the earlier ones, or purchase
    /// days in the recent trend period at most `drift_frequency_below` of the previous one.
    pub drift: f64,
    pub drift_gap_ratio: f64,
    pub drift_frequency_below: f64,
    /// H: once `kizuna fit-model` has stored driver weights, the score is the calibrated
    /// probability of no purchase within this many days (the labels of the weights' fit).
    pub window_days: u32,
    /// Horizon of expected purchases and CLV.
    pub horizon_days: u32,
    /// Prior probability that a customer has lapsed, for the rhythm-based base (used before a
    /// model is fitted and for single-purchase customers).
    pub lapse_prior: f64,
}

impl Default for ChurnRules {
    fn default() -> Self {
        Self {
            medium_at: 0.4,
            high_at: 0.7,
            hysteresis: 0.05,
            detractor: 0.35,
            low_csat: 0.2,
            low_csat_max: 2.5,
            high_ces: 0.15,
            high_ces_min: 5.0,
            bad_experience: [0.45, 0.6],
            aging_ticket: 0.15,
            falling_trend: 0.15,
            falling_trend_below: 0.6,
            drift: 0.2,
            drift_gap_ratio: 1.5,
            drift_frequency_below: 0.5,
            window_days: 90,
            horizon_days: 365,
            lapse_prior: 0.05,
        }
    }
}

impl ChurnRules {
    /// Checks ranges; the message names the key.
    pub fn check(&self) -> Result<(), String> {
        let weights = [
            ("detractor", self.detractor),
            ("low_csat", self.low_csat),
            ("high_ces", self.high_ces),
            ("bad_experience[0]", self.bad_experience[0]),
            ("bad_experience[1]", self.bad_experience[1]),
            ("aging_ticket", self.aging_ticket),
            ("falling_trend", self.falling_trend),
            ("drift", self.drift),
            ("drift_frequency_below", self.drift_frequency_below),
            ("hysteresis", self.hysteresis),
            ("lapse_prior", self.lapse_prior),
        ];
        for (name, w) in weights {
            if !(0.0..1.0).contains(&w) {
                return Err(format!("churn.{name} must be in 0..1, not {w}"));
            }
        }
        if !(0.0 < self.medium_at && self.medium_at < self.high_at && self.high_at < 1.0) {
            return Err("churn thresholds must satisfy 0 < medium_at < high_at < 1".into());
        }
        if self.drift_gap_ratio <= 1.0 {
            return Err("churn.drift_gap_ratio must be above 1".into());
        }
        if self.window_days == 0 {
            return Err("churn.window_days must be positive".into());
        }
        if self.horizon_days == 0 {
            return Err("churn.horizon_days must be positive".into());
        }
        Ok(())
    }
}
