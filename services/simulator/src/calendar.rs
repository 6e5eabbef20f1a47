//! Time: seconds since the epoch, the shop's sales calendar, NPS survey waves and the hours
//! Japanese customers shop at (JST).

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use rand::Rng;

use crate::rng::SimRng;

/// Seconds since the Unix epoch, UTC. Every simulated time is whole seconds.
pub type Secs = i64;

pub const MINUTE: Secs = 60;
pub const HOUR: Secs = 60 * MINUTE;
pub const DAY: Secs = 24 * HOUR;
/// Japan Standard Time, UTC+9: the shop's local time.
const JST: Secs = 9 * HOUR;

/// A sale period: orders in it get the sale price (and coupon) when the customer takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    pub name: &'static str,
    pub code: &'static str,
    pub percent: i64,
    pub start: Secs,
    /// Exclusive.
    pub end: Secs,
}

/// The yearly sales (JST dates): name, coupon code, percent off, month, day, length in days.
const SALES: [(&str, &str, i64, u32, u32, i64); 5] = [
    ("new_year", "NEWYEAR10", 10, 1, 2, 6),
    ("fiscal_year_end", "SPRING15", 15, 3, 15, 10),
    ("summer", "SALE20", 20, 6, 27, 14),
    ("autumn", "AUTUMN10", 10, 9, 15, 8),
    ("black_friday", "BF25", 25, 11, 22, 10),
];

/// A wave of the relationship NPS survey, sent to every active customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wave {
    pub at: Secs,
    pub survey_id: String,
}

#[derive(Debug, Clone)]
pub struct Calendar {
    sales: Vec<Sale>,
    waves: Vec<Wave>,
}

fn jst_midnight(date: NaiveDate) -> Secs {
    date.and_hms_opt(0, 0, 0)
        .map_or(0, |dt| dt.and_utc().timestamp() - JST)
}

fn year_of(t: Secs) -> i32 {
    DateTime::<Utc>::from_timestamp(t + JST, 0).map_or(1970, |d| d.year())
}

impl Calendar {
    /// The sales and survey waves around `[start, end)`.
    pub fn new(start: Secs, end: Secs) -> Self {
        let mut sales = Vec::new();
        let mut waves = Vec::new();
        for year in year_of(start) - 1..=year_of(end) + 1 {
            for (name, code, percent, month, day, days) in SALES {
                if let Some(date) = NaiveDate::from_ymd_opt(year, month, day) {
                    let start = jst_midnight(date);
                    sales.push(Sale {
                        name,
                        code,
                        percent,
                        start,
                        end: start + days * DAY,
                    });
                }
            }
            for (quarter, month) in [(1, 1), (2, 4), (3, 7), (4, 10)] {
                if let Some(date) = NaiveDate::from_ymd_opt(year, month, 15) {
                    waves.push(Wave {
                        at: jst_midnight(date) + 10 * HOUR,
                        survey_id: format!("nps-{year}-q{quarter}"),
                    });
                }
            }
        }
        sales.sort_by_key(|s| s.start);
        waves.sort_by_key(|w| w.at);
        Self { sales, waves }
    }

    /// The sale running at `t`, if any.
    pub fn sale_at(&self, t: Secs) -> Option<&Sale> {
        let i = self.sales.partition_point(|s| s.start <= t);
        i.checked_sub(1)
            .map(|i| &self.sales[i])
            .filter(|s| t < s.end)
    }

    /// The sale running at `t` or the next one to start.
    pub fn sale_from(&self, t: Secs) -> Option<&Sale> {
        let i = self.sales.partition_point(|s| s.end <= t);
        self.sales.get(i)
    }

    /// The first survey wave at or after `t`.
    pub fn wave_from(&self, t: Secs) -> Option<&Wave> {
        let i = self.waves.partition_point(|w| w.at < t);
        self.waves.get(i)
    }
}

/// Online shoppers by JST hour: a lunch bump and an evening peak.
const ONLINE_HOURS: [f64; 24] = [
    2.0, 1.0, 0.5, 0.3, 0.3, 0.5, 1.0, 2.0, 2.5, 3.0, 3.0, 3.5, 5.0, 4.0, 3.0, 3.0, 3.0, 3.5, 4.0,
    5.0, 6.0, 7.0, 6.0, 4.0,
];

/// A time on the JST day of `t`: within opening hours (10:00–20:00) for a store, by the online
/// hour profile otherwise.
pub fn time_of_day(t: Secs, in_store: bool, rng: &mut SimRng) -> Secs {
    let day_start = (t + JST).div_euclid(DAY) * DAY - JST;
    let hour = if in_store {
        rng.random_range(10..20)
    } else {
        let total: f64 = ONLINE_HOURS.iter().sum();
        let mut x = rng.random::<f64>() * total;
        let mut hour = 23;
        for (h, w) in ONLINE_HOURS.iter().enumerate() {
            if x < *w {
                hour = h as i64;
                break;
            }
            x -= w;
        }
        hour
    };
    day_start + hour * HOUR + rng.random_range(0..HOUR)
}

pub fn timestamp(t: Secs) -> kizuna_proto::Timestamp {
    kizuna_proto::Timestamp {
        seconds: t,
        nanos: 0,
    }
}

pub fn rfc3339(t: Secs) -> String {
    DateTime::<Utc>::from_timestamp(t, 0).map_or_else(
        || t.to_string(),
        |d| d.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

#[cfg(test)]
mod tests {
    use chrono::Timelike;

    use super::*;

    fn at(s: &str) -> Secs {
        DateTime::parse_from_rfc3339(s).expect("date").timestamp()
    }

    #[test]
    fn sales_follow_the_jst_calendar() {
        let cal = Calendar::new(at("2025-01-01T00:00:00Z"), at("2026-01-01T00:00:00Z"));
        let summer = cal
            .sale_at(at("2025-07-01T12:00:00+09:00"))
            .expect("summer sale");
        assert_eq!(
            (summer.name, summer.code, summer.percent),
            ("summer", "SALE20", 20)
        );
        assert!(cal.sale_at(at("2025-08-20T12:00:00+09:00")).is_none());
        // The new-year sale starts at midnight JST, which is 15:00 UTC the day before.
        assert!(cal.sale_at(at("2025-01-01T14:59:59Z")).is_none());
        assert!(cal.sale_at(at("2025-01-01T15:00:00Z")).is_some());
        let next = cal
            .sale_from(at("2025-08-20T00:00:00Z"))
            .expect("next sale");
        assert_eq!(next.name, "autumn");
        let running = cal
            .sale_from(at("2025-07-01T00:00:00Z"))
            .expect("running sale");
        assert_eq!(running.name, "summer");
    }

    #[test]
    fn waves_are_quarterly() {
        let cal = Calendar::new(at("2025-01-01T00:00:00Z"), at("2026-01-01T00:00:00Z"));
        let w = cal.wave_from(at("2025-05-01T00:00:00Z")).expect("wave");
        assert_eq!(w.survey_id, "nps-2025-q3");
        assert_eq!(rfc3339(w.at), "2025-07-15T01:00:00Z");
        assert_eq!(cal.wave_from(w.at).map(|x| x.at), Some(w.at));
    }

    #[test]
    fn stores_open_in_the_daytime_and_the_day_is_kept() {
        let mut rng = SimRng::new(1);
        let t = at("2025-05-05T20:00:00Z"); // 05:00 JST on the 6th
        for _ in 0..1_000 {
            let s = time_of_day(t, true, &mut rng);
            let jst = DateTime::<Utc>::from_timestamp(s + JST, 0).expect("time");
            assert!((10..20).contains(&jst.hour()), "{jst}");
            assert_eq!(jst.day(), 6);
            let o = time_of_day(t, false, &mut rng);
            assert_eq!((o + JST).div_euclid(DAY), (t + JST).div_euclid(DAY));
        }
    }
}
