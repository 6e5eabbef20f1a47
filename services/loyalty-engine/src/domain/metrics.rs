//! Figures derived from a customer's facts at a given time. Pure: the same facts and the same
//! `now` always give the same figures.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::event::{SurveyScore, TicketStatus};
use super::facts::{Facts, order_fraction};
use super::programme::{Period, Programme};

/// NPS category of an answer: promoter 9–10, passive 7–8, detractor 0–6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NpsCategory {
    Promoter,
    Passive,
    Detractor,
    None,
}

impl NpsCategory {
    pub fn of(score: u8) -> Self {
        match score {
            9..=10 => NpsCategory::Promoter,
            7..=8 => NpsCategory::Passive,
            _ => NpsCategory::Detractor,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NpsCategory::Promoter => "promoter",
            NpsCategory::Passive => "passive",
            NpsCategory::Detractor => "detractor",
            NpsCategory::None => "none",
        }
    }
}

/// Why a ticket counted as a bad experience.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum BadExperience {
    Reopened,
    SlaBreached,
    Escalated,
    LowCsat,
    NegativeSentiment,
    AgingOpenTicket,
}

/// Everything the rules look at, as of one moment.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    pub as_of: DateTime<Utc>,
    // Purchases.
    pub lifetime_spend_minor: i64,
    pub orders: f64,
    pub average_order_minor: Option<f64>,
    pub qualifying_spend_minor: i64,
    pub qualifying_orders: f64,
    pub first_purchase_at: Option<DateTime<Utc>>,
    pub last_purchase_at: Option<DateTime<Utc>>,
    pub tenure_days: f64,
    /// Repeat purchases, counting distinct purchase days (BG/NBD `x`).
    pub repeat_purchases: u32,
    /// Days from the first to the last purchase day (BG/NBD `t_x`).
    pub recency_days: f64,
    /// Mean net spend per purchase day after the first (Gamma-Gamma `m_x`).
    pub repeat_mean_spend_minor: Option<f64>,
    /// The customer's own mean days between purchase days.
    pub own_rhythm_days: Option<f64>,
    /// The category's expected days between purchases.
    pub category_cadence_days: f64,
    pub main_category: Option<String>,
    /// Expected days between purchases for this customer (own rhythm blended with category).
    pub expected_interval_days: f64,
    pub days_since_last_purchase: Option<f64>,
    pub overdue: bool,
    /// When the customer becomes overdue if they buy nothing.
    pub overdue_at: Option<DateTime<Utc>>,
    pub recent_spend_minor: i64,
    pub previous_spend_minor: i64,
    /// Recent period's spend over the previous period's; None without a previous period.
    pub spend_trend: Option<f64>,
    /// Drift against the customer's own rhythm: the mean of the last two completed gaps
    /// between purchase days over the mean of the gaps before them (at least four gaps).
    /// Above 1 the gaps are lengthening.
    #[serde(default)]
    pub gap_trend: Option<f64>,
    /// Purchase days in the recent trend period over those in the previous one (with at least
    /// two in the previous one). Below 1 the customer buys less often.
    #[serde(default)]
    pub frequency_trend: Option<f64>,
    pub discount_share: Option<f64>,
    pub programme_coupon_share: Option<f64>,
    pub top_channel: Option<String>,
    pub top_channel_share: Option<f64>,
    pub orders_last_year: f64,
    /// Spend over the grid's profit window.
    pub profit_spend_minor: i64,
    pub referrals: u32,
    pub unmatched_refunds: u32,
    // Support.
    pub open_tickets: u32,
    pub oldest_open_ticket_days: Option<f64>,
    pub bad_experiences: u32,
    pub bad_experience_kinds: Vec<BadExperience>,
    // Surveys.
    pub nps: Option<u8>,
    pub nps_category: NpsCategory,
    pub csat_latest: Option<u8>,
    pub csat_avg: Option<f64>,
    pub ces_latest: Option<u8>,
    pub ces_avg: Option<f64>,
}

fn days(d: Duration) -> f64 {
    d.num_seconds() as f64 / 86_400.0
}

fn in_period(t: DateTime<Utc>, p: &Period) -> bool {
    t >= p.from && t < p.to
}

struct NetOrder<'a> {
    at: DateTime<Utc>,
    net: i64,
    fraction: f64,
    discounted: bool,
    programme_coupon: bool,
    channel: &'a str,
    category: &'a str,
}

impl Metrics {
    /// Derives the metrics of `facts` at `now`. Events after `now` are ignored, so this also
    /// answers "as of" questions about the past.
    pub fn derive(facts: &Facts, programme: &Programme, now: DateTime<Utc>) -> Self {
        let horizon = now + Duration::seconds(1);
        let prefixes = &programme.motives.programme_coupon_prefixes;
        let orders: Vec<NetOrder<'_>> = facts
            .orders
            .iter()
            .filter(|(_, o)| o.at < horizon)
            .map(|(id, o)| {
                let refunded = facts
                    .refunds
                    .values()
                    .filter(|r| &r.order_id == id && r.at < horizon)
                    .map(|r| r.amount)
                    .sum::<i64>()
                    .min(o.amount);
                NetOrder {
                    at: o.at,
                    net: o.amount - refunded,
                    fraction: order_fraction(o.amount, refunded),
                    discounted: o.discount > 0 || o.coupon.is_some(),
                    programme_coupon: o
                        .coupon
                        .as_deref()
                        .is_some_and(|c| prefixes.iter().any(|p| c.starts_with(p.as_str()))),
                    channel: &o.channel,
                    category: &o.category,
                }
            })
            .collect();
        let unmatched: Vec<_> = facts
            .unmatched_refunds()
            .filter(|r| r.at < horizon)
            .collect();
        let unmatched_total: i64 = unmatched.iter().map(|r| r.amount).sum();
        let spend_in = |p: &Period| -> i64 {
            let orders: i64 = orders
                .iter()
                .filter(|o| in_period(o.at, p))
                .map(|o| o.net)
                .sum();
            let refunds: i64 = unmatched
                .iter()
                .filter(|r| in_period(r.at, p))
                .map(|r| r.amount)
                .sum();
            (orders - refunds).max(0)
        };
        let orders_in = |p: &Period| -> f64 {
            orders
                .iter()
                .filter(|o| in_period(o.at, p))
                .map(|o| o.fraction)
                .sum()
        };

        let archive = &facts.archive;
        let lifetime_spend_minor =
            (archive.spend + orders.iter().map(|o| o.net).sum::<i64>() - unmatched_total).max(0);
        let order_count = archive.orders + orders.iter().map(|o| o.fraction).sum::<f64>();

        let periods = programme.qualification_periods(now);
        let (qualifying_spend_minor, qualifying_orders) = periods
            .iter()
            .map(|p| (spend_in(p), orders_in(p)))
            .max_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)))
            .unwrap_or((0, 0.0));

        // Purchase days of orders that still count.
        let mut purchase_days: Vec<chrono::NaiveDate> = orders
            .iter()
            .filter(|o| o.fraction > 0.0)
            .map(|o| o.at.date_naive())
            .collect();
        purchase_days.sort_unstable();
        purchase_days.dedup();
        let first_purchase_at = archive
            .first_at
            .filter(|t| *t < horizon)
            .into_iter()
            .chain(orders.iter().filter(|o| o.fraction > 0.0).map(|o| o.at))
            .min();
        let last_purchase_at = orders
            .iter()
            .filter(|o| o.fraction > 0.0)
            .map(|o| o.at)
            .chain(archive.last_at.filter(|t| *t < horizon))
            .max();
        let distinct_days = purchase_days.len() as u32 + archive.days;
        let repeat_purchases = distinct_days.saturating_sub(1);
        let recency_days = match (first_purchase_at, last_purchase_at) {
            (Some(f), Some(l)) => {
                days(l.date_naive().signed_duration_since(f.date_naive())).max(0.0)
            }
            _ => 0.0,
        };
        let tenure_days = first_purchase_at.map_or(0.0, |f| days(now - f).max(0.0));
        let repeat_mean_spend_minor = (repeat_purchases > 0).then(|| {
            let first_day = first_purchase_at.map(|f| f.date_naive());
            let later: i64 = if archive.days == 0 {
                orders
                    .iter()
                    .filter(|o| Some(o.at.date_naive()) != first_day)
                    .map(|o| o.net.max(0))
                    .sum()
            } else {
                // Approximation once old orders are folded: the average over all purchase days.
                lifetime_spend_minor * i64::from(repeat_purchases) / i64::from(distinct_days.max(1))
            };
            later as f64 / f64::from(repeat_purchases)
        });
        let own_rhythm_days =
            (repeat_purchases > 0).then(|| recency_days / f64::from(repeat_purchases));

        // Category cadence: of the category with the most spend.
        let mut by_category: BTreeMap<&str, i64> = BTreeMap::new();
        for o in &orders {
            if !o.category.is_empty() {
                *by_category.entry(o.category).or_default() += o.net.max(0);
            }
        }
        let main_category = by_category
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(c, _)| (*c).to_owned());
        let cadence = &programme.cadence;
        let category_cadence_days = main_category
            .as_deref()
            .map_or(cadence.default_days, |c| cadence.days_for(c));
        let weight = if cadence.own_rhythm_after == 0 {
            1.0
        } else {
            (f64::from(repeat_purchases) / f64::from(cadence.own_rhythm_after)).min(1.0)
        };
        let expected_interval_days = match own_rhythm_days {
            Some(own) if own > 0.0 => weight * own + (1.0 - weight) * category_cadence_days,
            _ => category_cadence_days,
        }
        .max(1.0);
        let days_since_last_purchase = last_purchase_at.map(|l| days(now - l).max(0.0));
        let overdue_after =
            Duration::seconds((expected_interval_days * cadence.overdue_factor * 86_400.0) as i64);
        let overdue_at = last_purchase_at.map(|l| l + overdue_after);
        let overdue = overdue_at.is_some_and(|t| now >= t);

        let period = Duration::days(i64::from(programme.trend.period_days));
        let recent = Period {
            from: now - period,
            to: horizon,
        };
        let previous = Period {
            from: now - period - period,
            to: now - period,
        };
        let recent_spend_minor = spend_in(&recent);
        let previous_spend_minor = spend_in(&previous);
        let spend_trend = (previous_spend_minor > 0)
            .then(|| recent_spend_minor as f64 / previous_spend_minor as f64);

        let gaps: Vec<f64> = purchase_days
            .windows(2)
            .map(|w| w[1].signed_duration_since(w[0]).num_days() as f64)
            .collect();
        let gap_trend = (gaps.len() >= 4).then(|| {
            let k = gaps.len();
            let recent = (gaps[k - 1] + gaps[k - 2]) / 2.0;
            let earlier = gaps[..k - 2].iter().sum::<f64>() / (k - 2) as f64;
            recent / earlier.max(1.0)
        });
        let days_in = |p: &Period| {
            let mut d: Vec<chrono::NaiveDate> = orders
                .iter()
                .filter(|o| o.fraction > 0.0 && in_period(o.at, p))
                .map(|o| o.at.date_naive())
                .collect();
            d.sort_unstable();
            d.dedup();
            d.len()
        };
        let (recent_days, previous_days) = (days_in(&recent), days_in(&previous));
        let frequency_trend =
            (previous_days >= 2).then(|| recent_days as f64 / previous_days as f64);

        let gross: i64 = orders.iter().map(|o| o.net.max(0)).sum();
        let discount_share = (gross > 0).then(|| {
            orders
                .iter()
                .filter(|o| o.discounted)
                .map(|o| o.net.max(0))
                .sum::<i64>() as f64
                / gross as f64
        });
        let counted = orders.iter().filter(|o| o.fraction > 0.0).count();
        let programme_coupon_share = (counted > 0).then(|| {
            orders
                .iter()
                .filter(|o| o.fraction > 0.0 && o.programme_coupon)
                .count() as f64
                / counted as f64
        });
        let mut channels: BTreeMap<&str, usize> = BTreeMap::new();
        for o in orders
            .iter()
            .filter(|o| o.fraction > 0.0 && !o.channel.is_empty())
        {
            *channels.entry(o.channel).or_default() += 1;
        }
        let with_channel: usize = channels.values().sum();
        let top = channels
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)));
        let top_channel = top.map(|(c, _)| (*c).to_owned());
        let top_channel_share = top.map(|(_, n)| *n as f64 / with_channel as f64);
        let year = Period {
            from: now - Duration::days(365),
            to: horizon,
        };
        let orders_last_year = orders_in(&year);
        let profit = Period {
            from: now - Duration::days(i64::from(programme.segments.profit_window_days)),
            to: horizon,
        };
        let profit_spend_minor = spend_in(&profit);

        // Support.
        let service = &programme.service;
        let window_from = now - Duration::days(i64::from(service.window_days));
        let aging = Duration::days(i64::from(service.aging_ticket_days));
        let mut open_tickets = 0;
        let mut oldest_open: Option<DateTime<Utc>> = None;
        let mut bad_experiences = 0;
        let mut kinds = std::collections::BTreeSet::new();
        for changes in facts.tickets.values() {
            let mut list: Vec<_> = changes.iter().filter(|(_, c)| c.at < horizon).collect();
            if list.is_empty() {
                continue;
            }
            list.sort_by(|a, b| (a.1.at, a.0).cmp(&(b.1.at, b.0)));
            let first_at = list[0].1.at;
            let last = list[list.len() - 1].1;
            let is_open = matches!(
                last.status,
                TicketStatus::Opened | TicketStatus::Updated | TicketStatus::Reopened
            );
            if is_open {
                open_tickets += 1;
                oldest_open = Some(oldest_open.map_or(first_at, |t| t.min(first_at)));
            }
            let mut ticket_bad = Vec::new();
            for (_, c) in list.iter().filter(|(_, c)| c.at >= window_from) {
                if c.status == TicketStatus::Reopened {
                    ticket_bad.push(BadExperience::Reopened);
                }
                if c.sla_breached {
                    ticket_bad.push(BadExperience::SlaBreached);
                }
                if c.escalated {
                    ticket_bad.push(BadExperience::Escalated);
                }
                if c.csat.is_some_and(|v| v <= service.bad_csat_max) {
                    ticket_bad.push(BadExperience::LowCsat);
                }
                if c.sentiment.is_some_and(|v| v <= service.bad_sentiment_max) {
                    ticket_bad.push(BadExperience::NegativeSentiment);
                }
            }
            if is_open && now - first_at >= aging {
                ticket_bad.push(BadExperience::AgingOpenTicket);
            }
            if !ticket_bad.is_empty() {
                // Each ticket counts at most once per window.
                bad_experiences += 1;
                kinds.extend(ticket_bad);
            }
        }

        // Surveys: newest last.
        let answers: Vec<_> = facts.surveys.iter().filter(|s| s.at < horizon).collect();
        let latest = |want: usize| {
            answers
                .iter()
                .rev()
                .find(|s| s.score.kind_index() == want)
                .map(|s| s.score)
        };
        let survey_from = now - Duration::days(i64::from(programme.surveys.window_days));
        let average = |want: usize| {
            let scores: Vec<f64> = answers
                .iter()
                .filter(|s| s.score.kind_index() == want && s.at >= survey_from)
                .map(|s| f64::from(score_value(s.score)))
                .collect();
            (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64)
        };
        let nps = latest(0).map(score_value);
        Metrics {
            as_of: now,
            lifetime_spend_minor,
            orders: order_count,
            average_order_minor: (order_count > 0.0)
                .then(|| lifetime_spend_minor as f64 / order_count),
            qualifying_spend_minor,
            qualifying_orders,
            first_purchase_at,
            last_purchase_at,
            tenure_days,
            repeat_purchases,
            recency_days,
            repeat_mean_spend_minor,
            own_rhythm_days,
            category_cadence_days,
            main_category,
            expected_interval_days,
            days_since_last_purchase,
            overdue,
            overdue_at,
            recent_spend_minor,
            previous_spend_minor,
            spend_trend,
            gap_trend,
            frequency_trend,
            discount_share,
            programme_coupon_share,
            top_channel,
            top_channel_share,
            orders_last_year,
            profit_spend_minor,
            referrals: u32::try_from(facts.referrals.len()).unwrap_or(u32::MAX),
            unmatched_refunds: u32::try_from(unmatched.len()).unwrap_or(u32::MAX),
            open_tickets,
            oldest_open_ticket_days: oldest_open.map(|t| days(now - t).max(0.0)),
            bad_experiences,
            bad_experience_kinds: kinds.into_iter().collect(),
            nps,
            nps_category: nps.map_or(NpsCategory::None, NpsCategory::of),
            csat_latest: latest(1).map(score_value),
            csat_avg: average(1),
            ces_latest: latest(2).map(score_value),
            ces_avg: average(2),
        }
    }

    /// The next moment these metrics change with time alone (a purchase or bad experience
    /// leaving a window, a ticket aging, the customer going overdue), if any.
    pub fn next_change(&self, facts: &Facts, programme: &Programme) -> Option<DateTime<Utc>> {
        let now = self.as_of;
        let mut candidates = Vec::new();
        let q = &programme.qualification;
        for o in facts.orders.values() {
            // When this order leaves the rolling window.
            if let Some(out) = o.at.checked_add_months(chrono::Months::new(q.months))
                && out > now
            {
                candidates.push(out);
            }
        }
        let service_window = Duration::days(i64::from(programme.service.window_days));
        let aging = Duration::days(i64::from(programme.service.aging_ticket_days));
        for changes in facts.tickets.values() {
            for c in changes.values() {
                candidates.push(c.at + service_window);
                candidates.push(c.at + aging);
            }
        }
        candidates.extend(self.overdue_at);
        candidates.extend(programme.next_period_start(now));
        candidates.into_iter().filter(|t| *t > now).min()
    }
}

fn score_value(s: SurveyScore) -> u8 {
    match s {
        SurveyScore::Nps(v) | SurveyScore::Csat(v) | SurveyScore::Ces(v) => v,
    }
}
