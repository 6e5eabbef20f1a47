//! The HTTP layer in-process (`tower::ServiceExt::oneshot` on the real router): every error
//! is an RFC 9457 problem, axum's own rejections included, and the admin API challenges with
//! `WWW-Authenticate`. The database is a lazy pool pointing at a closed port, so a request
//! that reaches it gets the real "database unavailable" answer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use secrecy::SecretString;

use super::auth::{INVALID_TOKEN_CHALLENGE, hash_token};
use super::problem::BEARER_CHALLENGE;
use super::testing::{call, problem};
use super::{AppState, router};
use crate::config::access::{Role, TokenSettings};
use crate::config::{HttpSettings, Settings};
use crate::engine::Core;
use crate::health::Health;
use crate::inputs::validate::Limits;
use crate::metrics::Metrics;

const VIEWER: &str = "Bearer view-t0ken";
const OPERATOR: &str = "Bearer oper-t0ken";
const ADMIN: &str = "Bearer s3cret";

/// The router with the HTTP settings `http` makes of the defaults.
fn app_with(http: impl FnOnce(&mut HttpSettings)) -> Router {
    let mut settings = Settings::load_from(None, Some(HashMap::new())).expect("default settings");
    http(&mut settings.http);
    let programme = Arc::new(settings.load_programme().expect("built-in programme"));
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy("postgres://kizuna:kizuna@127.0.0.1:1/none")
        .expect("a lazy pool");
    let core = Core::new(&settings, pool, programme.clone(), Metrics::new(), 6);
    let limits = Limits::new(&settings, &programme);
    let state = AppState::new(core, Health::default(), limits, &settings.http).expect("state");
    router(state, true)
}

/// A viewer token (`desk`), an operator token (`till`) and the deprecated admin token.
fn tokens(http: &mut HttpSettings) {
    let token = |role, secret: &str| TokenSettings {
        role,
        sha256: hash_token(secret),
    };
    http.tokens = BTreeMap::from([
        ("desk".to_owned(), token(Role::Viewer, "view-t0ken")),
        ("till".to_owned(), token(Role::Operator, "oper-t0ken")),
    ]);
    http.admin_token = Some(SecretString::from("s3cret"));
}

fn app() -> Router {
    app_with(tokens)
}

/// A request with an operator's token (reads and redemptions).
fn post_json(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::AUTHORIZATION, OPERATOR)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .expect("a request")
}

fn get(path: &str) -> Request<Body> {
    get_as(path, Some(OPERATOR))
}

fn get_as(path: &str, auth: Option<&str>) -> Request<Body> {
    let mut req = Request::get(path);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    req.body(Body::empty()).expect("a request")
}

#[tokio::test]
async fn framework_rejections_are_problems() {
    // A body that is not JSON.
    let (_, p) = problem(
        app(),
        post_json("/v1/evaluate", "{not json"),
        400,
        "malformed-request",
    )
    .await;
    assert!(
        p["detail"].as_str().is_some_and(|d| d.contains("JSON")),
        "{p}"
    );
    // JSON of the wrong shape.
    problem(
        app(),
        post_json("/v1/evaluate", r#"{"customer_id": 5}"#),
        422,
        "invalid-request",
    )
    .await;
    // No JSON content type.
    let req = Request::post("/v1/evaluate")
        .header(header::AUTHORIZATION, OPERATOR)
        .body(Body::from("{}"))
        .expect("a request");
    problem(app(), req, 415, "unsupported-media-type").await;
    // A query parameter of the wrong type.
    problem(
        app(),
        get("/v1/customers/c1/timeline?limit=many"),
        400,
        "malformed-request",
    )
    .await;
    problem(
        app(),
        get("/v1/customers/c1?as_of=yesterday"),
        400,
        "malformed-request",
    )
    .await;
    // No such route.
    let (_, p) = problem(app(), get("/v1/nowhere"), 404, "not-found").await;
    assert!(
        p["detail"]
            .as_str()
            .is_some_and(|d| d.contains("/v1/nowhere")),
        "{p}"
    );
    // A route without that method: 405, with the methods it has.
    let req = Request::builder()
        .method(Method::DELETE)
        .uri("/v1/evaluate")
        .body(Body::empty())
        .expect("a request");
    let (headers, _) = problem(app(), req, 405, "method-not-allowed").await;
    assert_eq!(
        headers.get(header::ALLOW).and_then(|v| v.to_str().ok()),
        Some("POST")
    );
}

#[tokio::test]
async fn every_endpoint_challenges_for_a_bearer_token() {
    let endpoints = [
        (Method::GET, "/v1/customers/c1"),
        (Method::GET, "/v1/customers/c1/timeline"),
        (Method::GET, "/v1/customers/c1/points"),
        (Method::GET, "/v1/programme/liability"),
        (Method::POST, "/v1/evaluate"),
        (Method::POST, "/v1/customers/c1/redemptions"),
        (Method::POST, "/v1/customers/c1/redemptions/k/cancel"),
        (Method::POST, "/v1/customers/c1/points/adjustments"),
        (Method::POST, "/v1/customers/c1/tier-override"),
        (Method::POST, "/v1/admin/recompute"),
        (Method::GET, "/v1/admin/recompute"),
        (Method::GET, "/v1/customers/c1/export"),
        (Method::DELETE, "/v1/customers/c1"),
    ];
    for (method, path) in endpoints {
        for (auth, challenge) in [
            (None, BEARER_CHALLENGE),
            (Some("Bearer wrong"), INVALID_TOKEN_CHALLENGE),
            (Some("Basic a2l6dW5hOmtpenVuYQ=="), BEARER_CHALLENGE),
        ] {
            let mut req = Request::builder().method(method.clone()).uri(path);
            if let Some(a) = auth {
                req = req.header(header::AUTHORIZATION, a);
            }
            let req = req.body(Body::empty()).expect("a request");
            let (headers, _) = problem(app(), req, 401, "unauthorized").await;
            assert_eq!(
                headers
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok()),
                Some(challenge),
                "{method} {path} {auth:?}"
            );
        }
        // Nothing configured: refused, saying what to set.
        let req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::AUTHORIZATION, ADMIN)
            .body(Body::empty())
            .expect("a request");
        let (_, p) = problem(app_with(|_| {}), req, 403, "access-not-configured").await;
        assert!(
            p["detail"]
                .as_str()
                .is_some_and(|d| d.contains("http.tokens")),
            "{p}"
        );
    }
    // The probes, the metrics and the description stay open.
    for path in ["/healthz", "/metrics", "/v1/openapi.json"] {
        let (status, _, _) = call(app(), get_as(path, None)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn a_role_below_the_endpoints_is_refused_naming_the_role() {
    // The token is checked before the body is read: a bad body without it is still a 401.
    let req = Request::post("/v1/customers/c1/tier-override")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .expect("a request");
    problem(app(), req, 401, "unauthorized").await;
    for (auth, path, needed) in [
        (VIEWER, "/v1/customers/c1/redemptions", "operator"),
        (VIEWER, "/v1/customers/c1/tier-override", "admin"),
        (OPERATOR, "/v1/customers/c1/tier-override", "admin"),
        (OPERATOR, "/v1/customers/c1/points/adjustments", "admin"),
        (OPERATOR, "/v1/admin/recompute", "admin"),
    ] {
        let req = Request::post(path)
            .header(header::AUTHORIZATION, auth)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{not json"))
            .expect("a request");
        let (_, p) = problem(app(), req, 403, "role-required").await;
        assert_eq!(p["required_role"], needed, "{path}: {p}");
        assert!(
            p["detail"].as_str().is_some_and(|d| d.contains(needed)),
            "{p}"
        );
    }
    // The access request and the erasure are the admin's.
    for (method, path) in [
        (Method::GET, "/v1/customers/c1/export"),
        (Method::DELETE, "/v1/customers/c1"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, OPERATOR)
            .body(Body::empty())
            .expect("a request");
        let (_, p) = problem(app(), req, 403, "role-required").await;
        assert_eq!(p["required_role"], "admin", "{path}: {p}");
    }
    // With the role, the body's problem.
    let req = Request::post("/v1/customers/c1/tier-override")
        .header(header::AUTHORIZATION, ADMIN)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .expect("a request");
    problem(app(), req, 400, "malformed-request").await;
    // A viewer reads (here: the database is down, so a 503 and not a 401 or 403).
    problem(
        app(),
        get_as("/v1/customers/c1", Some(VIEWER)),
        503,
        "unavailable",
    )
    .await;
    // And the admin token passes.
    let (status, _, body) = call(app(), get_as("/v1/admin/recompute", Some(ADMIN))).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn bodies_time_and_admin_calls_are_limited_and_answers_carry_security_headers() {
    // A body over http.max_body_bytes: 413, after the role is checked.
    let big = format!(
        r#"{{"customer_id": "c1", "event": "{}"}}"#,
        "x".repeat(4096)
    );
    let small = |h: &mut HttpSettings| {
        tokens(h);
        h.max_body_bytes = 1024;
    };
    problem(
        app_with(small),
        post_json("/v1/evaluate", &big),
        413,
        "payload-too-large",
    )
    .await;
    // A request that takes longer than http.request_timeout_ms (the database never answers).
    let quick = |h: &mut HttpSettings| {
        tokens(h);
        h.request_timeout_ms = 50;
    };
    let (headers, p) = problem(app_with(quick), get("/v1/customers/c1"), 503, "unavailable").await;
    assert!(
        p["detail"]
            .as_str()
            .is_some_and(|d| d.contains("request_timeout_ms")),
        "{p}"
    );
    assert!(headers.contains_key(header::RETRY_AFTER));
    // Security headers, on answers and on problems alike.
    for req in [get("/v1/admin/recompute"), get_as("/v1/openapi.json", None)] {
        let (_, headers, _) = call(app(), req).await;
        for (name, value) in [
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ] {
            assert_eq!(
                headers.get(&name).and_then(|v| v.to_str().ok()),
                Some(value),
                "{name}"
            );
        }
    }
    // Admin calls: a burst of 3, then 429 with Retry-After; per caller.
    let limited = app_with(|h| {
        tokens(h);
        h.admin_requests_per_minute = 1;
        h.admin_burst = 3;
    });
    for _ in 0..3 {
        let (status, _, _) =
            call(limited.clone(), get_as("/v1/admin/recompute", Some(ADMIN))).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (headers, _) = problem(
        limited.clone(),
        get_as("/v1/admin/recompute", Some(ADMIN)),
        429,
        "rate-limited",
    )
    .await;
    let wait: u64 = headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&wait), "{wait}");
}

#[tokio::test]
async fn an_unreachable_database_is_a_503_problem() {
    let (_, p) = problem(app(), get("/v1/customers/c1"), 503, "unavailable").await;
    assert_eq!(p["detail"], "the database is unavailable");
}

#[tokio::test]
async fn the_served_openapi_document_is_the_generated_one() {
    let (status, headers, body) = call(app(), get("/v1/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let served = String::from_utf8(body).expect("UTF-8");
    assert_eq!(served, super::openapi::render(&super::openapi_document()));
}

#[tokio::test]
async fn redemptions_need_an_idempotency_key_and_a_programme_with_points() {
    let body = r#"{"points": 300, "reward": "coffee"}"#;
    let (_, p) = problem(
        app(),
        post_json("/v1/customers/c1/redemptions", body),
        400,
        "idempotency-key-required",
    )
    .await;
    assert_eq!(p["field"], "Idempotency-Key", "{p}");
    let too_long = Request::post("/v1/customers/c1/redemptions")
        .header(header::AUTHORIZATION, OPERATOR)
        .header(header::CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", "k".repeat(129))
        .body(Body::from(body))
        .expect("a request");
    problem(app(), too_long, 400, "idempotency-key-required").await;
    // The built-in programme has no [points]: refused before the database is asked.
    let keyed = Request::post("/v1/customers/c1/redemptions")
        .header(header::AUTHORIZATION, OPERATOR)
        .header(header::CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", "k-1")
        .body(Body::from(body))
        .expect("a request");
    let (_, p) = problem(app(), keyed, 409, "points-disabled").await;
    assert_eq!(p["reason"], "points_disabled", "{p}");
    let cancel = Request::post("/v1/customers/c1/redemptions/k-1/cancel")
        .header(header::AUTHORIZATION, OPERATOR)
        .body(Body::empty())
        .expect("a request");
    problem(app(), cancel, 409, "points-disabled").await;
    problem(
        app(),
        get("/v1/customers/c1/points"),
        404,
        "points-disabled",
    )
    .await;
    problem(
        app(),
        get("/v1/programme/liability"),
        404,
        "points-disabled",
    )
    .await;
}
