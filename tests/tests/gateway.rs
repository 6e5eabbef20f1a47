//! Webhooks in: the gateway (`kizuna-gateway`) started in-process against the real broker, and
//! the real engine against the real PostgreSQL, each test on fresh topics and a fresh database.
//! The platforms' documented samples (tests/fixtures/, sources in its README) are posted signed
//! as the platforms sign them, and the engine's customer state is read back through its API.
//!
//! Run: `cargo test -p kizuna-e2e --test gateway` with the stack of `deploy/local/up.sh`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use kizuna_e2e::{TestEnv, wait_for};
use kizuna_gateway::signature;
use kizuna_gateway::startup::Gateway;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const ORDERS_CREATE: &str = include_str!("../fixtures/shopify/orders-create.json");
const ORDERS_UPDATED_REFUND: &str =
    include_str!("../fixtures/shopify/orders-updated-partial-refund.json");
const TICKET_CREATED: &str = include_str!("../fixtures/zendesk/ticket-created.json");
const SATISFACTION: &str = include_str!("../fixtures/zendesk/satisfaction-rated.json");
const TYPEFORM: &str = include_str!("../fixtures/typeform/example-payload.json");
const SIGNATURES: &str = include_str!("../fixtures/signatures.txt");
const PROGRAMME: &str = include_str!("../../services/loyalty-engine/config/programme.toml");

/// The documented Typeform example has no NPS question; this test's mapping names its scale
/// questions as scores (opinion scale → NPS, rating → CSAT).
const TEST_MAPPING: &str = "[[typeform.scores]]\nref = \"readable_ref_opinion_scale\"\nkind = \"nps\"\n\n[[typeform.scores]]\nref = \"readable_ref_rating\"\nkind = \"csat\"\n";

const KIZUNA_TOKEN: &str = "kizuna-test-token";
const WAIT: Duration = Duration::from_secs(60);

/// The sample order's customer, and its total in cents.
const SHOPIFY_CUSTOMER: &str = "115310627314723954";
const ORDER_TOTAL: i64 = 40_495;
const REFUNDED: i64 = 8_999;

fn signatures() -> HashMap<&'static str, &'static str> {
    SIGNATURES
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect()
}

fn secret(name: &str) -> String {
    signatures()[name].to_owned()
}

/// A test environment whose programme is in USD (the samples' currency) and whose ledger keeps
/// everything (the samples are dated 2018–2025), with the test mapping.
async fn sample_env() -> anyhow::Result<(TestEnv, PathBuf)> {
    let mut env = TestEnv::new().await?;
    let dir = std::env::temp_dir().join(format!("kizuna-gateway-test-{}", env.id));
    std::fs::create_dir_all(&dir)?;
    let programme = dir.join("programme.toml");
    // The samples' currency; and tickets remembered for ten years, since the Zendesk sample
    // is from January 2025 (the built-in programme forgets tickets after 400 days).
    std::fs::write(
        &programme,
        PROGRAMME
            .replacen("currency = \"JPY\"", "currency = \"USD\"", 1)
            .replacen("ticket_days = 400", "ticket_days = 3650", 1),
    )?;
    let mapping = dir.join("mapping.toml");
    std::fs::write(&mapping, TEST_MAPPING)?;
    env.settings.programme_file = Some(programme);
    env.settings.ledger.retention_days = 0;
    Ok((env, mapping))
}

fn gateway_settings(mapping: &Path) -> anyhow::Result<kizuna_gateway::config::Settings> {
    use secrecy::SecretString;
    let mut s = kizuna_gateway::config::Settings::defaults()?;
    s.http.bind = "127.0.0.1:0".parse()?;
    s.mapping_file = Some(mapping.to_path_buf());
    s.sources.shopify.secret = Some(SecretString::from(secret("shopify.secret")));
    s.sources.zendesk.secret = Some(SecretString::from(secret("zendesk.secret")));
    s.sources.typeform.secret = Some(SecretString::from(secret("typeform.secret")));
    s.sources.kizuna.token = Some(SecretString::from(KIZUNA_TOKEN));
    Ok(s)
}

/// A gateway running in-process.
struct Gw {
    port: u16,
    stop: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
    http: reqwest::Client,
}

/// An answer: status, headers, JSON body (Null when not JSON), and how long it took.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
    took: Duration,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn is_problem(&self) -> bool {
        self.header("content-type") == Some("application/problem+json")
            && self.body["status"] == json!(self.status)
            && self.body["type"].is_string()
            && self.body["title"].is_string()
            && self.body["detail"].is_string()
    }
}

impl Gw {
    async fn start(
        settings: kizuna_gateway::config::Settings,
        engine: kizuna::config::Settings,
    ) -> anyhow::Result<Self> {
        let gateway = Gateway::build(settings, engine).await?;
        let port = gateway.port();
        let stop = gateway.stop_token();
        let handle = tokio::spawn(gateway.run_until_stopped());
        Ok(Self {
            port,
            stop,
            handle,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn post(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> anyhow::Result<Answer> {
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let started = Instant::now();
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await?;
        Ok(Answer {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            took: started.elapsed(),
        })
    }

    async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let resp = self.http.get(self.url(path)).send().await?;
        Ok((resp.status().as_u16(), resp.text().await?))
    }

    /// POSTs a Shopify delivery signed as Shopify signs it (with the fixture secret).
    async fn shopify(&self, topic: &str, body: &[u8], webhook_id: &str) -> anyhow::Result<Answer> {
        let hmac = signature::sign_shopify(secret("shopify.secret").as_bytes(), body);
        self.post(
            "/webhooks/shopify",
            &[
                ("X-Shopify-Topic", topic.to_owned()),
                ("X-Shopify-Hmac-Sha256", hmac),
                ("X-Shopify-Webhook-Id", webhook_id.to_owned()),
                (
                    "X-Shopify-Shop-Domain",
                    "johns-apparel.myshopify.com".to_owned(),
                ),
                ("X-Shopify-API-Version", "2026-01".to_owned()),
            ],
            body,
        )
        .await
    }

    /// POSTs a Zendesk delivery signed now, as Zendesk signs it.
    async fn zendesk(&self, body: &[u8], extra: &[(&str, String)]) -> anyhow::Result<Answer> {
        let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let sig = signature::sign_zendesk(secret("zendesk.secret").as_bytes(), &ts, body);
        let mut headers = vec![
            ("X-Zendesk-Webhook-Signature", sig),
            ("X-Zendesk-Webhook-Signature-Timestamp", ts),
            (
                "X-Zendesk-Webhook-Id",
                "01GK8E6BKWMJZD2T8Y5AXJQMG5".to_owned(),
            ),
        ];
        headers.extend(extra.iter().cloned());
        self.post("/webhooks/zendesk", &headers, body).await
    }

    /// POSTs the Typeform example with the OpenSSL-computed signature of tests/fixtures.
    async fn typeform(&self) -> anyhow::Result<Answer> {
        self.post(
            "/webhooks/typeform",
            &[(
                "Typeform-Signature",
                signatures()["typeform/example-payload.json"].to_owned(),
            )],
            TYPEFORM.as_bytes(),
        )
        .await
    }

    async fn metric(&self, series: &str) -> anyhow::Result<f64> {
        let (_, text) = self.get("/metrics").await?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(series).map(str::trim))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0))
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .context("the gateway did not stop within 30 s")??
    }
}

fn accepted(a: &Answer, n: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.status == 200,
        "expected 200, got {}: {}",
        a.status,
        a.body
    );
    anyhow::ensure!(
        a.body["accepted"] == json!(n),
        "expected {n} events: {}",
        a.body
    );
    Ok(())
}

/// Every input topic is still empty. (Watermarks of a topic created a moment ago can be
/// refused with NotLeaderForPartition for a while: retried until the broker answers.)
async fn inputs_empty(env: &TestEnv) -> anyhow::Result<()> {
    for topic in env.settings.kafka.topics.inputs() {
        let got = wait_for(&format!("the watermarks of {topic}"), WAIT, || async {
            Ok(Some(env.reader(topic)?.read_to_end(WAIT).await?.len()))
        })
        .await?;
        anyhow::ensure!(got == 0, "{topic} holds {got} messages");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_samples_become_the_right_state() -> anyhow::Result<()> {
    let (env, mapping) = sample_env().await?;
    let app = env.start().await?;
    let gw = Gw::start(gateway_settings(&mapping)?, env.settings.clone()).await?;
    let topics = env.settings.kafka.topics.clone();

    // Shopify: the documented orders/create sample is a purchase of $404.95.
    let a = gw
        .shopify(
            "orders/create",
            ORDERS_CREATE.as_bytes(),
            "b39d2c2f-2871-4f2e-9f8c-8d2e3f4a5b6c",
        )
        .await?;
    accepted(&a, 1)?;
    assert_eq!(a.body["events"][0]["topic"], json!(topics.purchases));
    let order_event = a.body["events"][0]["eventId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(order_event.starts_with("shopify-"), "{order_event}");
    let state = app
        .wait_for_customer(SHOPIFY_CUSTOMER, "the sample order applied", |s| {
            s["metrics"]["lifetime_spend_minor"] == json!(ORDER_TOTAL)
        })
        .await?;
    assert_eq!(state["currency"], json!("USD"));
    assert_eq!(state["metrics"]["orders"], json!(1.0));
    assert_eq!(state["metrics"]["top_channel"], json!("web"));

    // A partial refund of one line ($89.99) arrives with the order's next update.
    let a = gw
        .shopify(
            "orders/updated",
            ORDERS_UPDATED_REFUND.as_bytes(),
            "0b5b4cbd-7c5c-4e0b-9d11-1a1b0f0d7a01",
        )
        .await?;
    accepted(&a, 1)?;
    let state = app
        .wait_for_customer(SHOPIFY_CUSTOMER, "the partial refund applied", |s| {
            s["metrics"]["lifetime_spend_minor"] == json!(ORDER_TOTAL - REFUNDED)
        })
        .await?;
    let orders = state["metrics"]["orders"].as_f64().unwrap_or_default();
    let expected = 1.0 - REFUNDED as f64 / ORDER_TOTAL as f64;
    assert!(
        (orders - expected).abs() < 1e-6,
        "a partial refund takes away its share of the order: {orders}"
    );

    // Zendesk: the documented ticket.created sample opens a ticket (open since January 2025,
    // so it is an aging open ticket, a bad experience).
    let a = gw.zendesk(TICKET_CREATED.as_bytes(), &[]).await?;
    accepted(&a, 1)?;
    assert_eq!(a.body["events"][0]["topic"], json!(topics.support_tickets));
    let state = app
        .wait_for_customer("8447388090494", "the sample ticket opened", |s| {
            s["metrics"]["open_tickets"] == json!(1)
        })
        .await?;
    assert_eq!(
        state["metrics"]["bad_experience_kinds"],
        json!(["aging_open_ticket"])
    );

    // A "bad" satisfaction rating through the trigger template: the ticket is solved, and the
    // low CSAT is now the bad experience.
    let a = gw
        .zendesk(
            SATISFACTION.as_bytes(),
            &[("X-Zendesk-Webhook-Invocation-Id", "8350205482".to_owned())],
        )
        .await?;
    accepted(&a, 1)?;
    let state = app
        .wait_for_customer("8447388090494", "the bad rating applied", |s| {
            s["metrics"]["open_tickets"] == json!(0)
        })
        .await?;
    assert_eq!(
        state["metrics"]["bad_experience_kinds"],
        json!(["low_csat"])
    );
    assert_eq!(state["metrics"]["bad_experiences"], json!(1));

    // Typeform: the documented example's opinion scale (2) as NPS, its rating (3) as CSAT.
    let a = gw.typeform().await?;
    accepted(&a, 2)?;
    let state = app
        .wait_for_customer("abc123456", "the survey answers applied", |s| {
            s["metrics"]["nps"] == json!(2) && s["metrics"]["csat_latest"] == json!(3)
        })
        .await?;
    assert_eq!(state["metrics"]["nps_category"], json!("detractor"));

    assert_eq!(
        gw.metric(r#"kizuna_gateway_requests_total{outcome="accepted",source="shopify"}"#)
            .await?,
        2.0
    );
    assert_eq!(
        gw.metric(r#"kizuna_gateway_requests_total{outcome="accepted",source="zendesk"}"#)
            .await?,
        2.0
    );
    assert_eq!(
        gw.metric(r#"kizuna_gateway_requests_total{outcome="accepted",source="typeform"}"#)
            .await?,
        1.0
    );
    gw.stop().await?;
    app.stop().await?;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_signatures_get_401_and_produce_nothing() -> anyhow::Result<()> {
    let (env, mapping) = sample_env().await?;
    let gw = Gw::start(gateway_settings(&mapping)?, env.settings.clone()).await?;
    let body = ORDERS_CREATE.as_bytes();

    // Signed with another secret.
    let forged = signature::sign_shopify(b"not-the-secret", body);
    let a = gw
        .post(
            "/webhooks/shopify",
            &[
                ("X-Shopify-Topic", "orders/create".to_owned()),
                ("X-Shopify-Hmac-Sha256", forged),
                ("X-Shopify-Webhook-Id", "forged-1".to_owned()),
            ],
            body,
        )
        .await?;
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(a.is_problem(), "{:?}", a);
    assert!(
        a.header("www-authenticate")
            .is_some_and(|c| c.contains("X-Shopify-Hmac-Sha256"))
    );
    assert_eq!(
        (a.body["field"].as_str(), a.body["reason"].as_str()),
        (Some("X-Shopify-Hmac-Sha256"), Some("mismatch"))
    );

    // The genuine signature over a body changed by one field.
    let genuine = signatures()["shopify/orders-create.json"].to_owned();
    let tampered = ORDERS_CREATE.replacen("\"404.95\"", "\"4049.50\"", 1);
    let a = gw
        .post(
            "/webhooks/shopify",
            &[
                ("X-Shopify-Topic", "orders/create".to_owned()),
                ("X-Shopify-Hmac-Sha256", genuine),
                ("X-Shopify-Webhook-Id", "forged-2".to_owned()),
            ],
            tampered.as_bytes(),
        )
        .await?;
    assert_eq!(a.status, 401, "{}", a.body);

    // No signature at all.
    let a = gw
        .post(
            "/webhooks/shopify",
            &[("X-Shopify-Topic", "orders/create".to_owned())],
            body,
        )
        .await?;
    assert_eq!(
        (a.status, a.body["reason"].as_str()),
        (401, Some("missing"))
    );

    // Zendesk: a genuine signature, ten minutes old (a replay).
    let old = (chrono::Utc::now() - chrono::Duration::minutes(10))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let sig = signature::sign_zendesk(
        secret("zendesk.secret").as_bytes(),
        &old,
        TICKET_CREATED.as_bytes(),
    );
    let a = gw
        .post(
            "/webhooks/zendesk",
            &[
                ("X-Zendesk-Webhook-Signature", sig),
                ("X-Zendesk-Webhook-Signature-Timestamp", old),
            ],
            TICKET_CREATED.as_bytes(),
        )
        .await?;
    assert_eq!(
        (a.status, a.body["reason"].as_str()),
        (401, Some("stale")),
        "{}",
        a.body
    );
    assert!(a.is_problem());

    // Typeform: the signature without its sha256= prefix.
    let bare = signatures()["typeform/example-payload.json"]
        .trim_start_matches("sha256=")
        .to_owned();
    let a = gw
        .post(
            "/webhooks/typeform",
            &[("Typeform-Signature", bare)],
            TYPEFORM.as_bytes(),
        )
        .await?;
    assert_eq!(
        (a.status, a.body["reason"].as_str()),
        (401, Some("malformed"))
    );

    // Kizuna's own endpoint: a wrong bearer token.
    let line = json!({"purchase": {"eventId": "e1", "customerId": "c1", "occurredAt": chrono::Utc::now().to_rfc3339(),
        "orderId": "o1", "kind": "PURCHASE_KIND_PURCHASE", "amountMinor": "100", "currency": "USD"}});
    let a = gw
        .post(
            "/v1/events",
            &[("Authorization", "Bearer guess".to_owned())],
            line.to_string().as_bytes(),
        )
        .await?;
    assert_eq!(a.status, 401);
    assert!(
        a.header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer"))
    );

    // Counted, and nothing produced.
    assert_eq!(
        gw.metric(r#"kizuna_gateway_requests_total{outcome="unauthorized",source="shopify"}"#)
            .await?,
        3.0
    );
    assert_eq!(
        gw.metric(
            r#"kizuna_gateway_signature_rejections_total{reason="mismatch",source="shopify"}"#
        )
        .await?,
        2.0
    );
    assert_eq!(
        gw.metric(r#"kizuna_gateway_signature_rejections_total{reason="stale",source="zendesk"}"#)
            .await?,
        1.0
    );
    assert_eq!(
        gw.metric(r#"kizuna_gateway_requests_total{outcome="unauthorized",source="kizuna"}"#)
            .await?,
        1.0
    );
    inputs_empty(&env).await?;
    gw.stop().await?;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_delivery_counts_once() -> anyhow::Result<()> {
    let (env, mapping) = sample_env().await?;
    let app = env.start().await?;
    let gw = Gw::start(gateway_settings(&mapping)?, env.settings.clone()).await?;
    let topics = env.settings.kafka.topics.clone();

    // Shopify retries a delivery with the same X-Shopify-Webhook-Id: the same event id.
    let first = gw
        .shopify("orders/create", ORDERS_CREATE.as_bytes(), "delivery-1")
        .await?;
    let again = gw
        .shopify("orders/create", ORDERS_CREATE.as_bytes(), "delivery-1")
        .await?;
    accepted(&first, 1)?;
    accepted(&again, 1)?;
    assert_eq!(
        first.body["events"][0]["eventId"],
        again.body["events"][0]["eventId"]
    );
    // The same refund seen in two different order updates (two deliveries): keyed by refund id.
    let r1 = gw
        .shopify(
            "orders/updated",
            ORDERS_UPDATED_REFUND.as_bytes(),
            "update-1",
        )
        .await?;
    let r2 = gw
        .shopify(
            "orders/updated",
            ORDERS_UPDATED_REFUND.as_bytes(),
            "update-2",
        )
        .await?;
    accepted(&r1, 1)?;
    accepted(&r2, 1)?;
    assert_eq!(
        r1.body["events"][0]["eventId"],
        r2.body["events"][0]["eventId"]
    );
    // A caller's own Idempotency-Key wins over the platform's id.
    let k1 = gw
        .post(
            "/webhooks/typeform",
            &[
                (
                    "Typeform-Signature",
                    signatures()["typeform/example-payload.json"].to_owned(),
                ),
                ("Idempotency-Key", "survey-resend-7".to_owned()),
            ],
            TYPEFORM.as_bytes(),
        )
        .await?;
    let k2 = gw.typeform().await?;
    let k3 = gw.typeform().await?;
    accepted(&k1, 2)?;
    accepted(&k2, 2)?;
    let ids = |a: &Answer| -> Vec<Value> {
        a.body["events"]
            .as_array()
            .map(|e| e.iter().map(|x| x["eventId"].clone()).collect())
            .unwrap_or_default()
    };
    assert_eq!(
        ids(&k2),
        ids(&k3),
        "a resent Typeform delivery (same event_id)"
    );
    assert_ne!(ids(&k1), ids(&k2), "another key, other ids");

    // The engine sees every copy and applies each event once.
    let engine_metric = |name: String| {
        let app = &app;
        async move {
            let text = app.get_text("/metrics").await?;
            Ok::<f64, anyhow::Error>(
                text.lines()
                    .find_map(|l| l.strip_prefix(name.as_str()).map(str::trim))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0),
            )
        }
    };
    let purchases_dup = format!(
        r#"kizuna_events_consumed_total{{outcome="duplicate",topic="{}"}}"#,
        topics.purchases
    );
    let surveys_dup = format!(
        r#"kizuna_events_consumed_total{{outcome="duplicate",topic="{}"}}"#,
        topics.surveys
    );
    wait_for("the engine to drop the copies", WAIT, || async {
        let p = engine_metric(purchases_dup.clone()).await?;
        let s = engine_metric(surveys_dup.clone()).await?;
        Ok((p >= 2.0 && s >= 2.0).then_some((p, s)))
    })
    .await?;
    assert_eq!(
        engine_metric(purchases_dup.clone()).await?,
        2.0,
        "one resent order, one resent refund"
    );
    assert_eq!(
        engine_metric(surveys_dup.clone()).await?,
        2.0,
        "the two answers of the resent response"
    );
    let state = app
        .wait_for_customer(SHOPIFY_CUSTOMER, "the order and the refund applied", |s| {
            s["metrics"]["lifetime_spend_minor"] == json!(ORDER_TOTAL - REFUNDED)
        })
        .await?;
    assert!(
        state["metrics"]["orders"]
            .as_f64()
            .is_some_and(|o| o < 1.0 && o > 0.7)
    );
    let pool = env.pool().await?;
    let (rows,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM event_ledger WHERE customer_id = $1")
            .bind(SHOPIFY_CUSTOMER)
            .fetch_one(&pool)
            .await?;
    assert_eq!(rows, 2, "one order and one refund in the ledger");
    pool.close().await;
    gw.stop().await?;
    app.stop().await?;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_is_only_sent_after_the_broker_acknowledged() -> anyhow::Result<()> {
    let (env, mapping) = sample_env().await?;

    // With the real broker: the answer names where the broker put each event, and it is there.
    let gw = Gw::start(gateway_settings(&mapping)?, env.settings.clone()).await?;
    let (status, _) = gw.get("/readyz").await?;
    assert_eq!(status, 200);
    let now = chrono::Utc::now().to_rfc3339();
    let lines = [
        json!({"purchase": {"eventId": "gw-evt-1", "customerId": "cust-gw-1", "occurredAt": now, "orderId": "o1",
            "kind": "PURCHASE_KIND_PURCHASE", "amountMinor": "1999", "currency": "USD"}}),
        json!({"surveyResponse": {"eventId": "gw-evt-2", "customerId": "cust-gw-1", "occurredAt": now, "surveyId": "s1",
            "kind": "SURVEY_KIND_NPS", "score": 10}}),
    ]
    .map(|l| l.to_string())
    .join("\n");
    let a = gw
        .post(
            "/v1/events",
            &[("Authorization", format!("Bearer {KIZUNA_TOKEN}"))],
            lines.as_bytes(),
        )
        .await?;
    accepted(&a, 2)?;
    for e in a.body["events"].as_array().into_iter().flatten() {
        let topic = e["topic"].as_str().unwrap_or_default();
        let (partition, offset) = (
            e["partition"].as_i64().unwrap_or(-1),
            e["offset"].as_i64().unwrap_or(-1),
        );
        let got = wait_for(&format!("reading {topic}"), WAIT, || async {
            Ok(Some(env.reader(topic)?.read_to_end(WAIT).await?))
        })
        .await?;
        let m = got
            .iter()
            .find(|m| i64::from(m.partition) == partition && m.offset == offset)
            .with_context(|| format!("no message at {topic}/{partition}@{offset}"))?;
        assert_eq!(m.key.as_deref(), Some("cust-gw-1"));
        assert_eq!(m.json()?["eventId"], e["eventId"]);
        assert_eq!(m.header("kizuna-schema"), Some("kizuna.v1"));
    }
    gw.stop().await?;

    // With the broker address pointing nowhere: no acknowledgement, so 503, never 2xx.
    let mut nowhere = env.settings.clone();
    nowhere.kafka.brokers = "127.0.0.1:1".into();
    let mut settings = gateway_settings(&mapping)?;
    settings.kafka.delivery_timeout_ms = 1_500;
    settings.kafka.readiness_timeout_ms = 500;
    let gw = Gw::start(settings, nowhere).await?;
    let a = gw
        .shopify(
            "orders/create",
            ORDERS_CREATE.as_bytes(),
            "unacknowledged-1",
        )
        .await?;
    assert_eq!(a.status, 503, "{}", a.body);
    assert!(a.is_problem(), "{a:?}");
    assert!(a.header("retry-after").is_some());
    assert!(
        a.took >= Duration::from_millis(1_400),
        "answered before the delivery timeout: {:?}",
        a.took
    );
    let (status, body) = gw.get("/readyz").await?;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        gw.metric(r#"kizuna_gateway_requests_total{outcome="unavailable",source="shopify"}"#)
            .await?,
        1.0
    );
    assert_eq!(
        gw.metric(r#"kizuna_gateway_requests_total{outcome="accepted",source="shopify"}"#)
            .await?,
        0.0
    );
    gw.stop().await?;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmappable_payloads_get_422_naming_the_field_and_limits_hold() -> anyhow::Result<()> {
    let (env, mapping) = sample_env().await?;
    let gw = Gw::start(gateway_settings(&mapping)?, env.settings.clone()).await?;
    let order: Value = serde_json::from_str(ORDERS_CREATE)?;

    // A guest checkout: no customer to key the event by.
    let mut guest = order.clone();
    guest["customer"] = Value::Null;
    let a = gw
        .shopify("orders/paid", guest.to_string().as_bytes(), "guest-1")
        .await?;
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(a.is_problem());
    assert_eq!(
        (a.body["field"].as_str(), a.body["reason"].as_str()),
        (Some("customer.id"), Some("missing_field"))
    );

    // An order in yen, while the programme is in dollars: the engine's own rule, named at its source.
    let mut yen = order.clone();
    yen["total_price_set"]["shop_money"]["currency_code"] = json!("JPY");
    yen["total_price_set"]["shop_money"]["amount"] = json!("404");
    let a = gw
        .shopify("orders/paid", yen.to_string().as_bytes(), "yen-1")
        .await?;
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(
        (a.body["field"].as_str(), a.body["reason"].as_str()),
        (
            Some("total_price_set.shop_money.currency_code"),
            Some("currency_mismatch")
        )
    );

    // refunds/create carries no customer id: refused, with the topic to use instead.
    let a = gw
        .shopify(
            "refunds/create",
            b"{\"id\": 890088186047892319, \"order_id\": 820982911946154508}",
            "refund-1",
        )
        .await?;
    assert_eq!(
        (a.status, a.body["field"].as_str()),
        (422, Some("X-Shopify-Topic"))
    );
    assert!(
        a.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("orders/updated"))
    );

    // JSON lines: one bad line refuses the whole request; the good line is not produced either.
    let good = json!({"purchase": {"eventId": "l1", "customerId": "c1", "occurredAt": chrono::Utc::now().to_rfc3339(),
        "orderId": "o1", "kind": "PURCHASE_KIND_PURCHASE", "amountMinor": "100", "currency": "USD"}});
    let bad = json!({"purchase": {"eventId": "l2", "customerId": "c1", "occurredAt": chrono::Utc::now().to_rfc3339(),
        "orderId": "o2", "kind": "PURCHASE_KIND_PURCHASE", "amountMinor": "-5", "currency": "USD"}});
    let a = gw
        .post(
            "/v1/events",
            &[("Authorization", format!("Bearer {KIZUNA_TOKEN}"))],
            format!("{good}\n{bad}\n").as_bytes(),
        )
        .await?;
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(a.body["line"], json!(2));
    assert_eq!(
        (a.body["field"].as_str(), a.body["reason"].as_str()),
        (Some("purchase.amountMinor"), Some("amount_out_of_range"))
    );

    // Not JSON at all.
    let a = gw.shopify("orders/paid", b"<order/>", "xml-1").await?;
    assert_eq!((a.status, a.body["field"].as_str()), (400, Some("body")));

    // A Zendesk event type that is not mapped is acknowledged and ignored.
    let comment: Value =
        serde_json::from_str(&TICKET_CREATED.replace("ticket.created", "ticket.comment_added"))?;
    let a = gw.zendesk(comment.to_string().as_bytes(), &[]).await?;
    assert_eq!(
        (a.status, a.body["accepted"].as_u64()),
        (200, Some(0)),
        "{}",
        a.body
    );
    assert!(a.body["ignored"].is_string());
    assert_eq!(
        gw.metric(r#"kizuna_gateway_requests_total{outcome="ignored",source="zendesk"}"#)
            .await?,
        1.0
    );
    assert_eq!(
        gw.metric(r#"kizuna_gateway_requests_total{outcome="unprocessable",source="shopify"}"#)
            .await?,
        3.0
    );
    gw.stop().await?;

    // Limits: a small body limit (413) and a rate of one request per second (429).
    let mut small = gateway_settings(&mapping)?;
    small.http.max_body_bytes = 1024;
    small.rate_limit.per_second = 1;
    small.rate_limit.burst = 1;
    let gw = Gw::start(small, env.settings.clone()).await?;
    let a = gw
        .shopify("orders/paid", ORDERS_CREATE.as_bytes(), "big-1")
        .await?;
    assert_eq!(a.status, 413, "{}", a.body);
    assert!(a.is_problem());
    let a = gw
        .shopify("orders/paid", ORDERS_CREATE.as_bytes(), "big-2")
        .await?;
    assert_eq!(a.status, 429, "{}", a.body);
    assert!(a.is_problem());
    assert!(
        a.header("retry-after")
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|s| s >= 1)
    );
    assert_eq!(
        gw.metric(r#"kizuna_gateway_requests_total{outcome="rate_limited",source="shopify"}"#)
            .await?,
        1.0
    );
    // Other sources have their own allowance.
    let a = gw.post("/v1/events", &[], b"{}").await?;
    assert_eq!(a.status, 401);
    let (status, body) = gw.get("/nowhere").await?;
    assert_eq!(status, 404, "{body}");
    gw.stop().await?;

    inputs_empty(&env).await?;
    env.cleanup().await
}
