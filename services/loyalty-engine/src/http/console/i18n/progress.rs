//! Tier progress in words: what is missing for a tier, by when, within which window.

use chrono::{DateTime, Utc};

use super::{Lang, date, money};
use crate::domain::metrics::{Metrics, NpsCategory};
use crate::domain::programme::{Programme, WindowKind};

/// What is still missing for a tier, as structured gaps (the arithmetic of `tier::unmet`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gaps {
    pub spend_minor: i64,
    pub orders: f64,
    pub tenure_days: f64,
    pub not_detractor: bool,
    pub referrals: u32,
}

impl Gaps {
    pub fn of(rule: &crate::domain::programme::TierRule, m: &Metrics) -> Self {
        Self {
            spend_minor: (rule.min_spend_minor - m.qualifying_spend_minor).max(0),
            orders: (f64::from(rule.min_orders) - m.qualifying_orders)
                .max(0.0)
                .ceil(),
            tenure_days: (f64::from(rule.min_tenure_days) - m.tenure_days)
                .max(0.0)
                .ceil(),
            not_detractor: rule.not_detractor && m.nps_category == NpsCategory::Detractor,
            referrals: rule.min_referrals.saturating_sub(m.referrals),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    fn words(&self, lang: Lang, currency: &str) -> String {
        let mut parts = Vec::new();
        let en = lang == Lang::En;
        if self.spend_minor > 0 {
            parts.push(money(lang, self.spend_minor as f64, currency));
        }
        if self.orders > 0.0 {
            let n = self.orders;
            parts.push(match (en, n == 1.0) {
                (true, true) => "1 more order".to_owned(),
                (true, false) => format!("{n:.0} more orders"),
                (false, _) => format!("あと{n:.0}件の注文"),
            });
        }
        if self.tenure_days > 0.0 {
            parts.push(if en {
                format!("{:.0} more days of tenure", self.tenure_days)
            } else {
                format!("継続あと{:.0}日", self.tenure_days)
            });
        }
        if self.not_detractor {
            parts.push(if en {
                "an NPS answer of 7 or more".to_owned()
            } else {
                "NPS 7以上の回答".to_owned()
            });
        }
        if self.referrals > 0 {
            parts.push(if en {
                format!("{} more referrals", self.referrals)
            } else {
                format!("あと{}件の紹介", self.referrals)
            });
        }
        if en {
            join_and(&parts)
        } else {
            parts.join("、")
        }
    }
}

fn join_and(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn window(lang: Lang, p: &Programme) -> String {
    match (lang, p.qualification.window) {
        (Lang::En, WindowKind::Rolling) => format!("within {} months", p.qualification.months),
        (Lang::Ja, WindowKind::Rolling) => format!("{}か月以内", p.qualification.months),
        (Lang::En, WindowKind::CalendarYear) => "this calendar year".to_owned(),
        (Lang::Ja, WindowKind::CalendarYear) => "今年".to_owned(),
        (Lang::En, WindowKind::CalendarQuarter) => "this quarter".to_owned(),
        (Lang::Ja, WindowKind::CalendarQuarter) => "今四半期".to_owned(),
    }
}

/// The qualification window in words (for the programme table).
pub fn window_words(lang: Lang, p: &Programme) -> String {
    match (lang, p.qualification.window) {
        (Lang::En, WindowKind::Rolling) => {
            format!("rolling, the last {} months", p.qualification.months)
        }
        (Lang::Ja, WindowKind::Rolling) => {
            format!("ローリング（直近{}か月）", p.qualification.months)
        }
        (Lang::En, WindowKind::CalendarYear) => {
            "calendar year (or the previous one if better)".to_owned()
        }
        (Lang::Ja, WindowKind::CalendarYear) => "暦年（前年の方が良ければ前年）".to_owned(),
        (Lang::En, WindowKind::CalendarQuarter) => {
            "calendar quarter (or the previous one if better)".to_owned()
        }
        (Lang::Ja, WindowKind::CalendarQuarter) => "四半期（前期の方が良ければ前期）".to_owned(),
    }
}

/// "¥12,000 and 1 more order by 15 Jan 2027 keeps gold".
pub fn keeps(lang: Lang, gaps: &Gaps, by: DateTime<Utc>, tier: &str, p: &Programme) -> String {
    let what = gaps.words(lang, &p.currency.to_string());
    match lang {
        Lang::En => format!("{what} by {} keeps {tier}", date(lang, by)),
        Lang::Ja => format!("{}までに{what}で{tier}を維持", date(lang, by)),
    }
}

/// "¥30,000 and 2 more orders within 12 months reaches platinum".
pub fn reaches(lang: Lang, gaps: &Gaps, tier: &str, p: &Programme) -> String {
    let what = gaps.words(lang, &p.currency.to_string());
    let within = window(lang, p);
    match lang {
        Lang::En => format!("{what} {within} reaches {tier}"),
        Lang::Ja => format!("{within}に{what}で{tier}に到達"),
    }
}

/// "Qualifies for gold".
pub fn qualifies(lang: Lang, tier: &str) -> String {
    match lang {
        Lang::En => format!("meets every requirement of {tier}"),
        Lang::Ja => format!("{tier}の条件をすべて満たしています"),
    }
}

/// "Drops to silver on 15 Jan 2027".
pub fn drops(lang: Lang, to: &str, at: DateTime<Utc>) -> String {
    match lang {
        Lang::En => format!("drops to {to} on {}", date(lang, at)),
        Lang::Ja => format!("{}に{to}へ降格予定", date(lang, at)),
    }
}

/// The top tier: nothing above.
pub fn top_tier(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "the top tier",
        Lang::Ja => "最上位ティア",
    }
}
