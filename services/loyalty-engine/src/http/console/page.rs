//! What every console page shares: the state, the request context (language, session), the
//! page frame (skip link, navigation, search, language toggle) and the answers for refusals.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::auth::{Keys, Session};
use super::i18n::Lang;
use super::snapshot::Snapshots;
use crate::engine::Core;

/// The console's shared state.
#[derive(Debug, Clone)]
pub struct ConsoleState {
    pub core: Core,
    pub keys: Arc<Keys>,
    pub snapshot: Snapshots,
    pub whatif: Arc<Mutex<super::whatif::WhatIfJob>>,
    pub max_id_len: usize,
}

impl ConsoleState {
    pub fn new(
        core: Core,
        settings: &crate::config::ConsoleSettings,
        snapshot: Snapshots,
        max_id_len: usize,
    ) -> Self {
        Self {
            core,
            keys: Arc::new(Keys::new(settings)),
            snapshot,
            whatif: Arc::default(),
            max_id_len,
        }
    }

    /// The engine's "now".
    pub async fn now(&self) -> anyhow::Result<DateTime<Utc>> {
        Ok(self.core.clock.now(&self.core.pool).await?)
    }
}

/// A request's language and session.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub lang: Lang,
    pub session: Session,
    /// The path and query of this page (for the language toggle's way back).
    pub here: String,
    /// Reload the page every few seconds (while a what-if runs).
    pub refresh: bool,
}

impl Ctx {
    pub fn t(&self, key: &'static str) -> &'static str {
        self.lang.t(key)
    }
}

/// The session of a request, or the answer to give instead: a page redirects to the login,
/// anything else gets 401.
pub fn require(
    state: &ConsoleState,
    headers: &HeaderMap,
    here: String,
) -> Result<Ctx, Box<Response>> {
    let lang = Lang::from_headers(headers);
    match state.keys.session_of(headers, Utc::now()) {
        Some(session) => Ok(Ctx {
            lang,
            session,
            here,
            refresh: false,
        }),
        None => {
            let next = url_encode(&here);
            Err(Box::new(
                Redirect::to(&format!("/console/login?next={next}")).into_response(),
            ))
        }
    }
}

/// Percent-encodes everything but unreserved characters.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A local console path to go back to, or the overview (never another site).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/console/") && !n.starts_with("//") && !n.contains('\\') => {
            n.to_owned()
        }
        _ => "/console/".to_owned(),
    }
}

/// Headers of every console answer: no caching, no framing, nothing from elsewhere.
pub fn secure(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// An HTML answer.
pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    secure(
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            markup.into_string(),
        )
            .into_response(),
    )
}

/// A page's `<head>`: its title (then the console's name), the style sheet and the icon;
/// `refresh` reloads the page every 2 s.
pub fn head(lang: Lang, title: &str, refresh: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            @if refresh {
                meta http-equiv="refresh" content="2";
            }
            title { (title) " · " (lang.t("app")) }
            link rel="stylesheet" href="/console/static/console.css";
            link rel="icon" href="/console/static/favicon.svg" type="image/svg+xml";
        }
    }
}

/// The page frame around `main`.
pub fn frame(ctx: &Ctx, title: &str, current: &str, main: Markup) -> Markup {
    let lang = ctx.lang;
    let other = lang.other();
    let toggle = format!(
        "/console/lang/{}?next={}",
        other.code(),
        url_encode(&ctx.here)
    );
    let nav = [
        ("/console/", "nav.overview", "overview"),
        ("/console/churn", "nav.churn", "churn"),
        ("/console/programme", "nav.programme", "programme"),
    ];
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            (head(lang, title, ctx.refresh))
            body {
                a class="skip" href="#main" { (ctx.t("skip")) }
                header class="top" {
                    a class="brand" href="/console/" { (ctx.t("app")) }
                    nav aria-label=(ctx.t("nav")) {
                        ul {
                            @for (href, key, id) in nav {
                                li {
                                    @if id == current {
                                        a href=(href) aria-current="page" { (ctx.t(key)) }
                                    } @else {
                                        a href=(href) { (ctx.t(key)) }
                                    }
                                }
                            }
                        }
                    }
                    form class="search" role="search" method="get" action="/console/search" {
                        label for="q" { (ctx.t("search")) }
                        input id="q" name="q" type="search" autocomplete="off" maxlength="128" required;
                        button type="submit" { (ctx.t("search.go")) }
                    }
                    a class="lang" href=(toggle) hreflang=(other.code()) lang=(other.code()) { (ctx.t("lang.switch")) }
                    span class="who" {
                        (if ctx.session.is_admin() { ctx.t("role.admin") } else { ctx.t("role.viewer") })
                    }
                    form class="logout" method="post" action="/console/logout" {
                        input type="hidden" name="csrf" value=(ctx.session.csrf());
                        button type="submit" { (ctx.t("logout")) }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (main)
                }
            }
        }
    }
}

/// A full page, 200.
pub fn page(ctx: &Ctx, title: &str, current: &str, main: Markup) -> Response {
    html_response(StatusCode::OK, frame(ctx, title, current, main))
}

/// A refusal or failure as a page.
pub fn problem(ctx: &Ctx, status: StatusCode, message: &str) -> Response {
    let title = ctx.t("back");
    html_response(
        status,
        frame(
            ctx,
            status.canonical_reason().unwrap_or("error"),
            "",
            html! {
                p class="problem" role="alert" { (message) }
                p { a href="/console/" { (title) } }
            },
        ),
    )
}

/// The database could not answer.
pub fn unavailable(ctx: &Ctx, e: &anyhow::Error) -> Response {
    tracing::warn!(error = format!("{e:#}"), "console page failed");
    problem(ctx, StatusCode::SERVICE_UNAVAILABLE, ctx.t("error.db"))
}
