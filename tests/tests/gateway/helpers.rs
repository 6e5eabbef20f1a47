//! What the gateway scenarios share: the platforms' documented samples and their signatures,
//! an environment set up for them, and the gateway running in-process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use kizuna_e2e::process::metric_sum;
use kizuna_e2e::{Broker, TestEnv, wait_for};
use kizuna_gateway::signature;
use kizuna_gateway::startup::Gateway;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const ORDERS_CREATE: &str = include_str!("../../fixtures/shopify/orders-create.json");
pub const ORDERS_UPDATED_REFUND: &str =
    include_str!("../../fixtures/shopify/orders-updated-partial-refund.json");
pub const TICKET_CREATED: &str = include_str!("../../fixtures/zendesk/ticket-created.json");
pub const SATISFACTION: &str = include_str!("../../fixtures/zendesk/satisfaction-rated.json");
pub const TYPEFORM: &str = include_str!("../../fixtures/typeform/example-payload.json");
pub const SIGNATURES: &str = include_str!("../../fixtures/signatures.txt");
pub const PROGRAMME: &str = include_str!("../../../services/loyalty-engine/config/programme.toml");

/// The documented Typeform example has no NPS question; this test's mapping names its scale
/// questions as scores (opinion scale → NPS, rating → CSAT).
pub const TEST_MAPPING: &str = "[[typeform.scores]]\nref = \"readable_ref_opinion_scale\"\nkind = \"nps\"\n\n[[typeform.scores]]\nref = \"readable_ref_rating\"\nkind = \"csat\"\n";

pub const KIZUNA_TOKEN: &str = "kizuna-test-token";
pub const WAIT: Duration = Duration::from_secs(60);

/// The sample order's customer, and its total in cents.
pub const SHOPIFY_CUSTOMER: &str = "115310627314723954";
pub const ORDER_TOTAL: i64 = 40_495;
pub const REFUNDED: i64 = 8_999;

pub fn signatures() -> HashMap<&'static str, &'static str> {
    SIGNATURES
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect()
}

pub fn secret(name: &str) -> String {
    signatures()[name].to_owned()
}

/// A test environment whose programme is in USD (the samples' currency) and whose ledger keeps
/// everything (the samples are dated 2018–2025), with the test mapping.
pub async fn sample_env(broker: Broker) -> anyhow::Result<(TestEnv, PathBuf)> {
    let mut env = TestEnv::on(broker).await?;
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

pub fn gateway_settings(mapping: &Path) -> anyhow::Result<kizuna_gateway::config::Settings> {
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
pub struct Gw {
    port: u16,
    stop: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
    pub http: reqwest::Client,
}

/// An answer: status, headers, JSON body (Null when not JSON), and how long it took.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub took: Duration,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn is_problem(&self) -> bool {
        self.header("content-type") == Some("application/problem+json")
            && self.body["status"] == json!(self.status)
            && self.body["type"].is_string()
            && self.body["title"].is_string()
            && self.body["detail"].is_string()
    }
}

impl Gw {
    pub async fn start(
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

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn post(
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

    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let resp = self.http.get(self.url(path)).send().await?;
        Ok((resp.status().as_u16(), resp.text().await?))
    }

    /// POSTs a Shopify delivery signed as Shopify signs it (with the fixture secret).
    pub async fn shopify(
        &self,
        topic: &str,
        body: &[u8],
        webhook_id: &str,
    ) -> anyhow::Result<Answer> {
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
    pub async fn zendesk(&self, body: &[u8], extra: &[(&str, String)]) -> anyhow::Result<Answer> {
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
    pub async fn typeform(&self) -> anyhow::Result<Answer> {
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

    /// Asserts the gateway's requests by (outcome, source): `kizuna_gateway_requests_total`.
    pub async fn assert_requests(&self, expected: &[(&str, &str, f64)]) -> anyhow::Result<()> {
        self.assert_counts("kizuna_gateway_requests_total", "outcome", expected)
            .await
    }

    /// Asserts the signatures refused by (reason, source).
    pub async fn assert_rejections(&self, expected: &[(&str, &str, f64)]) -> anyhow::Result<()> {
        let name = "kizuna_gateway_signature_rejections_total";
        self.assert_counts(name, "reason", expected).await
    }

    /// Asserts the counter `name` by (`label`, source): each `(value, source, count)`.
    async fn assert_counts(
        &self,
        name: &str,
        label: &str,
        expected: &[(&str, &str, f64)],
    ) -> anyhow::Result<()> {
        let (_, text) = self.get("/metrics").await?;
        for (value, source, count) in expected {
            let filter = [(label, *value), ("source", *source)];
            let got = metric_sum(&text, name, &filter);
            assert_eq!(
                got, *count,
                "{name}{{{label}=\"{value}\",source=\"{source}\"}}"
            );
        }
        Ok(())
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .context("the gateway did not stop within 30 s")??
    }
}

pub fn accepted(a: &Answer, n: usize) -> anyhow::Result<()> {
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
pub async fn inputs_empty(env: &TestEnv) -> anyhow::Result<()> {
    for topic in env.settings.kafka.topics.inputs() {
        let got = wait_for(&format!("the watermarks of {topic}"), WAIT, || async {
            Ok(Some(env.reader(topic)?.read_to_end(WAIT).await?.len()))
        })
        .await?;
        anyhow::ensure!(got == 0, "{topic} holds {got} messages");
    }
    Ok(())
}
