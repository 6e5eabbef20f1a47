//! The `[points]` section of the programme file: how points are earned, how long they stay
//! pending, when they expire, what they buy and what they are worth.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, TimeZone, Utc};

/// How a computed earn with a fraction becomes whole points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    #[default]
    Down,
    Nearest,
    Up,
}

impl Rounding {
    /// Rounds a non-negative figure. Float noise below a millionth of a point is ignored first,
    /// so that 2.9999999999 rounds down to 3, not 2.
    pub fn apply(self, raw: f64) -> i64 {
        let clean = (raw * 1e6).round() / 1e6;
        let whole = match self {
            Rounding::Down => clean.floor(),
            Rounding::Nearest => clean.round(),
            Rounding::Up => clean.ceil(),
        };
        // Bounded by the checks: amounts ≤ 10^12, rates ≤ 10^6, multipliers ≤ 100.
        whole.max(0.0) as i64
    }
}

/// What a clawback of points already spent does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NegativeBalance {
    /// The balance stays at zero and the shortfall is recorded as a debt, paid from future earns.
    #[default]
    Debt,
    /// The balance shows the shortfall as a negative figure (still paid from future earns).
    Negative,
}

/// Earning rules.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EarnRules {
    /// Points per `currency_unit_minor` spent.
    pub per_currency_unit: f64,
    /// The unit of spend, in minor units of the programme currency (100 = one point per 100 yen).
    pub currency_unit_minor: i64,
    pub rounding: Rounding,
    /// Days an earn stays pending (the return window) before it can be spent.
    pub pending_days: u32,
    pub first_order_bonus: i64,
    /// On each anniversary of the first order.
    pub anniversary_bonus: i64,
    /// Per answered survey.
    pub survey_bonus: i64,
    /// To the referrer, once the referred customer's first order has cleared its pending period.
    pub referral_bonus: i64,
    pub negative_balance: NegativeBalance,
    /// Multiplier by the order's main product category (1.0 when not listed).
    pub category_multipliers: BTreeMap<String, f64>,
    /// Multiplier by the customer's tier at the time of the order (1.0 when not listed).
    pub tier_multipliers: BTreeMap<String, f64>,
}

impl Default for EarnRules {
    fn default() -> Self {
        Self {
            per_currency_unit: 1.0,
            currency_unit_minor: 100,
            rounding: Rounding::Down,
            pending_days: 14,
            first_order_bonus: 0,
            anniversary_bonus: 0,
            survey_bonus: 0,
            referral_bonus: 0,
            negative_balance: NegativeBalance::Debt,
            category_multipliers: BTreeMap::new(),
            tier_multipliers: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryMode {
    /// Each lot expires `months` after it was earned.
    Rolling,
    /// All points expire `months` after the last purchase.
    Inactivity,
    /// Each lot expires at the end of the calendar `period` it was earned in.
    Calendar,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalendarPeriod {
    Month,
    Quarter,
    Year,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Expiry {
    pub mode: ExpiryMode,
    /// Rolling: months after earning. Inactivity: months without a purchase.
    pub months: u32,
    /// Calendar mode only.
    pub period: CalendarPeriod,
    /// `PointsWillExpire` is raised this many days before a lot expires.
    pub warn_days: u32,
}

impl Default for Expiry {
    fn default() -> Self {
        Self {
            mode: ExpiryMode::Rolling,
            months: 12,
            period: CalendarPeriod::Year,
            warn_days: 30,
        }
    }
}

fn month_start(year: i32, month: u32) -> Option<DateTime<Utc>> {
    NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| Utc.from_utc_datetime(&d))
}

impl Expiry {
    /// When a lot earned at `earned_at` expires on its own. `None` in inactivity mode: there the
    /// customer's purchases decide (see [`super::ledger::fold`]).
    pub fn expires_at(&self, earned_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.mode {
            ExpiryMode::Rolling => earned_at.checked_add_months(Months::new(self.months)),
            ExpiryMode::Inactivity => None,
            ExpiryMode::Calendar => {
                let (months, first) = match self.period {
                    CalendarPeriod::Month => (1, earned_at.month()),
                    CalendarPeriod::Quarter => (3, earned_at.month0() / 3 * 3 + 1),
                    CalendarPeriod::Year => (12, 1),
                };
                month_start(earned_at.year(), first)?.checked_add_months(Months::new(months))
            }
        }
    }

    /// The inactivity deadline after a purchase at `last_purchase` (inactivity mode only).
    pub fn inactive_after(&self, last_purchase: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.mode {
            ExpiryMode::Inactivity => last_purchase.checked_add_months(Months::new(self.months)),
            _ => None,
        }
    }
}

/// One reward of the catalogue.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reward {
    pub id: String,
    pub name: String,
    /// Cost in points.
    pub cost: i64,
    /// The lowest tier that may redeem it (any tier when absent).
    #[serde(default)]
    pub min_tier: Option<String>,
}

/// The whole `[points]` section.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PointsRules {
    pub enabled: bool,
    /// What one point is worth, in minor units of the programme currency (for the liability).
    pub cost_per_point_minor: f64,
    pub earn: EarnRules,
    pub expiry: Expiry,
    #[serde(rename = "reward")]
    pub rewards: Vec<Reward>,
}

impl Default for PointsRules {
    fn default() -> Self {
        Self {
            enabled: true,
            cost_per_point_minor: 1.0,
            earn: EarnRules::default(),
            expiry: Expiry::default(),
            rewards: Vec::new(),
        }
    }
}

/// A `[points]` setting that cannot work. The message starts with the field's full name.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("points.{field} {problem}")]
pub struct PointsConfigError {
    /// The field, below `points.` (e.g. `earn.per_currency_unit`, `reward[2].cost`).
    pub field: String,
    pub problem: String,
}

fn bad(field: impl Into<String>, problem: impl Into<String>) -> PointsConfigError {
    PointsConfigError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Largest bonus or reward cost accepted: a billion points.
pub const MAX_POINTS: i64 = 1_000_000_000;

fn check_multiplier(field: String, value: f64) -> Result<(), PointsConfigError> {
    if value.is_finite() && (0.0..=100.0).contains(&value) {
        Ok(())
    } else {
        Err(bad(field, "must be between 0 and 100"))
    }
}

impl PointsRules {
    /// Parses a `[points]` section on its own (its body, without the header) and checks it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let rules: PointsRules = toml::from_str(text).map_err(|e| e.to_string())?;
        rules.check().map_err(|e| e.to_string())?;
        Ok(rules)
    }

    /// Checks what can be checked without the rest of the programme.
    pub fn check(&self) -> Result<(), PointsConfigError> {
        let e = &self.earn;
        if !(e.per_currency_unit.is_finite()
            && e.per_currency_unit > 0.0
            && e.per_currency_unit <= 1e6)
        {
            return Err(bad(
                "earn.per_currency_unit",
                "must be positive (at most 1000000)",
            ));
        }
        if !(1..=crate::domain::money::Minor::DEFAULT_MAX).contains(&e.currency_unit_minor) {
            return Err(bad("earn.currency_unit_minor", "must be at least 1"));
        }
        if e.pending_days > 365 {
            return Err(bad("earn.pending_days", "must be 0..=365"));
        }
        for (field, value) in [
            ("earn.first_order_bonus", e.first_order_bonus),
            ("earn.anniversary_bonus", e.anniversary_bonus),
            ("earn.survey_bonus", e.survey_bonus),
            ("earn.referral_bonus", e.referral_bonus),
        ] {
            if !(0..=MAX_POINTS).contains(&value) {
                return Err(bad(field, format!("must be 0..={MAX_POINTS}")));
            }
        }
        for (name, m) in &e.category_multipliers {
            check_multiplier(format!("earn.category_multipliers.{name}"), *m)?;
        }
        for (name, m) in &e.tier_multipliers {
            check_multiplier(format!("earn.tier_multipliers.{name}"), *m)?;
        }
        let x = &self.expiry;
        if x.mode != ExpiryMode::Calendar && !(1..=120).contains(&x.months) {
            return Err(bad("expiry.months", "must be 1..=120"));
        }
        if x.warn_days > 365 {
            return Err(bad("expiry.warn_days", "must be 0..=365"));
        }
        if !(self.cost_per_point_minor.is_finite() && self.cost_per_point_minor >= 0.0) {
            return Err(bad("cost_per_point_minor", "must not be negative"));
        }
        let mut ids = std::collections::HashSet::new();
        for (i, r) in self.rewards.iter().enumerate() {
            if r.id.trim().is_empty() {
                return Err(bad(format!("reward[{i}].id"), "must not be empty"));
            }
            if !ids.insert(r.id.as_str()) {
                return Err(bad(
                    format!("reward[{i}].id"),
                    format!("{:?} is defined twice", r.id),
                ));
            }
            if r.name.trim().is_empty() {
                return Err(bad(format!("reward[{i}].name"), "must not be empty"));
            }
            if !(1..=MAX_POINTS).contains(&r.cost) {
                return Err(bad(
                    format!("reward[{i}].cost"),
                    format!("must be 1..={MAX_POINTS}"),
                ));
            }
        }
        Ok(())
    }

    /// Checks the names of tiers used here against the programme's tiers.
    pub fn check_with_tiers(&self, tiers: &[&str]) -> Result<(), PointsConfigError> {
        self.check()?;
        for name in self.earn.tier_multipliers.keys() {
            if !tiers.contains(&name.as_str()) {
                return Err(bad(
                    format!("earn.tier_multipliers.{name}"),
                    "names no tier of the programme",
                ));
            }
        }
        for (i, r) in self.rewards.iter().enumerate() {
            if let Some(t) = &r.min_tier
                && !tiers.contains(&t.as_str())
            {
                return Err(bad(
                    format!("reward[{i}].min_tier"),
                    format!("{t:?} names no tier of the programme"),
                ));
            }
        }
        Ok(())
    }

    pub fn reward(&self, id: &str) -> Option<&Reward> {
        self.rewards.iter().find(|r| r.id == id)
    }

    /// When an earn at `earned_at` becomes spendable.
    pub fn available_at(&self, earned_at: DateTime<Utc>) -> DateTime<Utc> {
        earned_at + Duration::days(i64::from(self.earn.pending_days))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
enabled = true
cost_per_point_minor = 1
[earn]
per_currency_unit = 1
currency_unit_minor = 100
rounding = "down"
pending_days = 14
first_order_bonus = 500
[earn.category_multipliers]
electronics = 0.5
[earn.tier_multipliers]
gold = 1.5
[expiry]
mode = "rolling"
months = 12
[[reward]]
id = "coffee"
name = "A free coffee"
cost = 300
min_tier = "member"
"#;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 10, 0, 0)
            .single()
            .expect("date")
    }

    #[test]
    fn the_example_parses() {
        let r = PointsRules::parse(EXAMPLE).expect("valid");
        assert_eq!(r.earn.first_order_bonus, 500);
        assert_eq!(r.reward("coffee").map(|r| r.cost), Some(300));
        r.check_with_tiers(&["member", "gold"])
            .expect("tiers known");
    }

    #[test]
    fn the_design_doc_example_is_valid() {
        #[derive(serde::Deserialize)]
        struct File {
            points: PointsRules,
        }
        let doc = include_str!("../../../../../docs/design/points.md");
        let block = doc
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("the design doc has a toml example");
        let file: File = toml::from_str(block).expect("the example parses");
        file.points
            .check_with_tiers(&["member", "silver", "gold", "platinum"])
            .expect("the example is valid");
        assert_eq!(
            file.points.earn.tier_multipliers.get("platinum"),
            Some(&2.0)
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                "[earn]\nper_currency_unit = 0\n",
                "points.earn.per_currency_unit",
            ),
            (
                "[earn]\ncurrency_unit_minor = 0\n",
                "points.earn.currency_unit_minor",
            ),
            ("[earn]\nsurvey_bonus = -1\n", "points.earn.survey_bonus"),
            (
                "[earn.category_multipliers]\nbooks = -2\n",
                "points.earn.category_multipliers.books",
            ),
            ("[expiry]\nmonths = 0\n", "points.expiry.months"),
            ("cost_per_point_minor = -1\n", "points.cost_per_point_minor"),
            (
                "[[reward]]\nid = \"a\"\nname = \"A\"\ncost = 1\n[[reward]]\nid = \"a\"\nname = \"B\"\ncost = 2\n",
                "points.reward[1].id",
            ),
            (
                "[[reward]]\nid = \"a\"\nname = \"A\"\ncost = 0\n",
                "points.reward[0].cost",
            ),
        ];
        for (text, field) in cases {
            let err = PointsRules::parse(text).expect_err(text);
            assert!(err.starts_with(field), "{text:?}: {err}");
        }
        let err = PointsRules::parse("[earn]\nbogus = 1\n").expect_err("unknown field");
        assert!(err.contains("bogus"), "{err}");
        let rules = PointsRules::parse(EXAMPLE).expect("valid");
        let err = rules
            .check_with_tiers(&["member"])
            .expect_err("gold unknown");
        assert_eq!(err.field, "earn.tier_multipliers.gold");
        let err = rules
            .check_with_tiers(&["gold"])
            .expect_err("member unknown");
        assert_eq!(err.field, "reward[0].min_tier");
    }

    #[test]
    fn expiry_dates() {
        let mut x = Expiry::default();
        assert_eq!(x.expires_at(at(2026, 1, 31)), Some(at(2027, 1, 31)));
        x.mode = ExpiryMode::Calendar;
        let midnight = |y, m| month_start(y, m).expect("date");
        assert_eq!(x.expires_at(at(2026, 5, 3)), Some(midnight(2027, 1)));
        x.period = CalendarPeriod::Quarter;
        assert_eq!(x.expires_at(at(2026, 5, 3)), Some(midnight(2026, 7)));
        x.period = CalendarPeriod::Month;
        assert_eq!(x.expires_at(at(2026, 12, 3)), Some(midnight(2027, 1)));
        x.mode = ExpiryMode::Inactivity;
        x.months = 6;
        assert_eq!(x.expires_at(at(2026, 5, 3)), None);
        assert_eq!(x.inactive_after(at(2026, 5, 3)), Some(at(2026, 11, 3)));
    }

    #[test]
    fn rounding() {
        assert_eq!(Rounding::Down.apply(2.7), 2);
        assert_eq!(Rounding::Nearest.apply(2.5), 3);
        assert_eq!(Rounding::Up.apply(2.1), 3);
        assert_eq!(Rounding::Down.apply(0.1 * 3.0 * 10.0), 3);
        assert_eq!(Rounding::Up.apply(3.0000000001), 3);
    }
}
