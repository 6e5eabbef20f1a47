//! `/console/customers/{id}`: the customer's story: tier and progress, a pending downgrade, the
//! grid position and why, the motive and its signals, churn risk with each driver drawn, the
//! purchase model's figures, the points (balances, lots, movements: `points`), the timeline (paged), and for an admin the override form.
//!
//! The figures are the API's (`GET /v1/customers/{id}`): the same row, the same metrics at the
//! engine's "now", the same assessment with the model in use.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDate, Utc};
use maud::{Markup, html};
use serde_json::Value;

use super::i18n::{self, Gaps, Lang};
use super::page::{ConsoleState, Ctx, page, problem, require, unavailable, url_encode};
use super::svg::{self, Bar};
use crate::domain::churn;
use crate::domain::ids::CustomerId;
use crate::domain::metrics::Metrics;
use crate::domain::state::CustomerState;
use crate::engine::overrides::{OverrideError, OverrideRequest, set_override};
use crate::store::{audit, customers, timeline};

#[derive(Debug, Default, serde::Deserialize)]
pub struct Params {
    /// The timeline cursor (`next` of the previous page).
    pub before: Option<String>,
    /// Set after an override was saved.
    pub done: Option<String>,
}

/// Timeline items per page.
const TIMELINE_PAGE: i64 = 20;

pub async fn show(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<Params>,
) -> Response {
    let here = format!("/console/customers/{}", url_encode(&id));
    let ctx = match require(&state, &headers, here) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if id.is_empty() || id.len() > state.max_id_len {
        return problem(&ctx, StatusCode::BAD_REQUEST, ctx.t("notfound"));
    }
    let now = match state.now().await {
        Ok(t) => t,
        Err(e) => return unavailable(&ctx, &e),
    };
    let customer = match customers::get(&state.core.pool, &id).await {
        Ok(Some(c)) => c,
        Ok(None) => return problem(&ctx, StatusCode::NOT_FOUND, ctx.t("notfound")),
        Err(e) => return unavailable(&ctx, &e),
    };
    let before = params.before.as_deref().and_then(timeline::Cursor::parse);
    let (items, next) =
        match timeline::page(&state.core.pool, &id, TIMELINE_PAGE, before.as_ref()).await {
            Ok(t) => t,
            Err(e) => return unavailable(&ctx, &e),
        };
    let overrides = if ctx.session.is_admin() {
        match audit::overrides_of(&state.core.pool, &id, 20).await {
            Ok(o) => o,
            Err(e) => return unavailable(&ctx, &e.into()),
        }
    } else {
        Vec::new()
    };
    let title = format!("{} {}", ctx.t("cust.title"), id);
    let main = body(
        &ctx,
        &state,
        &customer,
        now,
        &items,
        next.map(|c| c.to_string()),
        params.before.is_some(),
        &overrides,
        params.done.is_some(),
    );
    page(&ctx, &title, "", main)
}

fn field(name: &str, text: String, value: String) -> Markup {
    html! { dd data-field=(name) data-value=(value) { (text) } }
}

#[allow(clippy::too_many_arguments)]
fn body(
    ctx: &Ctx,
    state: &ConsoleState,
    c: &CustomerState,
    now: DateTime<Utc>,
    items: &[Value],
    next: Option<String>,
    paged: bool,
    overrides: &[audit::OverrideRecord],
    done: bool,
) -> Markup {
    let lang = ctx.lang;
    let programme = &state.core.programme;
    let currency = programme.currency.to_string();
    let model = state.core.model.get();
    let m = Metrics::derive(&c.facts, programme, now);
    let a = churn::assess(&m, &programme.churn, model.as_deref());
    let status = &c.status;
    let tier = c.tier();
    let rank = programme.rank(tier);
    let id = c.customer_id.as_str();

    // Progress: keep the tier (when a downgrade is pending) and reach the next one.
    let mut progress: Vec<String> = Vec::new();
    if let Some(rule) = programme.tier_named(tier) {
        let gaps = Gaps::of(rule, &m);
        match (&status.tier.pending, gaps.is_empty()) {
            (Some(p), false) => progress.push(i18n::keeps(lang, &gaps, p.at, tier, programme)),
            _ if gaps.is_empty() => progress.push(i18n::qualifies(lang, tier)),
            _ => {}
        }
    }
    match programme.tiers.get(rank + 1) {
        Some(next_rule) => {
            let gaps = Gaps::of(next_rule, &m);
            if gaps.is_empty() {
                progress.push(i18n::qualifies(lang, &next_rule.name));
            } else {
                progress.push(i18n::reaches(lang, &gaps, &next_rule.name, programme));
            }
        }
        None => progress.push(i18n::top_tier(lang).to_owned()),
    }

    let driver_bars: Vec<Bar> = a
        .drivers
        .iter()
        .map(|d| Bar {
            label: i18n::driver(lang, d, &a, &m).chars().take(28).collect(),
            value: d.contribution,
            text: format!("+{:.2}", d.contribution),
        })
        .collect();
    let churn_status = status.churn.as_ref();
    let level = churn_status.map(|s| s.level.as_str());
    let play = churn_status.map(|s| s.play.as_str());
    let segment = status.segment.map(|s| s.as_str());
    let tiers: Vec<&str> = programme.tiers.iter().map(|t| t.name.as_str()).collect();
    let default_expiry = (now + chrono::Duration::days(30))
        .format("%Y-%m-%d")
        .to_string();

    html! {
        @if done {
            p class="notice" role="status" { (ctx.t("cust.form.done")) }
        }
        div class="cards" {
            section aria-labelledby="h-tier" {
                h2 id="h-tier" { (ctx.t("cust.tier")) }
                dl {
                    dt { (ctx.t("cust.tier")) }
                    (field("tier", tier.to_owned(), tier.to_owned()))
                    @if let Some(since) = status.tier.since {
                        dt { (ctx.t("cust.since")) } dd { (i18n::date(lang, since)) }
                    }
                    dt { (ctx.t("cust.progress")) }
                    dd id="progress" { ul { @for p in &progress { li { (p) } } } }
                    @if let Some(p) = &status.tier.pending {
                        dt { (ctx.t("cust.pending")) }
                        dd id="pending" data-to=(p.to) data-at=(p.at.to_rfc3339()) { (i18n::drops(lang, &p.to, p.at)) }
                    }
                    @if let Some(o) = &status.tier.manual {
                        dt { (ctx.t("cust.override")) }
                        dd id="override" { (o.tier) " · " (ctx.t("cust.until")) " " (i18n::date(lang, o.expires_at)) }
                    }
                }
            }
            section aria-labelledby="h-grid" {
                h2 id="h-grid" { (ctx.t("cust.grid")) }
                dl {
                    dt { (ctx.t("segment")) }
                    (field("segment", i18n::segment(lang, segment).to_owned(), segment.unwrap_or("none").to_owned()))
                    dt { (ctx.t("cust.why")) }
                    dd id="segment-reason" { (i18n::segment_reason(lang, &m, programme)) }
                    dt { (ctx.t("cust.motive")) }
                    (field("motive", i18n::motive(lang, status.motive).to_owned(), status.motive.map_or("unknown", |x| x.as_str()).to_owned()))
                    dt { (ctx.t("cust.signals")) }
                    dd id="motive-signals" { ul { @for s in i18n::motive_signals(lang, status.motive, &m, programme) { li { (s) } } } }
                }
            }
            section aria-labelledby="h-churn" {
                h2 id="h-churn" { (ctx.t("cust.churn")) }
                dl {
                    dt { (ctx.t("level")) }
                    (field("churn_level", i18n::level(lang, level).to_owned(), level.unwrap_or("none").to_owned()))
                    dt { (ctx.t("cust.score")) }
                    (field("score", format!("{:.2}", a.score), format!("{}", a.score)))
                    dt { (ctx.t("play")) }
                    (field("play", i18n::play(lang, play).to_owned(), play.unwrap_or("none").to_owned()))
                }
                h3 { (ctx.t("cust.contrib")) }
                (svg::bars(ctx.t("cust.contrib"), &driver_bars, "drivers"))
                table class="figures" id="drivers" {
                    caption { (ctx.t("cust.contrib")) }
                    tbody {
                        @for d in &a.drivers {
                            tr data-driver=(d.name) {
                                th scope="row" { (i18n::driver(lang, d, &a, &m)) }
                                td class="num" data-value=(d.contribution) { (format!("+{:.2}", d.contribution)) }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="h-model" {
                h2 id="h-model" { (ctx.t("cust.model")) }
                @if a.p_alive.is_none() && a.clv_minor.is_none() && a.expected_purchases.is_none() {
                    p { (ctx.t("cust.nomodel")) }
                }
                dl {
                    @if let Some(p) = a.p_alive {
                        dt { (ctx.t("cust.p_alive")) } (field("p_alive", format!("{p:.3}"), format!("{p}")))
                    }
                    @if let Some(e) = a.expected_purchases {
                        dt { (ctx.t("cust.expected")) } (field("expected_purchases", format!("{e:.2}"), format!("{e}")))
                    }
                    @if let Some(v) = a.clv_minor {
                        dt { (ctx.t("cust.clv")) } (field("clv_minor", i18n::money(lang, v, &currency), format!("{v}")))
                    }
                    dt { (ctx.t("cust.horizon")) } dd { (programme.churn.horizon_days) " " (ctx.t("days")) }
                }
                h2 { (ctx.t("cust.figures")) }
                dl {
                    dt { (ctx.t("cust.spend")) }
                    (field("lifetime_spend_minor", i18n::money(lang, m.lifetime_spend_minor as f64, &currency), m.lifetime_spend_minor.to_string()))
                    dt { (ctx.t("cust.orders")) }
                    (field("orders", crate::domain::tier::orders_words(m.orders), m.orders.to_string()))
                    dt { (ctx.t("cust.qspend")) }
                    (field("qualifying_spend_minor", i18n::money(lang, m.qualifying_spend_minor as f64, &currency), m.qualifying_spend_minor.to_string()))
                    dt { (ctx.t("cust.qorders")) }
                    (field("qualifying_orders", crate::domain::tier::orders_words(m.qualifying_orders), m.qualifying_orders.to_string()))
                    @if let Some(last) = m.last_purchase_at {
                        dt { (ctx.t("cust.last")) } dd { (i18n::date(lang, last)) }
                    }
                    @if let Some(n) = m.nps {
                        dt { (ctx.t("cust.nps")) } (field("nps", n.to_string(), n.to_string()))
                    }
                }
            }
        }
        (super::points::customer_section(lang, programme, &c.points, now))
        section aria-labelledby="h-timeline" {
            h2 id="h-timeline" { (ctx.t("cust.timeline")) }
            @if items.is_empty() {
                p { (ctx.t("cust.nothing")) }
            } @else {
                table class="timeline" id="timeline" {
                    thead { tr { th scope="col" { (ctx.t("cust.when")) } th scope="col" { (ctx.t("cust.what")) } th scope="col" { (ctx.t("cust.caused")) } } }
                    tbody {
                        @for item in items {
                            (timeline_row(lang, item, &currency))
                        }
                    }
                }
            }
            nav class="pager" aria-label=(ctx.t("cust.timeline")) {
                @if paged {
                    a href={"/console/customers/" (url_encode(id))} { (ctx.t("cust.newest")) }
                }
                @if let Some(n) = next {
                    a rel="next" href={"/console/customers/" (url_encode(id)) "?before=" (url_encode(&n))} { (ctx.t("cust.older")) }
                }
            }
        }
        @if ctx.session.is_admin() {
            section aria-labelledby="h-override" {
                h2 id="h-override" { (ctx.t("cust.form")) }
                form id="override-form" method="post" action={"/console/customers/" (url_encode(id)) "/override"} {
                    input type="hidden" name="csrf" value=(ctx.session.csrf());
                    label for="o-tier" { (ctx.t("cust.form.tier")) }
                    select id="o-tier" name="tier" {
                        @for t in &tiers { option value=(t) selected[*t == tier] { (t) } }
                    }
                    label for="o-reason" { (ctx.t("cust.form.reason")) }
                    input id="o-reason" name="reason" type="text" required maxlength="500";
                    label for="o-expires" { (ctx.t("cust.form.expires")) }
                    input id="o-expires" name="expires" type="date" required value=(default_expiry);
                    button type="submit" { (ctx.t("cust.form.submit")) }
                }
                @if !overrides.is_empty() {
                    table class="figures" id="audit" {
                        caption { (ctx.t("cust.audit")) }
                        thead { tr {
                            th scope="col" { (ctx.t("cust.when")) } th scope="col" { (ctx.t("from")) } th scope="col" { (ctx.t("to")) }
                            th scope="col" { (ctx.t("reason")) } th scope="col" { (ctx.t("cust.by")) } th scope="col" { (ctx.t("cust.until")) }
                        } }
                        tbody {
                            @for o in overrides {
                                tr {
                                    td { (i18n::datetime(lang, o.set_at)) } td { (o.previous_tier) } td { (o.tier) }
                                    td { (o.reason) } td { (o.set_by) } td { (i18n::date(lang, o.expires_at)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    match cur {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn number(v: &Value, path: &[&str]) -> Option<f64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_f64()
        .or_else(|| cur.as_str().and_then(|s| s.parse().ok()))
}

/// An input event in a few words (never a survey comment: free text is not shown).
fn event_words(lang: Lang, event: &Value, currency: &str) -> String {
    let body = event.get("body").unwrap_or(&Value::Null);
    let kind = text(body, &["type"]).unwrap_or_default();
    match kind.as_str() {
        "purchase" => format!(
            "{} {}",
            lang.t("kind.purchase"),
            number(body, &["amount"]).map_or(String::new(), |a| i18n::money(lang, a, currency))
        ),
        "refund" => format!(
            "{} {}",
            lang.t("kind.refund"),
            number(body, &["amount"]).map_or(String::new(), |a| i18n::money(lang, a, currency))
        ),
        "ticket" => format!(
            "{} {}{}{}",
            lang.t("kind.ticket"),
            text(body, &["status"]).unwrap_or_default(),
            if body.get("escalated").and_then(Value::as_bool) == Some(true) {
                " · escalated"
            } else {
                ""
            },
            if body.get("sla_breached").and_then(Value::as_bool) == Some(true) {
                " · SLA"
            } else {
                ""
            },
        ),
        "survey" => format!(
            "{} {} {}",
            lang.t("kind.survey"),
            text(body, &["score", "kind"])
                .unwrap_or_default()
                .to_uppercase(),
            text(body, &["score", "score"]).unwrap_or_default()
        ),
        other => other.to_owned(),
    }
}

/// An output in a few words, from its payload (protobuf JSON).
fn output_words(lang: Lang, ce_type: &str, data: &Value) -> String {
    let code = |prefix: &str, key: &str| {
        text(data, &[key]).and_then(|s| s.strip_prefix(prefix).map(str::to_ascii_lowercase))
    };
    let label = match ce_type {
        "kizuna.v1.TierChanged" => lang.t("out.kizuna.v1.TierChanged"),
        "kizuna.v1.TierWillDowngrade" => lang.t("out.kizuna.v1.TierWillDowngrade"),
        "kizuna.v1.ChurnRiskChanged" => lang.t("out.kizuna.v1.ChurnRiskChanged"),
        "kizuna.v1.SegmentChanged" => lang.t("out.kizuna.v1.SegmentChanged"),
        "kizuna.v1.PointsChanged" => lang.t("out.kizuna.v1.PointsChanged"),
        "kizuna.v1.PointsWillExpire" => lang.t("out.kizuna.v1.PointsWillExpire"),
        _ => lang.t("kind.output"),
    };
    let detail = match ce_type {
        "kizuna.v1.TierChanged" => format!(
            "{} → {}",
            text(data, &["previousTier"]).unwrap_or_default(),
            text(data, &["newTier"]).unwrap_or_default()
        ),
        "kizuna.v1.TierWillDowngrade" => format!(
            "→ {} {}",
            text(data, &["newTier"]).unwrap_or_default(),
            text(data, &["downgradeAt"])
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| i18n::date(lang, t.with_timezone(&Utc)))
                .unwrap_or_default()
        ),
        "kizuna.v1.ChurnRiskChanged" => format!(
            "{} · {}",
            i18n::level(lang, code("CHURN_LEVEL_", "newLevel").as_deref()),
            i18n::play(lang, code("PLAY_", "play").as_deref())
        ),
        "kizuna.v1.SegmentChanged" => format!(
            "{} → {}",
            i18n::segment(lang, code("SEGMENT_", "previousSegment").as_deref()),
            i18n::segment(lang, code("SEGMENT_", "newSegment").as_deref())
        ),
        "kizuna.v1.PointsChanged" => format!(
            "{} {} · {} {}",
            lang.t("pts.available"),
            i18n::number(number(data, &["available"]).unwrap_or(0.0) as i64),
            lang.t("pts.pending"),
            i18n::number(number(data, &["pending"]).unwrap_or(0.0) as i64),
        ),
        "kizuna.v1.PointsWillExpire" => format!(
            "{} {} · {}",
            i18n::number(number(data, &["amount"]).unwrap_or(0.0) as i64),
            lang.t("pts.points"),
            text(data, &["expiresAt"])
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| i18n::date(lang, t.with_timezone(&Utc)))
                .unwrap_or_default()
        ),
        _ => String::new(),
    };
    format!("{label}: {detail}")
}

fn timeline_row(lang: Lang, item: &Value, currency: &str) -> Markup {
    let at = text(item, &["at"])
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| i18n::datetime(lang, t.with_timezone(&Utc)))
        .unwrap_or_default();
    let is_event = text(item, &["type"]).as_deref() == Some("event");
    html! {
        tr {
            td { (at) }
            @if is_event {
                td { (event_words(lang, item.get("event").unwrap_or(&Value::Null), currency)) }
                td {
                    ul class="outputs" {
                        @for o in item.get("outputs").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
                            li { (output_words(lang, &text(o, &["ce_type"]).unwrap_or_default(), o.get("data").unwrap_or(&Value::Null))) }
                        }
                    }
                }
            } @else {
                td { (lang.t("kind.output")) " (" (text(item, &["caused_by"]).unwrap_or_default()) ")" }
                td { (output_words(lang, &text(item, &["ce_type"]).unwrap_or_default(), item.get("data").unwrap_or(&Value::Null))) }
            }
        }
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct OverrideForm {
    pub csrf: String,
    pub tier: String,
    pub reason: String,
    /// YYYY-MM-DD: the override ends at the start of that day (UTC).
    pub expires: String,
}

/// `POST /console/customers/{id}/override`: admin only, CSRF-checked, audited like the API's.
pub async fn set(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<OverrideForm>,
) -> Response {
    let here = format!("/console/customers/{}", url_encode(&id));
    let ctx = match require(&state, &headers, here.clone()) {
        Ok(c) => c,
        Err(_) => return StatusCode::UNAUTHORIZED.into_response(),
    };
    if !ctx.session.csrf_ok(&form.csrf) {
        return problem(&ctx, StatusCode::FORBIDDEN, ctx.t("csrf"));
    }
    if !ctx.session.is_admin() {
        return problem(&ctx, StatusCode::FORBIDDEN, ctx.t("forbidden"));
    }
    let Ok(customer) = CustomerId::parse(&id, state.max_id_len) else {
        return problem(&ctx, StatusCode::BAD_REQUEST, ctx.t("notfound"));
    };
    let Some(expires_at) = NaiveDate::parse_from_str(&form.expires, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
    else {
        return problem(&ctx, StatusCode::BAD_REQUEST, ctx.t("cust.form.expires"));
    };
    let req = OverrideRequest {
        tier: form.tier,
        reason: form.reason,
        expires_at,
        set_by: "console:admin".to_owned(),
    };
    match set_override(&state.core, &customer, &req).await {
        Ok(_) => Redirect::to(&format!("{here}?done=1")).into_response(),
        Err(OverrideError::UnknownCustomer) => {
            problem(&ctx, StatusCode::NOT_FOUND, ctx.t("notfound"))
        }
        Err(OverrideError::Store(e)) => unavailable(&ctx, &e),
        Err(e) => problem(
            &ctx,
            StatusCode::BAD_REQUEST,
            &format!("{}: {e:?}", ctx.t("cust.form")),
        ),
    }
}
