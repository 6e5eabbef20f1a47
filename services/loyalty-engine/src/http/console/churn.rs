//! `/console/churn`: customers at medium or high risk by value at risk, with their top drivers
//! in words and the play; filters, paging, and `/console/churn.csv` with exactly the rows of
//! the same page.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::html;

use super::i18n::{self, Lang};
use super::page::{ConsoleState, Ctx, page, require, secure, unavailable, url_encode};
use crate::domain::churn;
use crate::domain::metrics::Metrics;
use crate::domain::programme::Programme;
use crate::store::customers::{self, QueueCursor, QueueFilter, QueueRow};

/// Rows per page.
pub const PAGE: i64 = 50;

#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct Params {
    #[serde(default)]
    pub play: String,
    #[serde(default)]
    pub tier: String,
    #[serde(default)]
    pub segment: String,
    #[serde(default)]
    pub level: String,
    /// `value_at_risk:customer_id` of the last row of the previous page.
    #[serde(default)]
    pub after: String,
}

const PLAYS: [&str; 4] = [
    "vip_outreach",
    "service_recovery",
    "win_back_offer",
    "playbook",
];
const SEGMENTS: [&str; 6] = [
    "hostage",
    "loyal",
    "high_value_not_loyal",
    "rebel",
    "angel",
    "neutral",
];
const LEVELS: [&str; 2] = ["high", "medium"];

fn pick(value: &str, allowed: &[&str]) -> Option<String> {
    allowed.contains(&value).then(|| value.to_owned())
}

impl Params {
    fn filter(&self, programme: &Programme) -> QueueFilter {
        let tiers: Vec<&str> = programme.tiers.iter().map(|t| t.name.as_str()).collect();
        QueueFilter {
            play: pick(&self.play, &PLAYS),
            tier: pick(&self.tier, &tiers),
            segment: pick(&self.segment, &SEGMENTS),
            level: pick(&self.level, &LEVELS),
        }
    }

    fn cursor(&self) -> Option<QueueCursor> {
        let (v, id) = self.after.split_once(':')?;
        Some(QueueCursor {
            value_at_risk: v.parse().ok().filter(|v: &f64| v.is_finite())?,
            customer_id: id.to_owned(),
        })
    }

    fn query(&self, after: Option<&str>) -> String {
        let mut q = format!(
            "play={}&tier={}&segment={}&level={}",
            url_encode(&self.play),
            url_encode(&self.tier),
            url_encode(&self.segment),
            url_encode(&self.level)
        );
        if let Some(a) = after {
            q.push_str("&after=");
            q.push_str(&url_encode(a));
        }
        q
    }
}

/// A row as shown: what the page and the CSV both print.
#[derive(Debug)]
struct Shown {
    customer_id: String,
    tier: String,
    segment: Option<String>,
    level: Option<String>,
    score: f64,
    value_at_risk: Option<f64>,
    play: Option<String>,
    drivers: Vec<String>,
}

fn shown(
    row: &QueueRow,
    programme: &Programme,
    model: Option<&churn::Model>,
    now: DateTime<Utc>,
    lang: Lang,
) -> Shown {
    let s = &row.state;
    // The same assessment as the API's `churn_assessment`.
    let m = Metrics::derive(&s.facts, programme, now);
    let a = churn::assess(&m, &programme.churn, model);
    let status = s.status.churn.as_ref();
    Shown {
        customer_id: s.customer_id.as_str().to_owned(),
        tier: s.tier().to_owned(),
        segment: s.status.segment.map(|g| g.as_str().to_owned()),
        level: status.map(|c| c.level.as_str().to_owned()),
        score: status.map_or(0.0, |c| c.score),
        value_at_risk: row.value_at_risk,
        play: status.map(|c| c.play.as_str().to_owned()),
        drivers: a
            .drivers
            .iter()
            .take(3)
            .map(|d| i18n::driver(lang, d, &a, &m))
            .collect(),
    }
}

async fn load(
    state: &ConsoleState,
    params: &Params,
    lang: Lang,
) -> anyhow::Result<(Vec<Shown>, Option<String>)> {
    let programme = &state.core.programme;
    let filter = params.filter(programme);
    let cursor = params.cursor();
    let now = state.now().await?;
    let rows = customers::churn_queue(&state.core.pool, &filter, cursor.as_ref(), PAGE).await?;
    let next = if rows.len() as i64 == PAGE {
        rows.last().and_then(|r| {
            r.value_at_risk
                .map(|v| format!("{v}:{}", r.state.customer_id.as_str()))
        })
    } else {
        None
    };
    let model = state.core.model.get();
    let shown = rows
        .iter()
        .map(|r| shown(r, programme, model.as_deref(), now, lang))
        .collect();
    Ok((shown, next))
}

fn options(
    ctx: &Ctx,
    name: &str,
    id: &str,
    values: &[(String, String)],
    current: &str,
) -> maud::Markup {
    html! {
        label for=(id) { (name) }
        select id=(id) name=(id) {
            option value="" selected[current.is_empty()] { (ctx.t("any")) }
            @for (code, label) in values {
                option value=(code) selected[current == code] { (label) }
            }
        }
    }
}

pub async fn queue(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    let here = format!(
        "/console/churn?{}",
        params.query((!params.after.is_empty()).then_some(params.after.as_str()))
    );
    let ctx = match require(&state, &headers, here) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let lang = ctx.lang;
    let (rows, next) = match load(&state, &params, lang).await {
        Ok(r) => r,
        Err(e) => return unavailable(&ctx, &e),
    };
    let currency = state.core.programme.currency.to_string();
    let tiers: Vec<(String, String)> = state
        .core
        .programme
        .tiers
        .iter()
        .map(|t| (t.name.clone(), t.name.clone()))
        .collect();
    let plays: Vec<(String, String)> = PLAYS
        .iter()
        .map(|p| ((*p).to_owned(), i18n::play(lang, Some(p)).to_owned()))
        .collect();
    let segments: Vec<(String, String)> = SEGMENTS
        .iter()
        .map(|s| ((*s).to_owned(), i18n::segment(lang, Some(s)).to_owned()))
        .collect();
    let levels: Vec<(String, String)> = LEVELS
        .iter()
        .map(|l| ((*l).to_owned(), i18n::level(lang, Some(l)).to_owned()))
        .collect();
    let this_page = (!params.after.is_empty()).then_some(params.after.as_str());
    let main = html! {
        p class="hint" { (ctx.t("churn.desc")) }
        form class="filters" method="get" action="/console/churn" {
            fieldset {
                legend { (ctx.t("filter")) }
                (options(&ctx, ctx.t("play"), "play", &plays, &params.play))
                (options(&ctx, ctx.t("tier"), "tier", &tiers, &params.tier))
                (options(&ctx, ctx.t("segment"), "segment", &segments, &params.segment))
                (options(&ctx, ctx.t("level"), "level", &levels, &params.level))
                button type="submit" { (ctx.t("filter")) }
            }
        }
        p {
            a id="csv" href={"/console/churn.csv?" (params.query(this_page))} download="churn-queue.csv" { (ctx.t("churn.csv")) }
        }
        @if rows.is_empty() {
            p id="empty" { (ctx.t("churn.empty")) }
        } @else {
            table class="queue" id="queue" {
                caption { (ctx.t("churn.title")) " · " (ctx.t("churn.rows")) ": " (rows.len()) }
                thead {
                    tr {
                        th scope="col" { (ctx.t("churn.customer")) }
                        th scope="col" { (ctx.t("tier")) }
                        th scope="col" { (ctx.t("segment")) }
                        th scope="col" { (ctx.t("level")) }
                        th scope="col" class="num" { (ctx.t("churn.risk")) }
                        th scope="col" class="num" { (ctx.t("churn.value")) }
                        th scope="col" { (ctx.t("churn.drivers")) }
                        th scope="col" { (ctx.t("play")) }
                    }
                }
                tbody {
                    @for r in &rows {
                        tr data-customer=(r.customer_id) data-value-at-risk=(r.value_at_risk.map(|v| format!("{v}")).unwrap_or_default()) {
                            th scope="row" { a href={"/console/customers/" (url_encode(&r.customer_id))} { (r.customer_id) } }
                            td { (r.tier) }
                            td data-segment=(r.segment.as_deref().unwrap_or("none")) { (i18n::segment(lang, r.segment.as_deref())) }
                            td data-level=(r.level.as_deref().unwrap_or("none")) { (i18n::level(lang, r.level.as_deref())) }
                            td class="num" { (format!("{:.2}", r.score)) }
                            td class="num" { (r.value_at_risk.map(|v| i18n::money(lang, v, &currency)).unwrap_or_default()) }
                            td { ul class="drivers" { @for d in &r.drivers { li { (d) } } } }
                            td data-play=(r.play.as_deref().unwrap_or("none")) { (i18n::play(lang, r.play.as_deref())) }
                        }
                    }
                }
            }
        }
        nav class="pager" aria-label=(ctx.t("churn.title")) {
            @if this_page.is_some() {
                a href={"/console/churn?" (params.query(None))} { (ctx.t("churn.first")) }
            }
            @if let Some(next) = &next {
                a id="next" rel="next" href={"/console/churn?" (params.query(Some(next)))} { (ctx.t("churn.next")) }
            }
        }
    };
    page(&ctx, ctx.t("churn.title"), "churn", main)
}

/// The CSV of exactly the rows the page with the same query shows.
pub async fn csv(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    let ctx = match require(&state, &headers, "/console/churn".to_owned()) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let (rows, _) = match load(&state, &params, ctx.lang).await {
        Ok(r) => r,
        Err(e) => return unavailable(&ctx, &e),
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    let header_row = [
        "customer_id",
        "tier",
        "segment",
        "churn_level",
        "score",
        "value_at_risk_minor",
        "play",
        "drivers",
    ];
    let mut ok = w.write_record(header_row).is_ok();
    for r in &rows {
        ok &= w
            .write_record([
                r.customer_id.as_str(),
                r.tier.as_str(),
                r.segment.as_deref().unwrap_or(""),
                r.level.as_deref().unwrap_or(""),
                &format!("{:.4}", r.score),
                &r.value_at_risk
                    .map(|v| format!("{v:.0}"))
                    .unwrap_or_default(),
                r.play.as_deref().unwrap_or(""),
                &r.drivers.join(" | "),
            ])
            .is_ok();
    }
    let body = match (ok, w.into_inner()) {
        (true, Ok(b)) => b,
        _ => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    secure(
        (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"churn-queue.csv\"",
                ),
            ],
            body,
        )
            .into_response(),
    )
}
