//! Why: churn drivers, the customer's place on the grid and the signals of a motive, in words.

use super::{Lang, money};
use crate::domain::churn::{Assessment, Driver};
use crate::domain::metrics::{BadExperience, Metrics, NpsCategory};
use crate::domain::motive::Motive;
use crate::domain::programme::Programme;
use crate::domain::segment::{Attitude, attitude};

fn bad_kind(lang: Lang, k: BadExperience) -> &'static str {
    match (lang, k) {
        (Lang::En, BadExperience::Reopened) => "reopened",
        (Lang::En, BadExperience::SlaBreached) => "SLA breached",
        (Lang::En, BadExperience::Escalated) => "escalated",
        (Lang::En, BadExperience::LowCsat) => "low post-ticket CSAT",
        (Lang::En, BadExperience::NegativeSentiment) => "negative sentiment",
        (Lang::En, BadExperience::AgingOpenTicket) => "aging open ticket",
        (Lang::Ja, BadExperience::Reopened) => "再オープン",
        (Lang::Ja, BadExperience::SlaBreached) => "SLA超過",
        (Lang::Ja, BadExperience::Escalated) => "エスカレーション",
        (Lang::Ja, BadExperience::LowCsat) => "対応後CSATが低い",
        (Lang::Ja, BadExperience::NegativeSentiment) => "ネガティブな感情",
        (Lang::Ja, BadExperience::AgingOpenTicket) => "長期未解決チケット",
    }
}

/// A churn driver in words, from its name and the metrics it was assessed on.
pub fn driver(lang: Lang, d: &Driver, a: &Assessment, m: &Metrics) -> String {
    let nps = m.nps.unwrap_or(0);
    match (d.name.as_str(), lang) {
        ("inactivity", _) => {
            let interval = m.expected_interval_days;
            match (a.p_alive, m.days_since_last_purchase, lang) {
                (Some(p), Some(days), Lang::En) => format!(
                    "P(alive) {p:.2}: {days:.0} days since the last purchase, usually every {interval:.0} days"
                ),
                (Some(p), Some(days), Lang::Ja) => {
                    format!("生存確率 {p:.2}：最終購入から{days:.0}日（通常は{interval:.0}日ごと）")
                }
                (None, Some(days), Lang::En) => format!(
                    "{days:.0} days since the last purchase, usually every {interval:.0} days"
                ),
                (None, Some(days), Lang::Ja) => {
                    format!("最終購入から{days:.0}日（通常は{interval:.0}日ごと）")
                }
                (_, None, Lang::En) => "no purchase yet".to_owned(),
                (_, None, Lang::Ja) => "まだ購入がありません".to_owned(),
            }
        }
        ("detractor_nps", Lang::En) => format!("NPS {nps} (detractor)"),
        ("detractor_nps", Lang::Ja) => format!("NPS {nps}（批判者）"),
        ("low_csat", Lang::En) => format!("CSAT average {:.1}", m.csat_avg.unwrap_or(0.0)),
        ("low_csat", Lang::Ja) => format!("CSAT平均 {:.1}", m.csat_avg.unwrap_or(0.0)),
        ("high_ces", Lang::En) => {
            format!("CES average {:.1} (high effort)", m.ces_avg.unwrap_or(0.0))
        }
        ("high_ces", Lang::Ja) => {
            format!("CES平均 {:.1}（手間が大きい）", m.ces_avg.unwrap_or(0.0))
        }
        ("bad_experiences", _) => {
            let kinds: Vec<&str> = m
                .bad_experience_kinds
                .iter()
                .map(|k| bad_kind(lang, *k))
                .collect();
            match lang {
                Lang::En => format!(
                    "{} bad service experiences ({})",
                    m.bad_experiences,
                    kinds.join(", ")
                ),
                Lang::Ja => format!(
                    "不満なサポート体験 {}件（{}）",
                    m.bad_experiences,
                    kinds.join("、")
                ),
            }
        }
        ("aging_ticket", Lang::En) => format!(
            "a ticket open for {:.0} days",
            m.oldest_open_ticket_days.unwrap_or(0.0)
        ),
        ("aging_ticket", Lang::Ja) => format!(
            "{:.0}日間未解決のチケット",
            m.oldest_open_ticket_days.unwrap_or(0.0)
        ),
        ("falling_spend", Lang::En) => format!(
            "spend down to {:.0}% of the previous period",
            m.spend_trend.unwrap_or(0.0) * 100.0
        ),
        ("falling_spend", Lang::Ja) => format!(
            "購入額が前期の{:.0}%に減少",
            m.spend_trend.unwrap_or(0.0) * 100.0
        ),
        ("drift", Lang::Ja) => {
            let mut parts = Vec::new();
            if let Some(g) = m.gap_trend {
                parts.push(format!("直近の購入間隔が以前の{g:.1}倍"));
            }
            if let Some(f) = m.frequency_trend {
                parts.push(format!("購入日数が前期の{:.0}%", f * 100.0));
            }
            format!("離れつつある：{}", parts.join("、"))
        }
        ("rhythm", Lang::Ja) => format!(
            "通常{:.0}日ごとの購入：利用中でも一定期間購入がないことがある",
            m.expected_interval_days
        ),
        ("few_purchases", Lang::Ja) => format!(
            "購入日はまだ{}日：新規・低頻度の顧客は離脱しやすい",
            m.repeat_purchases + 1
        ),
        ("baseline", Lang::Ja) => "この店舗の基礎的な離脱率".to_owned(),
        // A driver this file does not know yet: the domain's own words.
        _ => d.detail.clone(),
    }
}

/// Why the customer sits in their grid cell: the attitude and the profit, in words.
pub fn segment_reason(lang: Lang, m: &Metrics, programme: &Programme) -> String {
    let rules = &programme.segments;
    let (att, _) = attitude(m, rules);
    let nps = m.nps.unwrap_or(0);
    let why = match (lang, att, m.nps_category) {
        (Lang::En, Attitude::Promoter, NpsCategory::Promoter) => format!("NPS {nps} (promoter)"),
        (Lang::En, Attitude::Passive, NpsCategory::Passive) => format!("NPS {nps} (passive)"),
        (Lang::En, Attitude::Detractor, NpsCategory::Detractor) => {
            format!("NPS {nps} (detractor)")
        }
        (Lang::Ja, Attitude::Promoter, NpsCategory::Promoter) => format!("NPS {nps}（推奨者）"),
        (Lang::Ja, Attitude::Passive, NpsCategory::Passive) => format!("NPS {nps}（中立者）"),
        (Lang::Ja, Attitude::Detractor, NpsCategory::Detractor) => format!("NPS {nps}（批判者）"),
        (Lang::En, Attitude::Unknown, _) => "no attitude signal yet".to_owned(),
        (Lang::Ja, Attitude::Unknown, _) => "態度を示すシグナルはまだありません".to_owned(),
        (Lang::En, Attitude::Detractor, _)
            if m.bad_experiences >= rules.detractor_bad_experiences =>
        {
            format!("no NPS; {} bad service experiences", m.bad_experiences)
        }
        (Lang::Ja, Attitude::Detractor, _)
            if m.bad_experiences >= rules.detractor_bad_experiences =>
        {
            format!("NPSなし、不満なサポート体験 {}件", m.bad_experiences)
        }
        (Lang::En, _, _) => format!("no NPS; CSAT average {:.1}", m.csat_avg.unwrap_or(0.0)),
        (Lang::Ja, _, _) => format!("NPSなし、CSAT平均 {:.1}", m.csat_avg.unwrap_or(0.0)),
    };
    let high = m.profit_spend_minor >= rules.high_value_spend_minor;
    let currency = programme.currency.to_string();
    let spend = money(lang, m.profit_spend_minor as f64, &currency);
    let threshold = money(lang, rules.high_value_spend_minor as f64, &currency);
    let days = rules.profit_window_days;
    let profit = match (lang, high) {
        (Lang::En, true) => format!("high profit: {spend} over {days} days (≥ {threshold})"),
        (Lang::En, false) => format!("low profit: {spend} over {days} days (< {threshold})"),
        (Lang::Ja, true) => format!("高収益：{days}日間で{spend}（{threshold}以上）"),
        (Lang::Ja, false) => format!("低収益：{days}日間で{spend}（{threshold}未満）"),
    };
    match lang {
        Lang::En => format!("{why}; {profit}"),
        Lang::Ja => format!("{why}、{profit}"),
    }
}

/// The signals behind the motive the rules chose, in words.
pub fn motive_signals(lang: Lang, mot: Option<Motive>, m: &Metrics, p: &Programme) -> Vec<String> {
    let nps = m.nps.unwrap_or(0);
    let en = lang == Lang::En;
    match mot.unwrap_or(Motive::Unknown) {
        Motive::TrulyLoyal => vec![
            if en {
                format!("NPS {nps} (promoter)")
            } else {
                format!("NPS {nps}（推奨者）")
            },
            if en {
                format!("{} referrals", m.referrals)
            } else {
                format!("紹介 {}件", m.referrals)
            },
            if en {
                format!("{:.0} orders in the last year", m.orders_last_year)
            } else {
                format!("直近1年の注文 {:.0}件", m.orders_last_year)
            },
        ],
        Motive::PriceDriven => {
            let share = m.discount_share.unwrap_or(0.0) * 100.0;
            vec![if en {
                format!("{share:.0}% of spend with a discount or coupon")
            } else {
                format!("購入額の{share:.0}%が割引・クーポン利用")
            }]
        }
        Motive::ProgrammeDriven => {
            let share = m.programme_coupon_share.unwrap_or(0.0) * 100.0;
            vec![if en {
                format!("{share:.0}% of orders paid with programme rewards")
            } else {
                format!("注文の{share:.0}%がプログラム特典の利用")
            }]
        }
        Motive::Satisfied => {
            let mut out = Vec::new();
            if m.nps_category == NpsCategory::Promoter {
                out.push(if en {
                    format!("NPS {nps} (promoter)")
                } else {
                    format!("NPS {nps}（推奨者）")
                });
            }
            if let Some(v) = m.csat_avg.filter(|v| *v >= 4.0) {
                out.push(if en {
                    format!("CSAT average {v:.1}")
                } else {
                    format!("CSAT平均 {v:.1}")
                });
            }
            out.push(if en {
                "no bad service experience".into()
            } else {
                "不満なサポート体験なし".into()
            });
            out
        }
        Motive::Convenience => {
            let share = m.top_channel_share.unwrap_or(0.0) * 100.0;
            let channel = m.top_channel.clone().unwrap_or_default();
            if en {
                vec![
                    format!("{share:.0}% of orders through {channel}"),
                    "buys on rhythm".into(),
                ]
            } else {
                vec![
                    format!("注文の{share:.0}%が{channel}経由"),
                    "いつものリズムで購入".into(),
                ]
            }
        }
        Motive::Unknown if m.orders < f64::from(p.motives.min_orders) => vec![if en {
            format!(
                "{:.0} orders, {} needed to judge",
                m.orders, p.motives.min_orders
            )
        } else {
            format!(
                "注文{:.0}件（判定には{}件必要）",
                m.orders, p.motives.min_orders
            )
        }],
        Motive::Unknown => vec![if en {
            "no signal strong enough".into()
        } else {
            "十分に強いシグナルがありません".into()
        }],
    }
}
