//! The customer grid (顧客グリッド): attitude × profitability.

use super::metrics::{Metrics, NpsCategory};
use super::programme::Segments;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    /// Promoter, high profit: grow their value.
    Loyal,
    /// Promoter, low profit: a voice to listen to, a candidate ambassador.
    Angel,
    /// Detractor, high profit: pays, is unhappy, leaves at the first chance. Most urgent.
    Hostage,
    /// Detractor, low profit: handled by playbook.
    Rebel,
    /// High profit without attachment.
    HighValueNotLoyal,
    /// Passive or no signal yet.
    Neutral,
}

impl Segment {
    pub fn as_str(self) -> &'static str {
        match self {
            Segment::Loyal => "loyal",
            Segment::Angel => "angel",
            Segment::Hostage => "hostage",
            Segment::Rebel => "rebel",
            Segment::HighValueNotLoyal => "high_value_not_loyal",
            Segment::Neutral => "neutral",
        }
    }
}

/// The attitude axis, with what decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attitude {
    Promoter,
    Passive,
    Detractor,
    Unknown,
}

/// Attitude from the latest NPS answer; without one, from the CSAT average and bad service
/// experiences. Returns the attitude and a phrase saying what decided it.
pub fn attitude(m: &Metrics, rules: &Segments) -> (Attitude, String) {
    match m.nps_category {
        NpsCategory::Promoter => (
            Attitude::Promoter,
            format!("NPS {} (promoter)", m.nps.unwrap_or(0)),
        ),
        NpsCategory::Passive => (
            Attitude::Passive,
            format!("NPS {} (passive)", m.nps.unwrap_or(0)),
        ),
        NpsCategory::Detractor => (
            Attitude::Detractor,
            format!("NPS {} (detractor)", m.nps.unwrap_or(0)),
        ),
        NpsCategory::None => {
            if m.bad_experiences >= rules.detractor_bad_experiences {
                (
                    Attitude::Detractor,
                    format!("no NPS; {} bad service experiences", m.bad_experiences),
                )
            } else if let Some(avg) = m.csat_avg {
                if avg <= rules.detractor_csat_max {
                    (
                        Attitude::Detractor,
                        format!("no NPS; CSAT average {avg:.1}"),
                    )
                } else if avg >= rules.promoter_csat_min {
                    (Attitude::Promoter, format!("no NPS; CSAT average {avg:.1}"))
                } else {
                    (Attitude::Passive, format!("no NPS; CSAT average {avg:.1}"))
                }
            } else {
                (Attitude::Unknown, "no attitude signal yet".to_owned())
            }
        }
    }
}

/// The grid cell and the reason, in words.
pub fn segment(m: &Metrics, rules: &Segments) -> (Segment, String) {
    let (attitude, why) = attitude(m, rules);
    let high = m.profit_spend_minor >= rules.high_value_spend_minor;
    let profit = format!(
        "{} spend {} over {} days ({} threshold {})",
        if high { "high" } else { "low" },
        m.profit_spend_minor,
        rules.profit_window_days,
        if high { "≥" } else { "<" },
        rules.high_value_spend_minor
    );
    let segment = match (attitude, high) {
        (Attitude::Promoter, true) => Segment::Loyal,
        (Attitude::Promoter, false) => Segment::Angel,
        (Attitude::Detractor, true) => Segment::Hostage,
        (Attitude::Detractor, false) => Segment::Rebel,
        (Attitude::Passive | Attitude::Unknown, true) => Segment::HighValueNotLoyal,
        (Attitude::Passive | Attitude::Unknown, false) => Segment::Neutral,
    };
    (segment, format!("{why}; {profit}"))
}
