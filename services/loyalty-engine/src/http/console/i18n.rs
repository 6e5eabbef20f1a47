//! Every word the console shows, in English and Japanese, in this one file: labels, the names
//! of grid cells, levels, plays and motives, churn drivers, grid reasons, motive signals, tier
//! progress, money and dates. Templates only ask for keys and pass figures.
//!
//! The rules are the domain's (`domain::churn`, `domain::segment`, `domain::motive`,
//! `domain::tier`); this file only puts what they decided into words.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};

use crate::domain::churn::{Assessment, Driver};
use crate::domain::metrics::{BadExperience, Metrics, NpsCategory};
use crate::domain::motive::Motive;
use crate::domain::programme::{Programme, WindowKind};
use crate::domain::segment::{Attitude, attitude};

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
            Some((en, ja)) => match self {
                Lang::En => en,
                Lang::Ja => ja,
            },
            None => key,
        }
    }
}

/// (key, English, Japanese).
const TABLE: &[(&str, &str, &str)] = &[
    ("app", "Kizuna console", "絆 コンソール"),
    ("skip", "Skip to the content", "本文へ移動"),
    ("nav", "Main", "メイン"),
    ("nav.overview", "Overview", "概要"),
    ("nav.churn", "Churn queue", "離反キュー"),
    ("nav.programme", "Programme", "プログラム"),
    ("search", "Customer id", "顧客ID"),
    ("search.go", "Find", "検索"),
    ("search.title", "Search", "検索"),
    (
        "search.none",
        "No customer with this id.",
        "このIDの顧客はいません。",
    ),
    ("search.near", "Ids nearby", "近いID"),
    ("logout", "Log out", "ログアウト"),
    ("role.viewer", "viewer", "閲覧者"),
    ("role.admin", "admin", "管理者"),
    ("login.title", "Log in", "ログイン"),
    ("login.token", "Access token", "アクセストークン"),
    ("login.submit", "Log in", "ログイン"),
    (
        "login.bad",
        "That token is not valid.",
        "トークンが正しくありません。",
    ),
    (
        "login.closed",
        "The console is closed: no token is configured (console.viewer_token, console.admin_token).",
        "コンソールは無効です：トークンが設定されていません（console.viewer_token、console.admin_token）。",
    ),
    ("lang.switch", "日本語", "English"),
    ("lang.switch.label", "Language", "言語"),
    ("as_of", "As of", "時点"),
    ("figures_at", "Figures counted at", "集計時刻"),
    (
        "counting",
        "The figures are being counted; reload in a moment.",
        "集計中です。しばらくしてから再読み込みしてください。",
    ),
    ("customers", "Customers", "顧客数"),
    ("count", "Count", "人数"),
    ("total", "Total", "合計"),
    ("none", "none", "なし"),
    ("yes", "yes", "はい"),
    ("no", "no", "いいえ"),
    ("ov.title", "Overview", "概要"),
    ("ov.tiers", "Customers by tier", "ティア別の顧客数"),
    ("ov.grid", "The customer grid", "顧客グリッド"),
    (
        "ov.grid.desc",
        "Attitude (up: promoter, down: detractor) × profitability (left: low, right: high)",
        "態度（上：推奨者、下：批判者）× 収益性（左：低、右：高）",
    ),
    ("ov.grid.others", "Outside the grid", "グリッド外"),
    (
        "ov.moves",
        "Moves between cells, last 30 days",
        "直近30日のセル間の移動",
    ),
    (
        "ov.moves.none",
        "No moves in the last 30 days.",
        "直近30日の移動はありません。",
    ),
    ("ov.churn", "Churn risk levels", "離反リスクのレベル"),
    (
        "ov.alerts",
        "Churn alerts of the last 7 days, by play",
        "直近7日の離反アラート（施策別）",
    ),
    (
        "ov.alerts.none",
        "No alerts in the last 7 days.",
        "直近7日のアラートはありません。",
    ),
    ("ov.model", "Churn model", "離反モデル"),
    (
        "ov.model.none",
        "No model fitted yet: churn risk comes from each customer's own rhythm (kizuna fit-model fits one).",
        "モデル未適合：離反リスクは各顧客の購買リズムから算出しています（kizuna fit-model で適合）。",
    ),
    ("ov.model.version", "Version", "バージョン"),
    ("ov.model.fitted", "Fitted", "適合日時"),
    ("ov.model.age", "Age", "経過"),
    ("ov.model.converged", "Converged", "収束"),
    (
        "ov.model.customers",
        "Customers in the fit",
        "適合に使った顧客数",
    ),
    (
        "ov.dead",
        "Dead letters, last 24 hours",
        "直近24時間のデッドレター",
    ),
    (
        "ov.dead.none",
        "No dead letters in the last 24 hours.",
        "直近24時間のデッドレターはありません。",
    ),
    ("reason", "Reason", "理由"),
    ("from", "From", "移動元"),
    ("to", "To", "移動先"),
    ("play", "Play", "施策"),
    ("level", "Level", "レベル"),
    ("tier", "Tier", "ティア"),
    ("segment", "Grid cell", "グリッド"),
    ("any", "any", "すべて"),
    ("filter", "Filter", "絞り込み"),
    ("churn.title", "Churn queue", "離反キュー"),
    (
        "churn.desc",
        "Customers at medium or high churn risk, by value at risk (CLV × risk; lifetime spend × risk where no CLV is known).",
        "離反リスクが中・高の顧客を、リスク金額（CLV × リスク。CLVがない場合は累計購入額 × リスク）の大きい順に表示します。",
    ),
    ("churn.customer", "Customer", "顧客"),
    ("churn.risk", "Risk", "リスク"),
    ("churn.value", "Value at risk", "リスク金額"),
    ("churn.drivers", "Top drivers", "主な要因"),
    ("churn.next", "Next page", "次のページ"),
    ("churn.first", "First page", "最初のページ"),
    (
        "churn.csv",
        "Download these rows (CSV)",
        "この行をダウンロード（CSV）",
    ),
    (
        "churn.empty",
        "No customer matches.",
        "該当する顧客はいません。",
    ),
    ("churn.rows", "Rows", "行"),
    ("cust.title", "Customer", "顧客"),
    ("cust.tier", "Tier", "ティア"),
    ("cust.since", "since", "以降"),
    ("cust.progress", "Progress", "進捗"),
    ("cust.pending", "Pending downgrade", "降格予定"),
    ("cust.override", "Manual override", "手動設定"),
    ("cust.grid", "Place on the grid", "グリッド上の位置"),
    ("cust.why", "Why", "理由"),
    ("cust.motive", "Loyalty motive", "ロイヤルティの動機"),
    ("cust.signals", "Signals", "シグナル"),
    ("cust.churn", "Churn risk", "離反リスク"),
    ("cust.score", "Score", "スコア"),
    (
        "cust.contrib",
        "Contribution of each driver",
        "要因ごとの寄与",
    ),
    ("cust.model", "Purchase model", "購買モデル"),
    ("cust.p_alive", "P(alive)", "生存確率 P(alive)"),
    (
        "cust.expected",
        "Expected purchases (horizon)",
        "期待購入回数（期間内）",
    ),
    ("cust.clv", "CLV (horizon)", "CLV（期間内）"),
    ("cust.horizon", "Horizon", "期間"),
    (
        "cust.nomodel",
        "No model fitted (or no repeat purchase yet): P(alive) and CLV are not available.",
        "モデル未適合（またはリピート購入なし）：P(alive)とCLVはありません。",
    ),
    ("cust.figures", "Figures", "指標"),
    ("cust.spend", "Lifetime spend", "累計購入額"),
    ("cust.orders", "Orders", "注文数"),
    ("cust.qspend", "Qualifying spend", "対象期間の購入額"),
    ("cust.qorders", "Qualifying orders", "対象期間の注文数"),
    ("cust.last", "Last purchase", "最終購入"),
    ("cust.nps", "Latest NPS", "最新NPS"),
    ("cust.timeline", "Timeline", "タイムライン"),
    ("cust.older", "Older events", "さらに古いイベント"),
    ("cust.newest", "Newest events", "最新のイベント"),
    ("cust.caused", "caused", "発生した出力"),
    ("cust.when", "When", "日時"),
    ("cust.what", "What", "内容"),
    ("cust.audit", "Override audit trail", "手動設定の監査記録"),
    ("cust.form", "Set a tier override", "ティアを手動で設定"),
    ("cust.form.tier", "Tier", "ティア"),
    ("cust.form.reason", "Reason", "理由"),
    ("cust.form.expires", "Expires on", "有効期限"),
    ("cust.form.submit", "Set the override", "設定する"),
    (
        "cust.form.done",
        "The override is set and recorded in the audit trail.",
        "手動設定を保存し、監査記録に残しました。",
    ),
    ("cust.by", "set by", "設定者"),
    ("cust.until", "until", "期限"),
    (
        "cust.nothing",
        "No events recorded.",
        "イベントはありません。",
    ),
    ("prog.title", "Programme", "プログラム"),
    ("prog.window", "Qualification window", "判定期間"),
    ("prog.grace", "Grace before a downgrade", "降格までの猶予"),
    (
        "prog.soft",
        "Soft landing (one tier at a time)",
        "ソフトランディング（1段階ずつ降格）",
    ),
    ("prog.min_spend", "Minimum spend", "最低購入額"),
    ("prog.min_orders", "Minimum orders", "最低注文数"),
    ("prog.min_tenure", "Minimum tenure (days)", "最低継続日数"),
    ("prog.not_detractor", "Not a detractor", "批判者でないこと"),
    ("prog.min_referrals", "Minimum referrals", "最低紹介数"),
    ("prog.whatif", "What if", "シミュレーション"),
    (
        "prog.whatif.desc",
        "Change thresholds or the window and see who would move, computed with the rules of kizuna recompute. Nothing is written.",
        "条件や判定期間を変えた場合に誰が移動するかを、kizuna recompute と同じルールで計算します。何も書き込みません。",
    ),
    (
        "prog.whatif.months",
        "Rolling window (months)",
        "ローリング期間（月）",
    ),
    ("prog.whatif.run", "Compute", "計算する"),
    ("prog.whatif.running", "Computing", "計算中"),
    ("prog.whatif.result", "Result", "結果"),
    ("prog.whatif.up", "Would move up", "昇格"),
    ("prog.whatif.down", "Would move down", "降格"),
    ("prog.whatif.moves", "Moves", "移動"),
    (
        "prog.whatif.first",
        "First 100 customers who would move",
        "移動する顧客（最初の100人）",
    ),
    (
        "prog.whatif.none",
        "Nobody would move.",
        "移動する顧客はいません。",
    ),
    (
        "prog.whatif.failed",
        "The what-if failed",
        "シミュレーションに失敗しました",
    ),
    (
        "prog.whatif.admin",
        "Only an admin can run the what-if.",
        "シミュレーションは管理者のみ実行できます。",
    ),
    (
        "prog.whatif.invalid",
        "That programme is not valid",
        "プログラムが正しくありません",
    ),
    ("prog.whatif.checked", "Customers evaluated", "評価した顧客"),
    (
        "win.rolling",
        "rolling (the last N months)",
        "ローリング（直近Nか月）",
    ),
    ("win.calendar_year", "calendar year", "暦年"),
    ("win.calendar_quarter", "calendar quarter", "四半期"),
    ("days", "days", "日"),
    ("months", "months", "か月"),
    ("seg.loyal", "loyal", "ロイヤル"),
    ("seg.angel", "angel", "エンジェル"),
    ("seg.hostage", "hostage", "抑留者"),
    ("seg.rebel", "rebel", "反逆者"),
    (
        "seg.high_value_not_loyal",
        "high-value, not loyal",
        "高収益・非ロイヤル",
    ),
    ("seg.neutral", "neutral", "中立"),
    ("seg.none", "not placed yet", "未判定"),
    ("lvl.low", "low", "低"),
    ("lvl.medium", "medium", "中"),
    ("lvl.high", "high", "高"),
    ("lvl.none", "not assessed", "未評価"),
    (
        "play.service_recovery",
        "service recovery",
        "サービスリカバリー",
    ),
    ("play.win_back_offer", "win-back offer", "呼び戻しオファー"),
    ("play.vip_outreach", "VIP outreach", "VIP個別対応"),
    ("play.playbook", "playbook", "定型プレイブック"),
    ("play.none", "none", "なし"),
    ("mot.truly_loyal", "truly loyal", "真のロイヤル"),
    ("mot.price_driven", "price-driven", "価格重視"),
    ("mot.programme_driven", "programme-driven", "特典目的"),
    ("mot.satisfied", "satisfied", "満足"),
    ("mot.convenience", "convenience", "利便性"),
    ("mot.unknown", "not known yet", "不明"),
    ("kind.purchase", "Purchase", "購入"),
    ("kind.refund", "Refund", "返金"),
    ("kind.ticket", "Support ticket", "サポートチケット"),
    ("kind.survey", "Survey answer", "アンケート回答"),
    ("kind.output", "Output", "出力"),
    ("out.kizuna.v1.TierChanged", "Tier changed", "ティア変更"),
    (
        "out.kizuna.v1.TierWillDowngrade",
        "Downgrade announced",
        "降格予告",
    ),
    (
        "out.kizuna.v1.ChurnRiskChanged",
        "Churn risk changed",
        "離反リスク変更",
    ),
    (
        "out.kizuna.v1.SegmentChanged",
        "Grid cell changed",
        "グリッド変更",
    ),
    (
        "forbidden",
        "Your role cannot do this.",
        "この操作の権限がありません。",
    ),
    (
        "csrf",
        "The form has expired or was not sent by this console. Reload the page and try again.",
        "フォームの有効期限切れ、またはこのコンソール以外から送信されました。再読み込みしてやり直してください。",
    ),
    ("notfound", "Unknown customer", "顧客が見つかりません"),
    (
        "error.db",
        "The database is unavailable.",
        "データベースに接続できません。",
    ),
    ("back", "Back", "戻る"),
];

static LABELS: LazyLock<HashMap<&'static str, (&'static str, &'static str)>> =
    LazyLock::new(|| TABLE.iter().map(|(k, en, ja)| (*k, (*en, *ja))).collect());

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yen_has_no_decimals_in_either_language() {
        assert_eq!(money(Lang::En, 1_234_567.4, "JPY"), "¥1,234,567");
        assert_eq!(money(Lang::Ja, 12_000.0, "JPY"), "12,000円");
        assert_eq!(money(Lang::En, 999.0, "JPY"), "¥999");
    }

    #[test]
    fn dates_follow_the_locale() {
        let at = DateTime::parse_from_rfc3339("2027-01-15T10:00:00Z")
            .expect("valid")
            .with_timezone(&Utc);
        assert_eq!(date(Lang::En, at), "15 Jan 2027");
        assert_eq!(date(Lang::Ja, at), "2027年1月15日");
    }

    #[test]
    fn accept_language_picks_the_best_supported() {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::ACCEPT_LANGUAGE,
            "fr-FR,ja;q=0.9,en;q=0.8".parse().expect("header"),
        );
        assert_eq!(Lang::from_headers(&h), Lang::Ja);
        h.insert(
            axum::http::header::ACCEPT_LANGUAGE,
            "en-GB,ja;q=0.5".parse().expect("header"),
        );
        assert_eq!(Lang::from_headers(&h), Lang::En);
        h.insert(
            axum::http::header::COOKIE,
            "kizuna_lang=ja".parse().expect("header"),
        );
        assert_eq!(Lang::from_headers(&h), Lang::Ja);
    }

    #[test]
    fn every_key_has_both_languages_and_no_key_repeats() {
        let mut seen = std::collections::HashSet::new();
        for (k, en, ja) in TABLE {
            assert!(seen.insert(k), "{k} twice");
            assert!(!en.is_empty() && !ja.is_empty(), "{k}");
        }
    }
}
