//! The admin API in-process (`tower::ServiceExt::oneshot` on the real router): every error is
//! an RFC 9457 problem, axum's own rejections included, and a 401 carries
//! `WWW-Authenticate: Bearer realm="kizuna"`. The database is a lazy pool pointing at a closed
//! port: no request here reaches it, except the one that checks the 503.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use kizuna::http::problem::BEARER_CHALLENGE;
use kizuna::http::testing::call;
use secrecy::SecretString;

use super::{AppState, openapi_document, router};
use crate::config::Settings;
use crate::metrics::Metrics;

const TOKEN: &str = "s3cret";

fn app(admin_token: Option<&str>) -> Router {
    let settings = Settings::load(None).expect("defaults");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy("postgres://kizuna:kizuna@127.0.0.1:1/none")
        .expect("a lazy pool");
    router(AppState {
        pool,
        metrics: Metrics::new(),
        admin_token: admin_token.map(|t| SecretString::from(t.to_owned())),
        delivery: settings.delivery,
        wake: Arc::default(),
    })
}

fn admin(method: Method, path: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
}

async fn problem(req: Request<Body>, token: Option<&str>, status: u16, slug: &str) -> HeaderMap {
    kizuna::http::testing::problem(app(token), req, status, slug)
        .await
        .0
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_a_401_with_its_challenge() {
    for auth in [None, Some("Bearer wrong")] {
        let mut req = Request::get("/v1/webhooks/subscriptions");
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let req = req.body(Body::empty()).expect("a request");
        let headers = problem(req, Some(TOKEN), 401, "unauthorized").await;
        assert_eq!(
            headers
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok()),
            Some(BEARER_CHALLENGE)
        );
    }
    let req = admin(Method::GET, "/v1/webhooks/subscriptions")
        .body(Body::empty())
        .expect("a request");
    problem(req, None, 403, "admin-disabled").await;
}

#[tokio::test]
async fn framework_rejections_are_problems() {
    let json = |body: &'static str| {
        admin(Method::POST, "/v1/webhooks/subscriptions")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .expect("a request")
    };
    problem(json("{not json"), Some(TOKEN), 400, "malformed-request").await;
    problem(json(r#"{"url": 5}"#), Some(TOKEN), 422, "invalid-request").await;
    let req = admin(Method::POST, "/v1/webhooks/subscriptions")
        .body(Body::from("{}"))
        .expect("a request");
    problem(req, Some(TOKEN), 415, "unsupported-media-type").await;
    let id = uuid::Uuid::new_v4();
    let req = admin(
        Method::GET,
        &format!("/v1/webhooks/subscriptions/{id}/attempts?limit=many"),
    )
    .body(Body::empty())
    .expect("a request");
    problem(req, Some(TOKEN), 400, "malformed-request").await;
    let req = admin(Method::GET, "/v1/nowhere")
        .body(Body::empty())
        .expect("a request");
    problem(req, Some(TOKEN), 404, "not-found").await;
    let req = admin(Method::PUT, "/v1/webhooks/subscriptions")
        .body(Body::empty())
        .expect("a request");
    let headers = problem(req, Some(TOKEN), 405, "method-not-allowed").await;
    assert!(
        headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("POST") && a.contains("GET")),
        "{headers:?}"
    );
}

#[tokio::test]
async fn an_unreachable_database_is_a_503_problem() {
    let req = admin(Method::GET, "/v1/webhooks/subscriptions")
        .body(Body::empty())
        .expect("a request");
    problem(req, Some(TOKEN), 503, "unavailable").await;
}

#[tokio::test]
async fn the_served_openapi_document_is_the_generated_one() {
    let req = Request::get("/v1/openapi.json")
        .body(Body::empty())
        .expect("a request");
    let (status, _, body) = call(app(None), req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        String::from_utf8(body).expect("UTF-8"),
        kizuna::http::openapi::render(&openapi_document())
    );
}
