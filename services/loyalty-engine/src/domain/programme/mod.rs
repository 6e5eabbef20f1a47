//! The programme: the business rules marketing owns, read from one TOML file. Tiers and their
//! qualification window, the downgrade grace period, product-category cadences, what counts as
//! a bad service experience, and the thresholds of the customer grid and the loyalty motives.
//! See `config/programme.toml` for a documented example.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeZone, Utc};

use super::money::Currency;

mod churn;
pub use churn::ChurnRules;

/// One tier's requirements. All must hold.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierRule {
    pub name: String,
    /// Minimum spend inside the qualification window, minor units of the programme currency.
    #[serde(default)]
    pub min_spend_minor: i64,
    /// Minimum orders inside the qualification window (net of refunds).
    #[serde(default)]
    pub min_orders: u32,
    /// Minimum days since the first purchase.
    #[serde(default)]
    pub min_tenure_days: u32,
    /// The customer's latest NPS answer must not be a detractor's (0–6).
    #[serde(default)]
    pub not_detractor: bool,
    /// Minimum customers referred (the ambassador programme).
    #[serde(default)]
    pub min_referrals: u32,
}

impl TierRule {
    fn has_requirements(&self) -> bool {
        self.min_spend_minor != 0
            || self.min_orders != 0
            || self.min_tenure_days != 0
            || self.not_detractor
            || self.min_referrals != 0
    }
}

/// How qualifying spend and orders are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// The last `months` months.
    Rolling,
    /// The current calendar year, or the previous one if that was better: status earned in a
    /// year holds through the next.
    CalendarYear,
    /// The current calendar quarter, or the previous one if that was better.
    CalendarQuarter,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Qualification {
    pub window: WindowKind,
    /// Length of a rolling window.
    pub months: u32,
    /// Days between "no longer qualifies" (TierWillDowngrade) and the drop (TierChanged).
    pub grace_days: u32,
    /// Drop one tier at a time, each after its own grace period. False: drop straight to the
    /// qualifying tier.
    pub soft_landing: bool,
}

impl Default for Qualification {
    fn default() -> Self {
        Self {
            window: WindowKind::Rolling,
            months: 12,
            grace_days: 30,
            soft_landing: true,
        }
    }
}

/// Expected days between purchases, per product category.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cadence {
    /// For categories not listed.
    pub default_days: f64,
    /// A customer is overdue after `overdue_factor` times their expected interval.
    pub overdue_factor: f64,
    /// Weight of the customer's own rhythm against the category's once they have this many
    /// repeat purchases (1.0 at and beyond it, linear before).
    pub own_rhythm_after: u32,
    pub categories: BTreeMap<String, f64>,
}

impl Default for Cadence {
    fn default() -> Self {
        Self {
            default_days: 30.0,
            overdue_factor: 2.0,
            own_rhythm_after: 4,
            categories: BTreeMap::new(),
        }
    }
}

impl Cadence {
    pub fn days_for(&self, category: &str) -> f64 {
        self.categories
            .get(category)
            .copied()
            .unwrap_or(self.default_days)
    }
}

/// What counts as a bad service experience, and for how long.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Service {
    /// Sliding window for bad experiences.
    pub window_days: u32,
    /// An open ticket older than this counts as a bad experience.
    pub aging_ticket_days: u32,
    /// Post-ticket CSAT at or below this is bad.
    pub bad_csat_max: u8,
    /// Sentiment at or below this is bad.
    pub bad_sentiment_max: f64,
}

impl Default for Service {
    fn default() -> Self {
        Self {
            window_days: 90,
            aging_ticket_days: 7,
            bad_csat_max: 2,
            bad_sentiment_max: -0.5,
        }
    }
}

/// Survey averages.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Surveys {
    /// Window of the CSAT and CES rolling averages.
    pub window_days: u32,
}

impl Default for Surveys {
    fn default() -> Self {
        Self { window_days: 180 }
    }
}

/// The customer grid: attitude × profitability.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Segments {
    /// Spend in the last `profit_window_days` at or above this is "high profit".
    pub high_value_spend_minor: i64,
    pub profit_window_days: u32,
    /// Without an NPS answer: a CSAT average at or above this counts as a promoter…
    pub promoter_csat_min: f64,
    /// …at or below this as a detractor.
    pub detractor_csat_max: f64,
    /// Without an NPS answer: this many bad experiences in the window make a detractor.
    pub detractor_bad_experiences: u32,
}

impl Default for Segments {
    fn default() -> Self {
        Self {
            high_value_spend_minor: 100_000,
            profit_window_days: 365,
            promoter_csat_min: 4.5,
            detractor_csat_max: 2.5,
            detractor_bad_experiences: 2,
        }
    }
}

/// Thresholds of the loyalty motives.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Motives {
    /// Fewer orders than this: motive unknown.
    pub min_orders: u32,
    /// Share of spend with a discount or coupon that makes a customer price-driven.
    pub price_discount_share: f64,
    /// Coupon codes starting with one of these are programme rewards (points, perks).
    pub programme_coupon_prefixes: Vec<String>,
    /// Share of orders paid with programme rewards that makes a customer programme-driven.
    pub programme_coupon_share: f64,
    /// Share of orders in one channel that, with a steady rhythm, suggests convenience.
    pub convenience_channel_share: f64,
    /// Orders in the last 365 days a truly loyal customer makes at least.
    pub loyal_min_orders_year: u32,
}

impl Default for Motives {
    fn default() -> Self {
        Self {
            min_orders: 3,
            price_discount_share: 0.5,
            programme_coupon_prefixes: vec!["PTS".into(), "REWARD".into()],
            programme_coupon_share: 0.3,
            convenience_channel_share: 0.8,
            loyal_min_orders_year: 6,
        }
    }
}

/// Spend trend: the recent period against the one before.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Trend {
    pub period_days: u32,
}

impl Default for Trend {
    fn default() -> Self {
        Self { period_days: 90 }
    }
}

/// How much purchase detail a customer row keeps.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Orders kept one by one (refunds match them); older ones are folded into totals.
    pub max_orders: usize,
    /// Survey answers kept per kind.
    pub max_surveys: usize,
    /// Closed tickets idle this long are forgotten.
    pub ticket_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_orders: 400,
            max_surveys: 20,
            ticket_days: 400,
        }
    }
}

/// The whole programme. Tiers are listed from the entry tier upwards.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Programme {
    pub currency: Currency,
    #[serde(default)]
    pub qualification: Qualification,
    #[serde(rename = "tier")]
    pub tiers: Vec<TierRule>,
    #[serde(default)]
    pub cadence: Cadence,
    #[serde(default)]
    pub service: Service,
    #[serde(default)]
    pub surveys: Surveys,
    #[serde(default)]
    pub segments: Segments,
    #[serde(default)]
    pub motives: Motives,
    #[serde(default)]
    pub trend: Trend,
    #[serde(default)]
    pub retention: Retention,
    #[serde(default)]
    pub churn: ChurnRules,
    /// The points programme (issue 16); no section, no points.
    #[serde(default)]
    pub points: Option<super::points::PointsRules>,
    /// A short digest of the programme file's text, recorded on every points movement.
    #[serde(skip)]
    pub version: String,
}

/// Why a programme file was refused. The message names the file, and the line where it can.
#[derive(Debug, thiserror::Error)]
pub enum ProgrammeError {
    #[error("cannot read the programme {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid programme {path}: {message}")]
    Invalid { path: String, message: String },
}

/// The half-open time range `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// The period in progress (from `this` to `end`) and the whole one before it (from `last`).
fn this_and_last(last: DateTime<Utc>, this: DateTime<Utc>, end: DateTime<Utc>) -> Vec<Period> {
    vec![
        Period {
            from: this,
            to: end,
        },
        Period {
            from: last,
            to: this,
        },
    ]
}

fn month_start(year: i32, month: u32) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| Utc.from_utc_datetime(&d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The first 12 hex digits of the SHA-256 of the programme text.
fn version_of(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

impl Programme {
    /// The points rules, when the programme has points and they are enabled.
    pub fn points_rules(&self) -> Option<&super::points::PointsRules> {
        self.points.as_ref().filter(|p| p.enabled)
    }

    /// Reads and checks a programme file.
    pub fn load(path: &Path) -> Result<Self, ProgrammeError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProgrammeError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ProgrammeError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses and checks programme TOML. Errors name the line and the problem.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut programme: Programme = toml::from_str(text).map_err(|e| e.to_string())?;
        programme.check(text)?;
        programme.version = version_of(text);
        Ok(programme)
    }

    fn check(&self, text: &str) -> Result<(), String> {
        let line_of = |needle: &str| {
            text.lines()
                .position(|l| l.contains(needle))
                .map(|i| format!("line {}: ", i + 1))
                .unwrap_or_default()
        };
        let tier_line = |name: &str| line_of(&format!("\"{name}\""));
        let Some(entry) = self.tiers.first() else {
            return Err("at least one [[tier]] is required".into());
        };
        if entry.has_requirements() {
            return Err(format!(
                "{}the first tier {:?} is the entry tier and must have no requirements",
                tier_line(&entry.name),
                entry.name
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, tier) in self.tiers.iter().enumerate() {
            if tier.name.trim().is_empty() {
                return Err(format!("tier #{} has an empty name", i + 1));
            }
            if !seen.insert(tier.name.as_str()) {
                return Err(format!(
                    "{}tier {:?} is defined twice",
                    tier_line(&tier.name),
                    tier.name
                ));
            }
            if tier.min_spend_minor < 0 {
                return Err(format!(
                    "{}tier {:?}: min_spend_minor must not be negative",
                    tier_line(&tier.name),
                    tier.name
                ));
            }
            if let Some(below) = i.checked_sub(1).and_then(|j| self.tiers.get(j))
                && (tier.min_spend_minor < below.min_spend_minor
                    || tier.min_orders < below.min_orders)
            {
                return Err(format!(
                    "{}tier {:?} asks for less than the tier below it ({:?}); list tiers from the entry tier upwards",
                    tier_line(&tier.name),
                    tier.name,
                    below.name
                ));
            }
        }
        let q = &self.qualification;
        if q.window == WindowKind::Rolling && !(1..=120).contains(&q.months) {
            return Err(format!(
                "{}qualification.months must be 1..=120",
                line_of("months")
            ));
        }
        for (name, days) in &self.cadence.categories {
            if !(days.is_finite() && *days > 0.0) {
                return Err(format!(
                    "{}cadence for {name:?} must be a positive number of days",
                    line_of(name)
                ));
            }
        }
        if !(self.cadence.default_days > 0.0 && self.cadence.overdue_factor >= 1.0) {
            return Err(format!(
                "{}cadence.default_days must be positive and cadence.overdue_factor at least 1",
                line_of("[cadence]")
            ));
        }
        for (what, share) in [
            ("price_discount_share", self.motives.price_discount_share),
            (
                "programme_coupon_share",
                self.motives.programme_coupon_share,
            ),
            (
                "convenience_channel_share",
                self.motives.convenience_channel_share,
            ),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return Err(format!(
                    "{}motives.{what} must be between 0 and 1",
                    line_of(what)
                ));
            }
        }
        if self.service.window_days == 0
            || self.surveys.window_days == 0
            || self.trend.period_days == 0
        {
            return Err(
                "service.window_days, surveys.window_days and trend.period_days must be positive"
                    .into(),
            );
        }
        if self.segments.profit_window_days == 0 {
            return Err(format!(
                "{}segments.profit_window_days must be positive",
                line_of("profit_window_days")
            ));
        }
        if let Err(e) = self.churn.check() {
            return Err(format!("{}{e}", line_of("[churn]")));
        }
        if let Some(points) = &self.points {
            let tiers: Vec<&str> = self.tiers.iter().map(|t| t.name.as_str()).collect();
            if let Err(e) = points.check_with_tiers(&tiers) {
                return Err(format!("{}{e}", line_of("[points")));
            }
        }
        if self.retention.max_orders < 10 || self.retention.max_surveys < 1 {
            return Err(
                "retention.max_orders must be at least 10 and retention.max_surveys at least 1"
                    .into(),
            );
        }
        Ok(())
    }

    /// The entry tier's name.
    pub fn entry_tier(&self) -> &str {
        self.tiers.first().map(|t| t.name.as_str()).unwrap_or("")
    }

    /// Position of a tier by name; unknown names (a tier removed from the programme) rank as
    /// the entry tier.
    pub fn rank(&self, name: &str) -> usize {
        self.tiers.iter().position(|t| t.name == name).unwrap_or(0)
    }

    pub fn tier_named(&self, name: &str) -> Option<&TierRule> {
        self.tiers.iter().find(|t| t.name == name)
    }

    /// When the next calendar qualification period starts (None for rolling windows).
    pub fn next_period_start(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let months = match self.qualification.window {
            WindowKind::Rolling => return None,
            WindowKind::CalendarYear => 12,
            WindowKind::CalendarQuarter => 3,
        };
        self.qualification_periods(now)
            .first()
            .and_then(|p| p.from.checked_add_months(Months::new(months)))
    }

    /// The qualification periods at `now`: the current one (up to and including `now`), and
    /// for calendar windows the previous one too (status earned in a period holds through the
    /// next).
    pub fn qualification_periods(&self, now: DateTime<Utc>) -> Vec<Period> {
        let q = &self.qualification;
        let end = now + chrono::Duration::seconds(1);
        match q.window {
            WindowKind::Rolling => {
                let from = now
                    .checked_sub_months(Months::new(q.months))
                    .unwrap_or(DateTime::<Utc>::MIN_UTC);
                vec![Period { from, to: end }]
            }
            WindowKind::CalendarYear => {
                let this = month_start(now.year(), 1);
                let last = month_start(now.year() - 1, 1);
                this_and_last(last, this, end)
            }
            WindowKind::CalendarQuarter => {
                let q0 = (now.month0() / 3) * 3 + 1;
                let this = month_start(now.year(), q0);
                let last = this
                    .checked_sub_months(Months::new(3))
                    .unwrap_or(DateTime::<Utc>::MIN_UTC);
                this_and_last(last, this, end)
            }
        }
    }
}

/// The example programme shipped with Kizuna (`config/programme.toml`).
pub fn builtin() -> Programme {
    match Programme::parse(include_str!("../../../config/programme.toml")) {
        Ok(p) => p,
        // Covered by a unit test: the shipped file is valid.
        Err(e) => panic!("the built-in programme is invalid: {e}"),
    }
}

#[cfg(test)]
pub(crate) fn sample() -> Programme {
    Programme::parse(
        r#"
currency = "JPY"
[qualification]
window = "rolling"
months = 12
grace_days = 30
soft_landing = true
[[tier]]
name = "member"
[[tier]]
name = "silver"
min_spend_minor = 30000
min_orders = 2
[[tier]]
name = "gold"
min_spend_minor = 100000
min_orders = 3
[[tier]]
name = "platinum"
min_spend_minor = 300000
min_orders = 5
not_detractor = true
[cadence]
default_days = 30
[cadence.categories]
daily_goods = 7
electronics = 365
"#,
    )
    .expect("sample programme is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_programme_is_valid() {
        let p = builtin();
        assert_eq!(p.entry_tier(), "member");
        assert!(p.tiers.len() >= 3);
    }

    /// `config/programme-points.toml` (the demo's programme, the README's example) parses, has
    /// points with every part the README shows, and is the built-in programme plus `[points]`.
    #[test]
    fn the_points_example_is_valid_and_the_builtin_plus_points() {
        let p = Programme::parse(include_str!("../../../config/programme-points.toml"))
            .unwrap_or_else(|e| panic!("config/programme-points.toml: {e}"));
        let rules = p.points_rules().expect("points enabled");
        assert_eq!(rules.earn.pending_days, 14);
        assert!(rules.earn.category_multipliers.contains_key("daily_goods"));
        assert!(rules.earn.tier_multipliers.contains_key("gold"));
        assert!(rules.rewards.len() >= 2, "a catalogue");
        assert!(rules.rewards.iter().all(|r| r.min_tier.is_some()));
        let without_points = Programme {
            points: None,
            version: String::new(),
            ..p.clone()
        };
        let builtin = Programme {
            version: String::new(),
            ..builtin()
        };
        assert_eq!(
            without_points, builtin,
            "programme-points.toml must be programme.toml plus [points]"
        );
    }

    #[test]
    fn rejects_bad_files_with_the_line() {
        let err =
            Programme::parse("currency = \"JPY\"\n[[tier]]\nname = \"a\"\nmin_orders = \"x\"\n")
                .expect_err("wrong type");
        assert!(err.contains("line 4"), "{err}");

        let err = Programme::parse(
            "currency = \"JPY\"\n[[tier]]\nname = \"a\"\n[[tier]]\nname = \"b\"\nmin_spend_minor = 5\n[[tier]]\nname = \"c\"\nmin_spend_minor = 1\n",
        )
        .expect_err("not ascending");
        assert!(err.contains("line 8"), "{err}");
        assert!(err.contains("\"c\""), "{err}");

        let err = Programme::parse("currency = \"JPY\"\n[[tier]]\nname = \"a\"\nmin_orders = 1\n")
            .expect_err("entry tier with requirements");
        assert!(err.contains("entry tier"), "{err}");

        let err = Programme::parse("currency = \"JPY\"\n[[tier]]\nname = \"a\"\nbogus = 1\n")
            .expect_err("unknown field");
        assert!(err.contains("bogus"), "{err}");

        let err = Programme::parse(
            "currency = \"JPY\"\n[[tier]]\nname = \"a\"\n[motives]\nprice_discount_share = 1.5\n",
        )
        .expect_err("share out of range");
        assert!(err.contains("line 5"), "{err}");

        let err = Programme::parse("currency = \"JPY\"\n[qualification]\nwindow = \"fortnightly\"\n[[tier]]\nname = \"a\"\n")
            .expect_err("unknown window");
        assert!(err.contains("line 3"), "{err}");
    }

    fn at(year: i32, month: u32, day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(year, month, day, hour, 0, 0)
            .single()
            .expect("date")
    }

    #[test]
    fn calendar_windows_include_the_previous_period() {
        let mut p = sample();
        let now = at(2026, 5, 10, 12);
        p.qualification.window = WindowKind::CalendarYear;
        let periods = p.qualification_periods(now);
        assert_eq!(periods[0].from, at(2026, 1, 1, 0));
        assert_eq!(periods[1].from, at(2025, 1, 1, 0));
        p.qualification.window = WindowKind::CalendarQuarter;
        let periods = p.qualification_periods(now);
        assert_eq!(periods[0].from, at(2026, 4, 1, 0));
        assert_eq!(periods[1].from, at(2026, 1, 1, 0));
        p.qualification.window = WindowKind::Rolling;
        let periods = p.qualification_periods(now);
        assert_eq!(
            periods,
            vec![Period {
                from: at(2025, 5, 10, 12),
                to: now + chrono::Duration::seconds(1)
            }]
        );
    }
}
