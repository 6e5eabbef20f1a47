//! `/console/programme`: the tier programme as a table, the points rules, and for an admin the what-if: change
//! thresholds or the window, and see who would move, computed by `engine::recompute::what_if`
//! (the rules of `kizuna recompute`) without writing anything. One what-if runs at a time, in
//! the background; the page reloads itself until it is done.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{Markup, html};

use super::i18n;
use super::page::{ConsoleState, Ctx, page, problem, require, unavailable, url_encode};
use super::whatif::WhatIfJob;
use crate::domain::programme::{Programme, WindowKind};
use crate::engine::recompute::what_if;

/// Customers named in a what-if's result.
const SAMPLE: usize = 100;

fn window_code(w: WindowKind) -> &'static str {
    match w {
        WindowKind::Rolling => "rolling",
        WindowKind::CalendarYear => "calendar_year",
        WindowKind::CalendarQuarter => "calendar_quarter",
    }
}

/// The programme the form describes, checked like a programme file.
pub fn changed(base: &Programme, form: &BTreeMap<String, String>) -> Result<Programme, String> {
    let mut p = base.clone();
    let num = |key: String, current: i64| -> Result<i64, String> {
        match form.get(&key).map(|v| v.trim()) {
            None | Some("") => Ok(current),
            Some(v) => v
                .replace([',', '_'], "")
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or(format!("{key}: {v:?} is not a whole number ≥ 0")),
        }
    };
    for (i, t) in p.tiers.iter_mut().enumerate() {
        t.min_spend_minor = num(format!("spend_{i}"), t.min_spend_minor)?;
        t.min_orders = u32::try_from(num(format!("orders_{i}"), i64::from(t.min_orders))?)
            .map_err(|e| e.to_string())?;
        t.min_tenure_days =
            u32::try_from(num(format!("tenure_{i}"), i64::from(t.min_tenure_days))?)
                .map_err(|e| e.to_string())?;
    }
    p.qualification.months =
        u32::try_from(num("months".to_owned(), i64::from(p.qualification.months))?)
            .map_err(|e| e.to_string())?;
    p.qualification.window = match form.get("window").map(String::as_str) {
        None | Some("") => p.qualification.window,
        Some("rolling") => WindowKind::Rolling,
        Some("calendar_year") => WindowKind::CalendarYear,
        Some("calendar_quarter") => WindowKind::CalendarQuarter,
        Some(other) => return Err(format!("window: {other:?}")),
    };
    // The same checks as a programme file's.
    let text = toml::to_string(&p).map_err(|e| e.to_string())?;
    Programme::parse(&text)
}

pub async fn show(State(state): State<ConsoleState>, headers: HeaderMap) -> Response {
    let mut ctx = match require(&state, &headers, "/console/programme".to_owned()) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let job = state.whatif.lock().map(|j| j.clone()).unwrap_or_default();
    ctx.refresh = matches!(job, WhatIfJob::Running { .. });
    let main = body(&ctx, &state.core.programme, &job);
    page(&ctx, ctx.t("prog.title"), "programme", main)
}

fn tier_table(ctx: &Ctx, p: &Programme, id: &str) -> Markup {
    let lang = ctx.lang;
    let currency = p.currency.to_string();
    html! {
        table class="figures programme" id=(id) {
            thead {
                tr {
                    th scope="col" { (ctx.t("tier")) }
                    th scope="col" class="num" { (ctx.t("prog.min_spend")) }
                    th scope="col" class="num" { (ctx.t("prog.min_orders")) }
                    th scope="col" class="num" { (ctx.t("prog.min_tenure")) }
                    th scope="col" { (ctx.t("prog.not_detractor")) }
                    th scope="col" class="num" { (ctx.t("prog.min_referrals")) }
                }
            }
            tbody {
                @for t in &p.tiers {
                    tr data-tier=(t.name) {
                        th scope="row" { (t.name) }
                        td class="num" data-value=(t.min_spend_minor) { (i18n::money(lang, t.min_spend_minor as f64, &currency)) }
                        td class="num" { (t.min_orders) }
                        td class="num" { (t.min_tenure_days) }
                        td { (if t.not_detractor { ctx.t("yes") } else { ctx.t("no") }) }
                        td class="num" { (t.min_referrals) }
                    }
                }
            }
        }
    }
}

fn body(ctx: &Ctx, p: &Programme, job: &WhatIfJob) -> Markup {
    let lang = ctx.lang;
    let form = job.form().cloned().unwrap_or_default();
    let value = |key: String, current: i64| -> String {
        form.get(&key)
            .cloned()
            .unwrap_or_else(|| current.to_string())
    };
    let window = form
        .get("window")
        .cloned()
        .unwrap_or_else(|| window_code(p.qualification.window).to_owned());
    html! {
        dl {
            dt { (ctx.t("prog.window")) } dd id="window" { (i18n::window_words(lang, p)) }
            dt { (ctx.t("prog.grace")) } dd { (p.qualification.grace_days) " " (ctx.t("days")) }
            dt { (ctx.t("prog.soft")) } dd { (if p.qualification.soft_landing { ctx.t("yes") } else { ctx.t("no") }) }
        }
        (tier_table(ctx, p, "tiers"))
        (super::points::programme_section(ctx.lang, p))
        section aria-labelledby="h-whatif" {
            h2 id="h-whatif" { (ctx.t("prog.whatif")) }
            p class="hint" { (ctx.t("prog.whatif.desc")) }
            @if !ctx.session.is_admin() {
                p id="whatif-admin-only" { (ctx.t("prog.whatif.admin")) }
            } @else {
                form id="whatif-form" method="post" action="/console/programme/what-if" {
                    input type="hidden" name="csrf" value=(ctx.session.csrf());
                    table class="figures" {
                        thead { tr {
                            th scope="col" { (ctx.t("tier")) }
                            th scope="col" { (ctx.t("prog.min_spend")) }
                            th scope="col" { (ctx.t("prog.min_orders")) }
                            th scope="col" { (ctx.t("prog.min_tenure")) }
                        } }
                        tbody {
                            @for (i, t) in p.tiers.iter().enumerate() {
                                tr {
                                    th scope="row" { (t.name) }
                                    td { input type="number" min="0" step="1" name={"spend_" (i)} id={"spend_" (i)} aria-label={(t.name) " " (ctx.t("prog.min_spend"))} value=(value(format!("spend_{i}"), t.min_spend_minor)); }
                                    td { input type="number" min="0" step="1" name={"orders_" (i)} id={"orders_" (i)} aria-label={(t.name) " " (ctx.t("prog.min_orders"))} value=(value(format!("orders_{i}"), i64::from(t.min_orders))); }
                                    td { input type="number" min="0" step="1" name={"tenure_" (i)} id={"tenure_" (i)} aria-label={(t.name) " " (ctx.t("prog.min_tenure"))} value=(value(format!("tenure_{i}"), i64::from(t.min_tenure_days))); }
                                }
                            }
                        }
                    }
                    label for="window-kind" { (ctx.t("prog.window")) }
                    select id="window-kind" name="window" {
                        @for (w, key) in [("rolling", "win.rolling"), ("calendar_year", "win.calendar_year"), ("calendar_quarter", "win.calendar_quarter")] {
                            option value=(w) selected[window == w] { (ctx.t(key)) }
                        }
                    }
                    label for="months" { (ctx.t("prog.whatif.months")) }
                    input id="months" name="months" type="number" min="1" max="120" step="1" value=(value("months".to_owned(), i64::from(p.qualification.months)));
                    button type="submit" { (ctx.t("prog.whatif.run")) }
                }
                (result(ctx, p, job))
            }
        }
    }
}

fn result(ctx: &Ctx, current: &Programme, job: &WhatIfJob) -> Markup {
    let lang = ctx.lang;
    match job {
        WhatIfJob::Idle => html! {},
        WhatIfJob::Running { done, total, .. } => html! {
            p id="whatif-status" role="status" data-state="running" {
                (ctx.t("prog.whatif.running")) ": " (i18n::number(*done as i64)) " / " (i18n::number(*total as i64))
            }
        },
        WhatIfJob::Failed { message, .. } => html! {
            p id="whatif-status" role="alert" data-state="failed" { (ctx.t("prog.whatif.failed")) ": " (message) }
        },
        WhatIfJob::Done {
            report,
            programme,
            finished,
            ..
        } => {
            // Per tier: customers who would move up into it and down into it.
            let mut per: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
            for ((from, to), n) in &report.moves {
                let entry = per.entry(to.as_str()).or_default();
                if current.rank(to) > current.rank(from) {
                    entry.0 += n;
                } else {
                    entry.1 += n;
                }
            }
            html! {
                h3 { (ctx.t("prog.whatif.result")) }
                p id="whatif-status" role="status" data-state="done" data-customers=(report.customers) data-changed=(report.changed()) data-now=(report.now.to_rfc3339()) {
                    (ctx.t("prog.whatif.checked")) ": " (i18n::number(report.customers as i64)) " · " (i18n::datetime(lang, *finished))
                }
                (tier_table(ctx, programme, "whatif-tiers"))
                @if report.moves.is_empty() {
                    p id="whatif-none" { (ctx.t("prog.whatif.none")) }
                } @else {
                    table class="figures" id="whatif-per-tier" {
                        thead { tr { th scope="col" { (ctx.t("tier")) } th scope="col" class="num" { (ctx.t("prog.whatif.up")) } th scope="col" class="num" { (ctx.t("prog.whatif.down")) } } }
                        tbody {
                            @for t in &current.tiers {
                                @let (up, down) = per.get(t.name.as_str()).copied().unwrap_or_default();
                                tr data-tier=(t.name) data-up=(up) data-down=(down) {
                                    th scope="row" { (t.name) } td class="num" { (up) } td class="num" { (down) }
                                }
                            }
                        }
                    }
                    table class="figures" id="whatif-moves" {
                        caption { (ctx.t("prog.whatif.moves")) }
                        thead { tr { th scope="col" { (ctx.t("from")) } th scope="col" { (ctx.t("to")) } th scope="col" class="num" { (ctx.t("count")) } } }
                        tbody {
                            @for ((from, to), n) in &report.moves {
                                tr data-from=(from) data-to=(to) data-value=(n) { td { (from) } td { (to) } td class="num" { (n) } }
                            }
                        }
                    }
                    h3 { (ctx.t("prog.whatif.first")) }
                    ol id="whatif-sample" {
                        @for m in &report.sample {
                            li data-customer=(m.customer_id) {
                                a href={"/console/customers/" (url_encode(&m.customer_id))} { (m.customer_id) }
                                " " (m.from) " → " (m.to)
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `POST /console/programme/what-if`: admin only, CSRF-checked; starts the what-if.
pub async fn start(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let ctx = match require(&state, &headers, "/console/programme".to_owned()) {
        Ok(c) => c,
        Err(_) => return StatusCode::UNAUTHORIZED.into_response(),
    };
    if !form.get("csrf").is_some_and(|c| ctx.session.csrf_ok(c)) {
        return problem(&ctx, StatusCode::FORBIDDEN, ctx.t("csrf"));
    }
    if !ctx.session.is_admin() {
        return problem(&ctx, StatusCode::FORBIDDEN, ctx.t("forbidden"));
    }
    let mut form = form;
    form.remove("csrf");
    let programme = match changed(&state.core.programme, &form) {
        Ok(p) => p,
        Err(e) => {
            return problem(
                &ctx,
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("{}: {e}", ctx.t("prog.whatif.invalid")),
            );
        }
    };
    let now = match state.now().await {
        Ok(t) => t,
        Err(e) => return unavailable(&ctx, &e),
    };
    {
        let Ok(mut job) = state.whatif.lock() else {
            return problem(&ctx, StatusCode::INTERNAL_SERVER_ERROR, "what-if state");
        };
        if matches!(*job, WhatIfJob::Running { .. }) {
            return Redirect::to("/console/programme").into_response();
        }
        *job = WhatIfJob::Running {
            done: 0,
            total: 0,
            form: form.clone(),
        };
    }
    let st = state.clone();
    tokio::spawn(async move {
        let progress = |done, total| {
            if let Ok(mut job) = st.whatif.lock()
                && let WhatIfJob::Running {
                    done: d, total: t, ..
                } = &mut *job
            {
                *d = done;
                *t = total;
            }
        };
        let result = what_if(&st.core, &programme, now, 1000, SAMPLE, progress).await;
        if let Ok(mut job) = st.whatif.lock() {
            *job = match result {
                Ok(report) => WhatIfJob::Done {
                    report,
                    form,
                    programme: Box::new(programme),
                    finished: Utc::now(),
                },
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "console what-if failed");
                    WhatIfJob::Failed {
                        message: format!("{e:#}"),
                        form,
                    }
                }
            };
        }
    });
    tracing::info!("console what-if started");
    Redirect::to("/console/programme").into_response()
}
