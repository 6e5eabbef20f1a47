//! Search by customer id (from every page's header), the login and logout, and the language
//! toggle.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{DOCTYPE, html};

use super::auth::Session;
use super::i18n::{LANG_COOKIE, Lang};
use super::page::{
    ConsoleState, head, html_response, page, problem, require, safe_next, secure, unavailable,
    url_encode,
};
use crate::store::customers;

pub async fn to_overview() -> Redirect {
    Redirect::permanent("/console/")
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct Next {
    pub next: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct LoginLink {
    pub next: Option<String>,
    /// The demo's login link: a valid token logs in at once and the redirect drops it from the
    /// address bar. (Nothing logs request URLs; a token in a link still lands in the browser's
    /// history, so production logins use the form.)
    pub token: Option<String>,
}

fn login_form(lang: Lang, next: &str, message: Option<&str>, open: bool) -> maud::Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            (head(lang, lang.t("login.title"), false))
            body class="login" {
                main id="main" {
                    h1 { (lang.t("app")) }
                    @if !open {
                        p class="problem" role="alert" { (lang.t("login.closed")) }
                    } @else {
                        @if let Some(m) = message {
                            p class="problem" role="alert" id="login-error" { (m) }
                        }
                        form method="post" action="/console/login" {
                            input type="hidden" name="next" value=(next);
                            label for="token" { (lang.t("login.token")) }
                            input id="token" name="token" type="password" autocomplete="current-password" required;
                            button type="submit" { (lang.t("login.submit")) }
                        }
                    }
                    p {
                        a href={"/console/lang/" (lang.other().code()) "?next=" (url_encode(&format!("/console/login?next={}", url_encode(next))))}
                            lang=(lang.other().code()) { (lang.t("lang.switch")) }
                    }
                }
            }
        }
    }
}

/// `GET /console/login[?token=…]`: the form, or (with a valid token: the demo's login link) the
/// session at once.
pub async fn login_page(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Query(q): Query<LoginLink>,
) -> Response {
    let lang = Lang::from_headers(&headers);
    let next = safe_next(q.next.as_deref());
    if let Some(token) = q.token.as_deref() {
        return start_session(&state, lang, token, next);
    }
    html_response(
        StatusCode::OK,
        login_form(lang, &next, None, state.keys.open()),
    )
}

#[derive(Debug, serde::Deserialize)]
pub struct LoginForm {
    pub token: String,
    pub next: Option<String>,
}

/// `POST /console/login`: the token for a session cookie.
pub async fn login(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let lang = Lang::from_headers(&headers);
    let next = safe_next(form.next.as_deref());
    start_session(&state, lang, &form.token, next)
}

fn start_session(state: &ConsoleState, lang: Lang, token: &str, next: String) -> Response {
    let Some(role) = state.keys.role_of(token.trim()) else {
        tracing::info!("console login refused");
        return html_response(
            StatusCode::UNAUTHORIZED,
            login_form(lang, &next, Some(lang.t("login.bad")), state.keys.open()),
        );
    };
    let Some((_, value)) = state.keys.login(role, Utc::now()) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    tracing::info!(role = role.as_str(), "console login");
    let mut response = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&state.keys.set_cookie(&value)) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    secure(response)
}

#[derive(Debug, serde::Deserialize)]
pub struct CsrfOnly {
    pub csrf: String,
}

/// `POST /console/logout`.
pub async fn logout(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Form(form): Form<CsrfOnly>,
) -> Response {
    let session: Option<Session> = state.keys.session_of(&headers, Utc::now());
    if !session.is_some_and(|s| s.csrf_ok(&form.csrf)) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let mut response = Redirect::to("/console/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&state.keys.clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    secure(response)
}

/// `GET /console/lang/{ja|en}?next=…`: remembers the language and goes back.
pub async fn language(Path(code): Path<String>, Query(q): Query<Next>) -> Response {
    let next = safe_next(q.next.as_deref());
    let Some(lang) = Lang::parse(&code) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut response = Redirect::to(&next).into_response();
    let cookie = format!(
        "{LANG_COOKIE}={}; Path=/console; SameSite=Strict; Max-Age=31536000",
        lang.code()
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    secure(response)
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct Q {
    #[serde(default)]
    pub q: String,
}

/// `GET /console/search?q=ID`: the customer's page, or the ids nearby.
pub async fn search(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Query(q): Query<Q>,
) -> Response {
    let id = q.q.trim().to_owned();
    let here = format!("/console/search?q={}", url_encode(&id));
    let ctx = match require(&state, &headers, here) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if id.is_empty() || id.len() > state.max_id_len {
        return problem(&ctx, StatusCode::BAD_REQUEST, ctx.t("search.none"));
    }
    match customers::get(&state.core.pool, &id).await {
        Ok(Some(_)) => {
            return Redirect::to(&format!("/console/customers/{}", url_encode(&id)))
                .into_response();
        }
        Ok(None) => {}
        Err(e) => return unavailable(&ctx, &e),
    }
    let near = match customers::ids_from(&state.core.pool, &id, 10).await {
        Ok(n) => n,
        Err(e) => return unavailable(&ctx, &e.into()),
    };
    let main = html! {
        p id="search-none" role="status" { (ctx.t("search.none")) " (" (id) ")" }
        @if !near.is_empty() {
            h2 { (ctx.t("search.near")) }
            ul id="near" {
                @for n in &near {
                    li { a href={"/console/customers/" (url_encode(n))} { (n) } }
                }
            }
        }
    };
    // 200: a page of results (none, and the ids nearby), not a missing page.
    page(&ctx, ctx.t("search.title"), "", main)
}
