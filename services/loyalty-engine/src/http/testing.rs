//! Support for the HTTP tests of the engine, kizuna-gateway and kizuna-webhooks: a router's
//! answer to one request, and the checks every RFC 9457 problem must pass.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

use super::problem::{PROBLEM_JSON, TYPE_BASE};

/// The router's answer to `req`: status, headers and the whole body.
pub async fn call(app: Router, req: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let resp = app.oneshot(req).await.expect("the router answers");
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.expect("a body");
    (parts.status, parts.headers, bytes.to_vec())
}

/// Asserts that the router answers `req` with an RFC 9457 problem of `status` and type `slug`
/// (`application/problem+json`, a title, a detail); returns its headers and body.
pub async fn problem(
    app: Router,
    req: Request<Body>,
    status: u16,
    slug: &str,
) -> (HeaderMap, Value) {
    let (got, headers, body) = call(app, req).await;
    let text = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(got.as_u16(), status, "{text}");
    assert_eq!(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some(PROBLEM_JSON),
        "{text}"
    );
    let json: Value = serde_json::from_slice(&body).expect("a JSON body");
    assert_eq!(json["type"], format!("{TYPE_BASE}{slug}"), "{json}");
    assert_eq!(json["status"], status, "{json}");
    assert!(
        json["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{json}"
    );
    assert!(
        json["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{json}"
    );
    (headers, json)
}
