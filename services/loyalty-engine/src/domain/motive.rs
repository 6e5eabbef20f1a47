//! Loyalty motives: why a customer keeps buying, where the data supports a guess.

use super::metrics::{Metrics, NpsCategory};
use super::programme::Motives;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Motive {
    /// Frequent, a promoter, refers others.
    TrulyLoyal,
    /// Most spend comes with a discount or coupon.
    PriceDriven,
    /// Buys for the points and perks.
    ProgrammeDriven,
    /// Happy with the product and service.
    Satisfied,
    /// Steady, habitual buying in one channel, no strong feelings.
    Convenience,
    Unknown,
}

impl Motive {
    pub fn as_str(self) -> &'static str {
        match self {
            Motive::TrulyLoyal => "truly_loyal",
            Motive::PriceDriven => "price_driven",
            Motive::ProgrammeDriven => "programme_driven",
            Motive::Satisfied => "satisfied",
            Motive::Convenience => "convenience",
            Motive::Unknown => "unknown",
        }
    }
}

/// The motive and the signals that decided it. Checked from the strongest claim down.
pub fn motive(m: &Metrics, rules: &Motives) -> (Motive, Vec<String>) {
    if m.orders < f64::from(rules.min_orders) {
        return (
            Motive::Unknown,
            vec![format!(
                "{:.0} orders, {} needed to judge",
                m.orders, rules.min_orders
            )],
        );
    }
    let promoter = m.nps_category == NpsCategory::Promoter;
    if promoter
        && m.referrals > 0
        && m.orders_last_year >= f64::from(rules.loyal_min_orders_year)
        && !m.overdue
    {
        return (
            Motive::TrulyLoyal,
            vec![
                format!("NPS {} (promoter)", m.nps.unwrap_or(0)),
                format!("{} referrals", m.referrals),
                format!("{:.0} orders in the last year", m.orders_last_year),
            ],
        );
    }
    if let Some(share) = m.discount_share
        && share >= rules.price_discount_share
    {
        return (
            Motive::PriceDriven,
            vec![format!(
                "{:.0}% of spend with a discount or coupon",
                share * 100.0
            )],
        );
    }
    if let Some(share) = m.programme_coupon_share
        && share >= rules.programme_coupon_share
    {
        return (
            Motive::ProgrammeDriven,
            vec![format!(
                "{:.0}% of orders paid with programme rewards",
                share * 100.0
            )],
        );
    }
    let satisfied_csat = m.csat_avg.is_some_and(|v| v >= 4.0);
    if (promoter || satisfied_csat) && m.bad_experiences == 0 {
        let mut signals = Vec::new();
        if promoter {
            signals.push(format!("NPS {} (promoter)", m.nps.unwrap_or(0)));
        }
        if let Some(v) = m.csat_avg.filter(|v| *v >= 4.0) {
            signals.push(format!("CSAT average {v:.1}"));
        }
        signals.push("no bad service experience".to_owned());
        return (Motive::Satisfied, signals);
    }
    if let (Some(share), Some(channel)) = (m.top_channel_share, m.top_channel.as_deref())
        && share >= rules.convenience_channel_share
        && !m.overdue
        && m.nps_category != NpsCategory::Detractor
    {
        return (
            Motive::Convenience,
            vec![
                format!("{:.0}% of orders through {channel}", share * 100.0),
                "buys on rhythm".to_owned(),
            ],
        );
    }
    (Motive::Unknown, vec!["no signal strong enough".to_owned()])
}
