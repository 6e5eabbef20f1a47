//! The gateway's router in-process (`tower::ServiceExt::oneshot`): refusals and the
//! framework's own answers (unknown route, wrong method) are RFC 9457 problems, and a 401
//! carries `WWW-Authenticate`. The producer points at a closed port; no request here reaches it.

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use secrecy::SecretString;
use serde_json::Value;

use crate::config::Settings;
use crate::mapping::Mapping;
use crate::metrics::Metrics;
use crate::produce::Producer;
use crate::routes::{AppState, openapi_document, router};

fn app() -> Router {
    let mut settings = Settings::defaults().expect("defaults");
    settings.sources.kizuna.token = Some(SecretString::from("t0ken".to_owned()));
    let mut engine =
        kizuna::config::Settings::load_from(None, Some(HashMap::new())).expect("engine defaults");
    engine.kafka.brokers = "127.0.0.1:1".into();
    let programme = engine.load_programme().expect("built-in programme");
    let limits = kizuna::inputs::validate::Limits::new(&engine, &programme);
    let producer = Producer::new(&engine.kafka, &settings.kafka).expect("a producer");
    let state = AppState::new(
        settings,
        Mapping::load(None).expect("built-in mapping"),
        limits,
        engine.ingest.max_message_bytes,
        producer,
        Metrics::new(),
    );
    router(state)
}

async fn call(req: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
    kizuna::http::testing::call(app(), req).await
}

async fn problem(req: Request<Body>, status: u16, slug: &str) -> (HeaderMap, Value) {
    kizuna::http::testing::problem(app(), req, status, slug).await
}

#[tokio::test]
async fn the_framework_answers_problems_too() {
    let req = Request::get("/nowhere")
        .body(Body::empty())
        .expect("a request");
    problem(req, 404, "not-found").await;
    let req = Request::get("/webhooks/shopify")
        .body(Body::empty())
        .expect("a request");
    let (headers, _) = problem(req, 405, "method-not-allowed").await;
    assert_eq!(
        headers.get(header::ALLOW).and_then(|v| v.to_str().ok()),
        Some("POST")
    );
}

#[tokio::test]
async fn refusals_are_problems_and_a_401_challenges() {
    for auth in [None, Some("Bearer wrong")] {
        let mut req = Request::post("/v1/events").header(header::CONTENT_TYPE, "application/json");
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let req = req.body(Body::from("{not json")).expect("a request");
        let (headers, p) = problem(req, 401, "invalid-signature").await;
        assert_eq!(
            headers
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok()),
            Some("Bearer realm=\"kizuna-gateway\"")
        );
        assert_eq!(p["field"], "Authorization", "{p}");
    }
    // With the token, a body that is not an InputEvent.
    let req = Request::post("/v1/events")
        .header(header::AUTHORIZATION, "Bearer t0ken")
        .body(Body::from("{not json"))
        .expect("a request");
    problem(req, 422, "unmappable-payload").await;
    // A source without a secret is off.
    let req = Request::post("/webhooks/shopify")
        .body(Body::from("{}"))
        .expect("a request");
    problem(req, 404, "source-not-enabled").await;
}

#[tokio::test]
async fn the_served_openapi_document_is_the_generated_one() {
    let req = Request::get("/v1/openapi.json")
        .body(Body::empty())
        .expect("a request");
    let (status, _, body) = call(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        String::from_utf8(body).expect("UTF-8"),
        kizuna::http::openapi::render(&openapi_document())
    );
}
