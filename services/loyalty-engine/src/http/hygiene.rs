//! What every request meets besides its role (`auth`): a body size limit (413), a time limit
//! (503), and security headers on every answer of the API and the console.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::problem::Problem;
use crate::config::HttpSettings;

/// The body and time limits of the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Largest request body (axum's `DefaultBodyLimit`: the JSON and form extractors answer 413).
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
}

impl HttpLimits {
    pub fn new(http: &HttpSettings) -> Self {
        Self {
            max_body_bytes: http.max_body_bytes,
            request_timeout: Duration::from_millis(http.request_timeout_ms),
        }
    }
}

/// A middleware: a request not answered within `http.request_timeout_ms` is dropped (a
/// transaction it had open rolls back) and answered 503 with `Retry-After`.
pub async fn timeout(State(limits): State<HttpLimits>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limits.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => Problem::unavailable(format!(
            "no answer within http.request_timeout_ms ({} ms)",
            limits.request_timeout.as_millis()
        ))
        .retry_after(1)
        .into_response(),
    }
}

/// The API's headers: no sniffing, no referrer, never framed, nothing loaded by a JSON answer,
/// and no caching (customer data must not stay in a shared cache or a browser's).
const API_HEADERS: [(HeaderName, &str); 5] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'",
    ),
    (header::CACHE_CONTROL, "no-store"),
];

/// The console's headers where a page has not set its own (its pages set a stricter CSP and
/// `no-store`; the style sheet and icon keep their caching).
const CONSOLE_HEADERS: [(HeaderName, &str); 4] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "same-origin"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
];

fn add_missing(mut response: Response, headers: &[(HeaderName, &'static str)]) -> Response {
    let h = response.headers_mut();
    for (name, value) in headers {
        h.entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    }
    response
}

/// A response mapper: [`API_HEADERS`] on every answer of the API (where not already set).
pub async fn api_headers(response: Response) -> Response {
    add_missing(response, &API_HEADERS)
}

/// A response mapper: [`CONSOLE_HEADERS`] on every answer of the console (where not already
/// set).
pub async fn console_headers(response: Response) -> Response {
    add_missing(response, &CONSOLE_HEADERS)
}
