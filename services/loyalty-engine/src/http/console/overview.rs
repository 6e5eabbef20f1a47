//! `/console/`: customers by tier, the customer grid with its moves, churn levels and alerts,
//! the churn model and the dead letters, all from the background snapshot.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};

use super::i18n::{self, Lang};
use super::page::{ConsoleState, Ctx, page, require};
use super::snapshot::Snapshot;
use super::svg::{self, Bar, Cell};

pub async fn overview(State(state): State<ConsoleState>, headers: HeaderMap) -> Response {
    let ctx = match require(&state, &headers, "/console/".to_owned()) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let title = ctx.t("ov.title");
    let Some(snap) = state.snapshot.get() else {
        return page(
            &ctx,
            title,
            "overview",
            html! { p role="status" { (ctx.t("counting")) } },
        );
    };
    let tiers: Vec<String> = state
        .core
        .programme
        .tiers
        .iter()
        .map(|t| t.name.clone())
        .collect();
    page(&ctx, title, "overview", body(&ctx, &snap, &tiers))
}

fn figures_table(
    caption: &str,
    head: [&str; 2],
    rows: &[(String, String, i64)],
    id: &str,
) -> Markup {
    html! {
        table class="figures" id=(id) {
            caption { (caption) }
            thead { tr { th scope="col" { (head[0]) } th scope="col" class="num" { (head[1]) } } }
            tbody {
                @for (code, label, n) in rows {
                    tr data-key=(code) {
                        th scope="row" { (label) }
                        td class="num" data-value=(n) { (i18n::number(*n)) }
                    }
                }
            }
        }
    }
}

fn chart(title: &str, rows: &[(String, String, i64)], class: &str) -> Markup {
    let bars: Vec<Bar> = rows
        .iter()
        .map(|(_, label, n)| Bar {
            label: label.clone(),
            value: *n as f64,
            text: i18n::number(*n),
        })
        .collect();
    svg::bars(title, &bars, class)
}

fn body(ctx: &Ctx, snap: &Snapshot, tier_order: &[String]) -> Markup {
    let lang = ctx.lang;
    let tiers: Vec<(String, String, i64)> = tier_order
        .iter()
        .map(|t| (t.clone(), t.clone(), Snapshot::count(&snap.tiers, t)))
        .collect();
    let levels: Vec<(String, String, i64)> = ["high", "medium", "low", "none"]
        .iter()
        .map(|l| {
            (
                (*l).to_owned(),
                i18n::level(lang, Some(l)).to_owned(),
                Snapshot::count(&snap.churn_levels, l),
            )
        })
        .collect();
    let alerts: Vec<(String, String, i64)> = snap
        .alerts
        .iter()
        .map(|(p, n)| (p.clone(), i18n::play(lang, Some(p)).to_owned(), *n))
        .collect();
    let cell = |code: &'static str, class: &'static str| Cell {
        label: i18n::segment(lang, Some(code)).to_owned(),
        count: i18n::number(Snapshot::count(&snap.segments, code)),
        class,
    };
    let cells = [
        cell("angel", "angel"),
        cell("loyal", "loyal"),
        cell("rebel", "rebel"),
        cell("hostage", "hostage"),
    ];
    let segments: Vec<(String, String, i64)> = [
        "loyal",
        "angel",
        "hostage",
        "rebel",
        "high_value_not_loyal",
        "neutral",
        "none",
    ]
    .iter()
    .map(|s| {
        (
            (*s).to_owned(),
            i18n::segment(lang, Some(s)).to_owned(),
            Snapshot::count(&snap.segments, s),
        )
    })
    .collect();
    let axis = match lang {
        Lang::En => ["promoter", "detractor", "low profit", "high profit"],
        Lang::Ja => ["推奨者", "批判者", "低収益", "高収益"],
    };
    let mut moves = snap.moves.clone();
    moves.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    html! {
        p class="asof" { (ctx.t("figures_at")) ": " (i18n::datetime(lang, snap.as_of)) " · " (ctx.t("customers")) ": "
            span id="total-customers" data-value=(snap.total()) { (i18n::number(snap.total())) } }
        div class="cards" {
            section aria-labelledby="h-tiers" {
                h2 id="h-tiers" { (ctx.t("ov.tiers")) }
                (chart(ctx.t("ov.tiers"), &tiers, "tiers"))
                (figures_table(ctx.t("ov.tiers"), [ctx.t("tier"), ctx.t("count")], &tiers, "tiers"))
            }
            section aria-labelledby="h-grid" {
                h2 id="h-grid" { (ctx.t("ov.grid")) }
                p class="hint" { (ctx.t("ov.grid.desc")) }
                (svg::grid(ctx.t("ov.grid"), axis, &cells))
                table class="figures" id="segments" {
                    caption { (ctx.t("ov.grid")) }
                    thead { tr { th scope="col" { (ctx.t("segment")) } th scope="col" class="num" { (ctx.t("count")) } } }
                    tbody {
                        @for (code, label, n) in &segments {
                            tr data-key=(code) {
                                th scope="row" {
                                    @if code == "none" { (label) } @else {
                                        a href={"/console/churn?segment=" (code)} { (label) }
                                    }
                                }
                                td class="num" data-value=(n) { (i18n::number(*n)) }
                            }
                        }
                    }
                }
                h3 { (ctx.t("ov.moves")) }
                @if moves.is_empty() {
                    p { (ctx.t("ov.moves.none")) }
                } @else {
                    table class="figures" id="moves" {
                        caption { (ctx.t("ov.moves")) }
                        thead { tr { th scope="col" { (ctx.t("from")) } th scope="col" { (ctx.t("to")) } th scope="col" class="num" { (ctx.t("count")) } } }
                        tbody {
                            @for (from, to, n) in &moves {
                                tr data-from=(from) data-to=(to) {
                                    td { (i18n::segment(lang, Some(from))) }
                                    td { (i18n::segment(lang, Some(to))) }
                                    td class="num" data-value=(n) { (i18n::number(*n)) }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="h-churn" {
                h2 id="h-churn" { (ctx.t("ov.churn")) }
                (chart(ctx.t("ov.churn"), &levels, "levels"))
                (figures_table(ctx.t("ov.churn"), [ctx.t("level"), ctx.t("count")], &levels, "levels"))
                h3 { (ctx.t("ov.alerts")) }
                @if alerts.is_empty() {
                    p { (ctx.t("ov.alerts.none")) }
                } @else {
                    (chart(ctx.t("ov.alerts"), &alerts, "alerts"))
                    (figures_table(ctx.t("ov.alerts"), [ctx.t("play"), ctx.t("count")], &alerts, "alerts"))
                }
            }
            section aria-labelledby="h-model" {
                h2 id="h-model" { (ctx.t("ov.model")) }
                @match &snap.model {
                    None => p id="model" { (ctx.t("ov.model.none")) },
                    Some(m) => dl id="model" {
                        dt { (ctx.t("ov.model.version")) } dd data-value=(m.version) { (m.version) }
                        dt { (ctx.t("ov.model.fitted")) } dd { (i18n::datetime(lang, m.fitted_at)) }
                        dt { (ctx.t("ov.model.age")) } dd { (i18n::age(lang, chrono::Utc::now() - m.fitted_at)) }
                        dt { (ctx.t("ov.model.converged")) } dd { (if m.converged { ctx.t("yes") } else { ctx.t("no") }) }
                        dt { (ctx.t("ov.model.customers")) } dd { (i18n::number(m.customers as i64)) }
                    },
                }
                h2 { (ctx.t("ov.dead")) }
                @if snap.dead_letters.is_empty() {
                    p id="dead-letters" { (ctx.t("ov.dead.none")) }
                } @else {
                    @let rows: Vec<(String, String, i64)> = snap.dead_letters.iter().map(|(r, n)| (r.clone(), i18n::dead_letter(lang, r), *n)).collect();
                    (figures_table(ctx.t("ov.dead"), [ctx.t("reason"), ctx.t("count")], &rows, "dead-letters"))
                }
            }
        }
    }
}
