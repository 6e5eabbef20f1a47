//! Every word the console shows, in English and Japanese: labels (`labels.toml`), the names of
//! grid cells, levels, plays and motives, money and dates here; churn drivers, grid reasons and
//! motive signals in `reasons`; tier progress in `progress`. Templates only ask for keys and
//! pass figures.
//!
//! The rules are the domain's (`domain::churn`, `domain::segment`, `domain::motive`,
//! `domain::tier`); this file only puts what they decided into words.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};

use crate::domain::motive::Motive;

mod progress;
mod reasons;
#[cfg(test)]
mod tests;

pub use progress::{Gaps, drops, keeps, qualifies, reaches, top_tier, window_words};
pub use reasons::{driver, motive_signals, segment_reason};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ja,
}

/// The cookie that keeps the language chosen with the toggle.
pub const LANG_COOKIE: &str = "kizuna_lang";

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ja => "ja",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        match code {
            "en" => Some(Lang::En),
            "ja" => Some(Lang::Ja),
            _ => None,
        }
    }

    pub fn other(self) -> Self {
        match self {
            Lang::En => Lang::Ja,
            Lang::Ja => Lang::En,
        }
    }

    /// The toggle's cookie, else the best of `Accept-Language` (by q), else English.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        if let Some(lang) = super::auth::cookie(headers, LANG_COOKIE).and_then(|c| Lang::parse(&c))
        {
            return lang;
        }
        let Some(accept) = headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
        else {
            return Lang::En;
        };
        let mut best: Option<(f32, Lang)> = None;
        for part in accept.split(',') {
            let mut bits = part.trim().split(';');
            let tag = bits.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = bits
                .find_map(|b| b.trim().strip_prefix("q=").and_then(|q| q.parse().ok()))
                .unwrap_or(1.0f32);
            let primary = tag.split('-').next().unwrap_or("");
            let Some(lang) = Lang::parse(primary) else {
                continue;
            };
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::En, |(_, l)| l)
    }

    /// The label for `key` (the key itself when missing: a test checks none is).
    pub fn t(self, key: &'static str) -> &'static str {
        match LABELS.get(key) {
            Some(label) => match self {
                Lang::En => &label.en,
                Lang::Ja => &label.ja,
            },
            None => key,
        }
    }
}
/// A label in both languages.
#[derive(Debug, serde::Deserialize)]
struct Label {
    en: String,
    ja: String,
}

/// `labels.toml`, read once. It is part of the binary, and a test reads it whole; were it ever
/// unreadable, every label would show its key.
static LABELS: LazyLock<HashMap<String, Label>> =
    LazyLock::new(|| toml::from_str(include_str!("labels.toml")).unwrap_or_default());

/// The label of a grid cell (`segment` column value, or None).
pub fn segment(lang: Lang, code: Option<&str>) -> &'static str {
    match code.unwrap_or("none") {
        "loyal" => lang.t("seg.loyal"),
        "angel" => lang.t("seg.angel"),
        "hostage" => lang.t("seg.hostage"),
        "rebel" => lang.t("seg.rebel"),
        "high_value_not_loyal" => lang.t("seg.high_value_not_loyal"),
        "neutral" => lang.t("seg.neutral"),
        _ => lang.t("seg.none"),
    }
}

pub fn level(lang: Lang, code: Option<&str>) -> &'static str {
    match code.unwrap_or("none") {
        "low" => lang.t("lvl.low"),
        "medium" => lang.t("lvl.medium"),
        "high" => lang.t("lvl.high"),
        _ => lang.t("lvl.none"),
    }
}

pub fn play(lang: Lang, code: Option<&str>) -> &'static str {
    match code.unwrap_or("none") {
        "service_recovery" => lang.t("play.service_recovery"),
        "win_back_offer" => lang.t("play.win_back_offer"),
        "vip_outreach" => lang.t("play.vip_outreach"),
        "playbook" => lang.t("play.playbook"),
        _ => lang.t("play.none"),
    }
}

pub fn motive(lang: Lang, m: Option<Motive>) -> &'static str {
    match m.unwrap_or(Motive::Unknown) {
        Motive::TrulyLoyal => lang.t("mot.truly_loyal"),
        Motive::PriceDriven => lang.t("mot.price_driven"),
        Motive::ProgrammeDriven => lang.t("mot.programme_driven"),
        Motive::Satisfied => lang.t("mot.satisfied"),
        Motive::Convenience => lang.t("mot.convenience"),
        Motive::Unknown => lang.t("mot.unknown"),
    }
}

/// Digits grouped by thousands.
fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A count, grouped by thousands.
pub fn number(n: i64) -> String {
    grouped(n)
}

/// An amount in minor units of `currency`: JPY without decimals (¥12,000 / 12,000円), other
/// currencies with two.
pub fn money(lang: Lang, minor: f64, currency: &str) -> String {
    if currency == "JPY" {
        let n = grouped(minor.round() as i64);
        match lang {
            Lang::En => format!("¥{n}"),
            Lang::Ja => format!("{n}円"),
        }
    } else {
        let major = minor / 100.0;
        let whole = grouped(major.trunc() as i64);
        let cents = ((major.abs().fract()) * 100.0).round() as i64;
        format!("{whole}.{cents:02} {currency}")
    }
}

/// A date: 15 Jan 2027 / 2027年1月15日 (UTC).
pub fn date(lang: Lang, at: DateTime<Utc>) -> String {
    match lang {
        Lang::En => at.format("%-d %b %Y").to_string(),
        Lang::Ja => at.format("%Y年%-m月%-d日").to_string(),
    }
}

/// A date and time (UTC).
pub fn datetime(lang: Lang, at: DateTime<Utc>) -> String {
    match lang {
        Lang::En => at.format("%-d %b %Y %H:%M UTC").to_string(),
        Lang::Ja => at.format("%Y年%-m月%-d日 %H:%M UTC").to_string(),
    }
}

/// A duration in days or hours.
pub fn age(lang: Lang, d: chrono::Duration) -> String {
    let hours = d.num_hours();
    match (lang, hours >= 48) {
        (Lang::En, true) => format!("{} days", hours / 24),
        (Lang::En, false) => format!("{hours} h"),
        (Lang::Ja, true) => format!("{}日", hours / 24),
        (Lang::Ja, false) => format!("{hours}時間"),
    }
}

/// A dead-letter reason code in words (the code itself is shown beside it).
pub fn dead_letter(lang: Lang, code: &str) -> String {
    let words = match (lang, code) {
        (Lang::En, "oversized") => "message too large",
        (Lang::Ja, "oversized") => "メッセージが大きすぎる",
        (Lang::En, "invalid_json" | "undecodable") => "could not be decoded",
        (Lang::Ja, "invalid_json" | "undecodable") => "デコードできない",
        (Lang::En, "processing_failed") => "failed every time it was applied",
        (Lang::Ja, "processing_failed") => "適用のたびに失敗",
        (Lang::En, "currency_mismatch") => "another currency",
        (Lang::Ja, "currency_mismatch") => "通貨が異なる",
        (Lang::En, "too_old") => "older than the ledger keeps",
        (Lang::Ja, "too_old") => "保持期間より古い",
        (Lang::En, "future_timestamp") => "time in the future",
        (Lang::Ja, "future_timestamp") => "未来の日時",
        (Lang::En, _) => "refused input",
        (Lang::Ja, _) => "受け付けられない入力",
    };
    format!("{words} ({code})")
}
