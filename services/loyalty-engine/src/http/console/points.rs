//! Points in the console (issue 16): on the customer page, the balances, the open lots and every
//! movement with its reason; on the programme page, the rules of the `[points]` section.
//!
//! The figures are the customer's points book folded at the engine's "now"
//! (`PointsBook::fold`, i.e. `domain::points::ledger::fold`), the same fold the API answers
//! with, so the lots add up to available + pending and each movement explains its part.
//! Releases from pending and expiries are not stored movements: they come out of the fold (a
//! lot's `available_at`, the `expire:<lot>` postings) and are listed with the others.

use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::i18n::{self, Lang};
use crate::domain::points::config::{CalendarPeriod, ExpiryMode, NegativeBalance, Rounding};
use crate::domain::points::{Folded, Movement, MovementKind, PointsBook, PointsRules, referral};
use crate::domain::programme::Programme;

/// Movements listed on the customer page, newest first.
const MOVEMENTS_SHOWN: usize = 100;

/// One line of the movements table.
struct Line {
    at: DateTime<Utc>,
    /// A label key (`pts.kind.*`).
    kind: &'static str,
    /// Signed effect on the balance (0 for a release: pending → available, not shown).
    points: i64,
    reason: String,
    /// The domain's reason in English, shown under a Japanese summary.
    detail: Option<String>,
    /// The movement did nothing (a duplicate, a cancel of nothing…).
    ignored: bool,
    id: String,
}

fn kind_key(kind: &MovementKind) -> &'static str {
    match kind {
        MovementKind::Activity => "pts.kind.activity",
        MovementKind::Earn { .. } => "pts.kind.earn",
        MovementKind::Adjust { .. } => "pts.kind.adjust",
        MovementKind::Redeem { .. } => "pts.kind.redeem",
        MovementKind::CancelRedemption { .. } => "pts.kind.cancel",
        MovementKind::Clawback { .. } => "pts.kind.clawback",
    }
}

/// Every movement with an effect (purchases that only mark activity are left out), plus the
/// releases and expiries the fold derived, newest first.
fn lines(lang: Lang, book: &PointsBook, folded: &Folded, now: DateTime<Utc>) -> Vec<Line> {
    let mut out: Vec<Line> = book
        .movements
        .iter()
        .filter(|m| !matches!(m.kind, MovementKind::Activity))
        .map(|m| Line {
            at: m.at,
            kind: kind_key(&m.kind),
            points: m.signed(),
            reason: match lang {
                Lang::En => m.reason.clone(),
                Lang::Ja => ja_summary(m),
            },
            detail: (lang == Lang::Ja).then(|| m.reason.clone()),
            ignored: folded.ignored.contains(&m.id),
            id: m.id.clone(),
        })
        .collect();
    for lot in &folded.lots {
        if lot.available_at > lot.earned_at && lot.available_at <= now {
            // What was still in the lot when it became spendable.
            let before: i64 = folded
                .postings
                .iter()
                .filter(|p| p.lot.as_deref() == Some(&lot.id) && p.at < lot.available_at)
                .map(|p| p.amount)
                .sum();
            out.push(Line {
                at: lot.available_at,
                kind: "pts.kind.release",
                points: 0,
                reason: release_words(lang, &lot.id, before),
                detail: None,
                ignored: false,
                id: format!("release:{}", lot.id),
            });
        }
    }
    for p in folded.expiries() {
        out.push(Line {
            at: p.at,
            kind: "pts.kind.expire",
            points: p.amount,
            reason: expiry_reason(lang, p.lot.as_deref().unwrap_or("?"), -p.amount),
            detail: None,
            ignored: false,
            id: p.movement.clone(),
        });
    }
    out.sort_by(|a, b| (b.at, &b.id).cmp(&(a.at, &a.id)));
    out
}

/// A stored movement in Japanese words, from its kind and id (the domain words its reasons in
/// English; the Japanese page shows this, with the English reason under it).
fn ja_summary(m: &Movement) -> String {
    match &m.kind {
        MovementKind::Earn { order_id, .. } => {
            let order = order_id.as_deref().unwrap_or("");
            if m.id.ends_with(":first_order") {
                format!("初回購入ボーナス（注文 {order}）")
            } else if m.id.ends_with(":survey") {
                "アンケート回答ボーナス".to_owned()
            } else if let Some(n) = m.id.strip_prefix("anniversary:") {
                format!("初回購入から{n}周年のボーナス")
            } else if let Some(c) = m.id.strip_prefix(referral::BONUS_PREFIX) {
                format!("紹介ボーナス（紹介した顧客 {c} の初回購入が確定）")
            } else if order_id.is_some() {
                format!("注文 {order} の購入で獲得")
            } else {
                "獲得".to_owned()
            }
        }
        MovementKind::Clawback { order_id } => match m.id.strip_prefix(referral::CANCEL_PREFIX) {
            Some(c) => format!("紹介ボーナスの取り消し（紹介した顧客 {c} の注文が確定前に返金）"),
            None => format!("注文 {order_id} の返金による取り消し"),
        },
        MovementKind::Redeem { redemption_id } => format!("特典の利用（{redemption_id}）"),
        MovementKind::CancelRedemption { redemption_id } => {
            format!("利用 {redemption_id} の取り消し：ポイントを返却")
        }
        MovementKind::Adjust { .. } => "手動調整".to_owned(),
        MovementKind::Activity => "購入".to_owned(),
    }
}

fn release_words(lang: Lang, lot: &str, points: i64) -> String {
    let n = i18n::number(points);
    match lang {
        Lang::En => {
            format!("{n} pending points of {lot} became spendable (the return window ended)")
        }
        Lang::Ja => format!("{lot} の保留ポイント {n} が利用可能になりました（返品期間の終了）"),
    }
}

fn expiry_reason(lang: Lang, lot: &str, points: i64) -> String {
    let n = i18n::number(points);
    match lang {
        Lang::En => format!("{n} points of {lot} expired"),
        Lang::Ja => format!("{lot} のポイント {n} が失効しました"),
    }
}

fn signed(n: i64) -> String {
    if n > 0 {
        format!("+{}", i18n::number(n))
    } else {
        i18n::number(n)
    }
}

/// A table's header row: label keys, and whether the column holds numbers.
fn head(lang: Lang, cols: &[(&'static str, bool)]) -> Markup {
    html! {
        thead { tr {
            @for (key, num) in cols {
                th scope="col" class=[num.then_some("num")] { (lang.t(key)) }
            }
        } }
    }
}

fn field(name: &str, value: i64) -> Markup {
    html! { dd data-field=(name) data-value=(value) { (i18n::number(value)) } }
}

fn opt_date(lang: Lang, at: Option<DateTime<Utc>>, none: &str) -> String {
    at.map_or_else(|| none.to_owned(), |t| i18n::date(lang, t))
}

/// The customer page's points section.
pub fn customer_section(
    lang: Lang,
    programme: &Programme,
    book: &PointsBook,
    now: DateTime<Utc>,
) -> Markup {
    let Some(rules) = programme.points_rules() else {
        return html! {
            section aria-labelledby="h-points" id="points" data-enabled="false" {
                h2 id="h-points" { (lang.t("pts.title")) }
                p { (lang.t("pts.disabled")) }
            }
        };
    };
    let folded = book.fold(rules, now);
    let lines = lines(lang, book, &folded, now);
    let open: Vec<_> = folded
        .lots
        .iter()
        .filter(|l| l.remaining > 0 && l.expired_at.is_none())
        .collect();
    let negative = rules.earn.negative_balance == NegativeBalance::Negative;
    html! {
        section aria-labelledby="h-points" id="points" data-enabled="true" {
            h2 id="h-points" { (lang.t("pts.title")) }
            dl {
                dt { (lang.t("pts.available")) } (field("points_available", folded.available))
                dt { (lang.t("pts.pending")) } (field("points_pending", folded.pending))
                dt { (lang.t("pts.debt")) } (field("points_debt", folded.debt))
                @if negative {
                    dt { (lang.t("pts.balance")) } (field("points_balance", folded.balance(rules.earn.negative_balance)))
                }
            }
            p class="hint" { (lang.t("pts.adds_up")) }
            @if open.is_empty() {
                p id="points-no-lots" { (lang.t("pts.no_lots")) }
            } @else {
                table class="figures" id="points-lots" {
                    caption { (lang.t("pts.lots")) }
                    (head(lang, &[("pts.lot", false), ("pts.earned_at", false), ("pts.remaining", true), ("pts.spendable_from", false), ("pts.expires", false)]))
                    tbody {
                        @for l in &open {
                            tr data-lot=(l.id) data-pending=(l.available_at > now) {
                                th scope="row" { (l.id) }
                                td { (i18n::date(lang, l.earned_at)) }
                                td class="num" data-value=(l.remaining) { (i18n::number(l.remaining)) " / " (i18n::number(l.amount)) }
                                td { (i18n::date(lang, l.available_at)) }
                                td { (opt_date(lang, l.due_at, lang.t("pts.never"))) }
                            }
                        }
                    }
                }
            }
            @if lines.is_empty() {
                p id="points-no-movements" { (lang.t("pts.no_movements")) }
            } @else {
                table class="timeline" id="points-movements" data-count=(lines.len()) {
                    caption { (lang.t("pts.movements")) }
                    (head(lang, &[("cust.when", false), ("cust.what", false), ("pts.points.col", true), ("reason", false)]))
                    tbody {
                        @for l in lines.iter().take(MOVEMENTS_SHOWN) {
                            tr data-movement=(l.id) data-kind=(l.kind.trim_start_matches("pts.kind.")) data-ignored=(l.ignored) {
                                td { (i18n::datetime(lang, l.at)) }
                                td { (lang.t(l.kind)) @if l.ignored { " (" (lang.t("pts.ignored")) ")" } }
                                td class="num" data-value=(l.points) { @if l.kind != "pts.kind.release" { (signed(l.points)) } }
                                td {
                                    (l.reason)
                                    @if let Some(d) = &l.detail { br; small lang="en" { (d) } }
                                }
                            }
                        }
                    }
                }
                @if lines.len() > MOVEMENTS_SHOWN {
                    p class="hint" { (lang.t("pts.more")) " (" (lines.len() - MOVEMENTS_SHOWN) ")" }
                }
            }
        }
    }
}

/// "1 point per ¥100", "1.5ポイント / 100円".
fn earn_rate(lang: Lang, rules: &PointsRules, currency: &str) -> String {
    let unit = i18n::money(lang, rules.earn.currency_unit_minor as f64, currency);
    let rate = rules.earn.per_currency_unit;
    match lang {
        Lang::En if rate == 1.0 => format!("1 point per {unit}"),
        Lang::En => format!("{rate} points per {unit}"),
        Lang::Ja => format!("{unit}ごとに{rate}ポイント"),
    }
}

fn expiry_words(lang: Lang, rules: &PointsRules) -> String {
    let e = &rules.expiry;
    let period = |p: CalendarPeriod| match (lang, p) {
        (Lang::En, CalendarPeriod::Year) => "year",
        (Lang::En, CalendarPeriod::Quarter) => "quarter",
        (Lang::En, CalendarPeriod::Month) => "month",
        (Lang::Ja, CalendarPeriod::Year) => "年",
        (Lang::Ja, CalendarPeriod::Quarter) => "四半期",
        (Lang::Ja, CalendarPeriod::Month) => "月",
    };
    match (lang, e.mode) {
        (Lang::En, ExpiryMode::Rolling) => {
            format!(
                "rolling: each lot expires {} months after it was earned",
                e.months
            )
        }
        (Lang::Ja, ExpiryMode::Rolling) => {
            format!("ローリング：獲得から{}か月で失効", e.months)
        }
        (Lang::En, ExpiryMode::Inactivity) => format!(
            "inactivity: all points expire after {} months without a purchase",
            e.months
        ),
        (Lang::Ja, ExpiryMode::Inactivity) => {
            format!("休眠：{}か月購入がないと全ポイントが失効", e.months)
        }
        (Lang::En, ExpiryMode::Calendar) => format!(
            "calendar: at the end of the {} the points were earned in",
            period(e.period)
        ),
        (Lang::Ja, ExpiryMode::Calendar) => {
            format!("暦：獲得した{}の末に失効", period(e.period))
        }
    }
}

fn rounding_key(r: Rounding) -> &'static str {
    match r {
        Rounding::Down => "pts.round.down",
        Rounding::Nearest => "pts.round.nearest",
        Rounding::Up => "pts.round.up",
    }
}

/// The programme page's points section: how points are earned, kept and spent.
pub fn programme_section(lang: Lang, p: &Programme) -> Markup {
    let currency = p.currency.to_string();
    let Some(rules) = p.points_rules() else {
        return html! {
            section aria-labelledby="h-points-rules" id="points-rules" data-enabled="false" {
                h2 id="h-points-rules" { (lang.t("pts.rules")) }
                p { (lang.t("pts.disabled")) }
            }
        };
    };
    let e = &rules.earn;
    let bonus = |n: i64| {
        if n > 0 {
            format!("{} {}", i18n::number(n), lang.t("pts.points"))
        } else {
            lang.t("none").to_owned()
        }
    };
    html! {
        section aria-labelledby="h-points-rules" id="points-rules" data-enabled="true" {
            h2 id="h-points-rules" { (lang.t("pts.rules")) }
            dl {
                dt { (lang.t("pts.rate")) }
                dd id="points-rate" data-per-unit=(e.per_currency_unit) data-unit-minor=(e.currency_unit_minor) { (earn_rate(lang, rules, &currency)) }
                dt { (lang.t("pts.rounding")) } dd { (lang.t(rounding_key(e.rounding))) }
                dt { (lang.t("pts.pending_days")) }
                dd id="points-pending-days" data-value=(e.pending_days) { (e.pending_days) " " (lang.t("days")) }
                dt { (lang.t("pts.expiry")) }
                dd id="points-expiry" data-mode=(format!("{:?}", rules.expiry.mode).to_lowercase()) { (expiry_words(lang, rules)) }
                dt { (lang.t("pts.warn")) } dd { (rules.expiry.warn_days) " " (lang.t("days")) }
                dt { (lang.t("pts.first_order")) } dd { (bonus(e.first_order_bonus)) }
                dt { (lang.t("pts.anniversary")) } dd { (bonus(e.anniversary_bonus)) }
                dt { (lang.t("pts.survey")) } dd { (bonus(e.survey_bonus)) }
                dt { (lang.t("pts.referral")) } dd { (bonus(e.referral_bonus)) }
                dt { (lang.t("pts.negative")) }
                dd { (lang.t(match e.negative_balance { NegativeBalance::Debt => "pts.neg.debt", NegativeBalance::Negative => "pts.neg.negative" })) }
                dt { (lang.t("pts.value")) }
                dd id="points-value" { (i18n::money(lang, rules.cost_per_point_minor, &currency)) }
            }
            @if !e.category_multipliers.is_empty() || !e.tier_multipliers.is_empty() {
                table class="figures" id="points-multipliers" {
                    caption { (lang.t("pts.multipliers")) }
                    thead { tr { th scope="col" { (lang.t("pts.applies_to")) } th scope="col" class="num" { "×" } } }
                    tbody {
                        @for (name, m) in &e.category_multipliers {
                            tr data-category=(name) { th scope="row" { (lang.t("pts.category")) ": " (name) } td class="num" { (m) } }
                        }
                        @for (name, m) in &e.tier_multipliers {
                            tr data-tier=(name) { th scope="row" { (lang.t("tier")) ": " (name) } td class="num" { (m) } }
                        }
                    }
                }
            }
            @if rules.rewards.is_empty() {
                p { (lang.t("pts.no_rewards")) }
            } @else {
                table class="figures" id="points-rewards" {
                    caption { (lang.t("pts.rewards")) }
                    (head(lang, &[("pts.reward.id", false), ("pts.reward", false), ("pts.cost", true), ("pts.min_tier", false)]))
                    tbody {
                        @for r in &rules.rewards {
                            tr data-reward=(r.id) {
                                th scope="row" { (r.id) }
                                td { (r.name) }
                                td class="num" data-value=(r.cost) { (i18n::number(r.cost)) }
                                td { (r.min_tier.as_deref().unwrap_or(lang.t("any"))) }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn example() -> Programme {
        Programme::parse(include_str!("../../../config/programme-points.toml")).expect("example")
    }

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, 12, 0, 0)
            .single()
            .expect("date")
    }

    fn earn(id: &str, day: u32, amount: i64, pending_days: i64) -> Movement {
        Movement {
            id: id.to_owned(),
            at: at(day),
            kind: MovementKind::Earn {
                available_at: at(day) + chrono::Duration::days(pending_days),
                expires_at: None,
                order_id: Some(format!("o-{id}")),
            },
            amount,
            reason: format!("order o-{id}: {amount} points"),
            source_event: id.to_owned(),
            programme_version: "v".to_owned(),
        }
    }

    /// A referral bonus cancelled by the referred customer's refund says so in Japanese,
    /// naming the customer, not an order id that is the bonus's lot.
    #[test]
    fn a_cancelled_referral_bonus_is_named_as_such_in_japanese() {
        let mut cancel = earn("r1", 3, 500, 0);
        cancel.id = "referral-cancel:cust-f".to_owned();
        cancel.kind = MovementKind::Clawback {
            order_id: "referral:cust-f".to_owned(),
        };
        let words = ja_summary(&cancel);
        assert!(words.starts_with("紹介ボーナスの取り消し"), "{words}");
        assert!(words.contains("cust-f"), "{words}");
        assert!(!words.contains("注文 referral:"), "{words}");
        let mut refund = earn("e3", 3, 40, 0);
        refund.id = "e3:clawback".to_owned();
        refund.kind = MovementKind::Clawback {
            order_id: "o-e2".to_owned(),
        };
        assert_eq!(ja_summary(&refund), "注文 o-e2 の返金による取り消し");
    }

    /// The balances shown are the fold's, and the table lists each movement with its reason,
    /// the release the fold derived, newest first.
    #[test]
    fn the_customer_section_shows_the_fold_and_every_movement() {
        let p = example();
        let mut refund = earn("e2", 5, 40, 0);
        refund.id = "e3:clawback".to_owned();
        refund.kind = MovementKind::Clawback {
            order_id: "o-e2".to_owned(),
        };
        refund.at = at(6);
        refund.reason = "refund of order o-e2: 40 points taken back".to_owned();
        let book = PointsBook {
            movements: vec![earn("e1", 1, 100, 2), earn("e2", 5, 40, 14), refund],
            ..Default::default()
        };
        let now = at(10);
        let folded = book.fold(p.points_rules().expect("points"), now);
        assert_eq!((folded.available, folded.pending, folded.debt), (100, 0, 0));
        let html = customer_section(Lang::En, &p, &book, now).into_string();
        assert!(
            html.contains(r#"data-field="points_available" data-value="100""#),
            "{html}"
        );
        assert!(html.contains(r#"data-field="points_pending" data-value="0""#));
        assert!(html.contains("refund of order o-e2: 40 points taken back"));
        assert!(html.contains(r#"data-kind="release""#), "the release of e1");
        assert!(html.contains("100 pending points of e1 became spendable"));
        let clawback = html.find("e3:clawback").expect("clawback row");
        let first_earn = html.find(r#"data-movement="e1""#).expect("earn row");
        assert!(clawback < first_earn, "newest first");
        let ja = customer_section(Lang::Ja, &p, &book, now).into_string();
        assert!(ja.contains("利用可能"), "{ja}");
        assert!(ja.contains("注文 o-e2 の返金による取り消し"), "{ja}");
        assert!(
            ja.contains(r#"<small lang="en">refund of order o-e2: 40 points taken back</small>"#),
            "the English reason under the Japanese summary: {ja}"
        );
    }

    #[test]
    fn without_points_the_pages_say_so() {
        let p = crate::domain::programme::builtin();
        let html = customer_section(Lang::En, &p, &PointsBook::default(), at(1)).into_string();
        assert!(html.contains(r#"data-enabled="false""#));
        assert!(
            programme_section(Lang::Ja, &p)
                .into_string()
                .contains("ポイントがありません")
        );
    }

    #[test]
    fn the_programme_section_shows_the_rules_and_the_catalogue() {
        let p = example();
        let html = programme_section(Lang::En, &p).into_string();
        assert!(html.contains("1 point per ¥100"), "{html}");
        assert!(html.contains(r#"id="points-pending-days" data-value="14""#));
        assert!(html.contains("each lot expires 6 months after it was earned"));
        for r in &p.points_rules().expect("points").rewards {
            assert!(
                html.contains(&format!(r#"data-reward="{}""#, r.id)),
                "{}",
                r.id
            );
        }
        let ja = programme_section(Lang::Ja, &p).into_string();
        assert!(ja.contains("100円ごとに1ポイント"), "{ja}");
    }
}
