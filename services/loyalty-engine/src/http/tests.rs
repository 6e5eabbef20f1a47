//! The HTTP layer in-process (`tower::ServiceExt::oneshot` on the real router): every error
//! is an RFC 9457 problem, axum's own rejections included, and the admin API challenges with
//! `WWW-Authenticate`. The database is a lazy pool pointing at a closed port, so a request
//! that reaches it gets the real "database unavailable" answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use secrecy::SecretString;

use super::problem::BEARER_CHALLENGE;
use super::testing::{call, problem};
use super::{AppState, router};
use crate::config::Settings;
use crate::engine::Core;
use crate::health::Health;
use crate::inputs::validate::Limits;
use crate::metrics::Metrics;

fn app(admin_token: Option<&str>) -> Router {
    let settings = Settings::load_from(None, Some(HashMap::new())).expect("default settings");
    let programme = Arc::new(settings.load_programme().expect("built-in programme"));
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy("postgres://kizuna:kizuna@127.0.0.1:1/none")
        .expect("a lazy pool");
    let core = Core::new(&settings, pool, programme.clone(), Metrics::new(), 6);
    let limits = Limits::new(&settings, &programme);
    let token = admin_token.map(|t| SecretString::from(t.to_owned()));
    router(AppState::new(core, Health::default(), limits, token), true)
}

fn post_json(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .expect("a request")
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("a request")
}

#[tokio::test]
async fn framework_rejections_are_problems() {
    // A body that is not JSON.
    let (_, p) = problem(
        app(None),
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
        app(None),
        post_json("/v1/evaluate", r#"{"customer_id": 5}"#),
        422,
        "invalid-request",
    )
    .await;
    // No JSON content type.
    let req = Request::post("/v1/evaluate")
        .body(Body::from("{}"))
        .expect("a request");
    problem(app(None), req, 415, "unsupported-media-type").await;
    // A query parameter of the wrong type.
    problem(
        app(None),
        get("/v1/customers/c1/timeline?limit=many"),
        400,
        "malformed-request",
    )
    .await;
    problem(
        app(None),
        get("/v1/customers/c1?as_of=yesterday"),
        400,
        "malformed-request",
    )
    .await;
    // No such route.
    let (_, p) = problem(app(None), get("/v1/nowhere"), 404, "not-found").await;
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
    let (headers, _) = problem(app(None), req, 405, "method-not-allowed").await;
    assert_eq!(
        headers.get(header::ALLOW).and_then(|v| v.to_str().ok()),
        Some("POST")
    );
}

#[tokio::test]
async fn the_admin_api_challenges_for_its_bearer_token() {
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic a2l6dW5hOmtpenVuYQ=="),
    ] {
        let mut req = Request::get("/v1/admin/recompute");
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let req = req.body(Body::empty()).expect("a request");
        let (headers, _) = problem(app(Some("s3cret")), req, 401, "unauthorized").await;
        assert_eq!(
            headers
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok()),
            Some(BEARER_CHALLENGE)
        );
    }
    // The token is checked before the body is read: a bad body without it is still a 401.
    let req = post_json("/v1/customers/c1/tier-override", "{not json");
    problem(app(Some("s3cret")), req, 401, "unauthorized").await;
    // With the token, the body's problem.
    let req = Request::post("/v1/customers/c1/tier-override")
        .header(header::AUTHORIZATION, "Bearer s3cret")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .expect("a request");
    problem(app(Some("s3cret")), req, 400, "malformed-request").await;
    // No token configured: the admin API is off.
    let req = Request::get("/v1/admin/recompute")
        .header(header::AUTHORIZATION, "Bearer s3cret")
        .body(Body::empty())
        .expect("a request");
    problem(app(None), req, 403, "admin-disabled").await;
    // And the right token passes.
    let req = Request::get("/v1/admin/recompute")
        .header(header::AUTHORIZATION, "Bearer s3cret")
        .body(Body::empty())
        .expect("a request");
    let (status, _, body) = call(app(Some("s3cret")), req).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn an_unreachable_database_is_a_503_problem() {
    let (_, p) = problem(app(None), get("/v1/customers/c1"), 503, "unavailable").await;
    assert_eq!(p["detail"], "the database is unavailable");
}

#[tokio::test]
async fn the_served_openapi_document_is_the_generated_one() {
    let (status, headers, body) = call(app(None), get("/v1/openapi.json")).await;
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
        app(None),
        post_json("/v1/customers/c1/redemptions", body),
        400,
        "idempotency-key-required",
    )
    .await;
    assert_eq!(p["field"], "Idempotency-Key", "{p}");
    let too_long = Request::post("/v1/customers/c1/redemptions")
        .header(header::CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", "k".repeat(129))
        .body(Body::from(body))
        .expect("a request");
    problem(app(None), too_long, 400, "idempotency-key-required").await;
    // The built-in programme has no [points]: refused before the database is asked.
    let keyed = Request::post("/v1/customers/c1/redemptions")
        .header(header::CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", "k-1")
        .body(Body::from(body))
        .expect("a request");
    let (_, p) = problem(app(None), keyed, 409, "points-disabled").await;
    assert_eq!(p["reason"], "points_disabled", "{p}");
    let cancel = Request::post("/v1/customers/c1/redemptions/k-1/cancel")
        .body(Body::empty())
        .expect("a request");
    problem(app(None), cancel, 409, "points-disabled").await;
    problem(
        app(None),
        get("/v1/customers/c1/points"),
        404,
        "points-disabled",
    )
    .await;
    problem(
        app(None),
        get("/v1/programme/liability"),
        404,
        "points-disabled",
    )
    .await;
}
