//! A 2xx only after the broker acknowledged: the answer names where each event is, and without
//! a broker the answer is 503, never 2xx.

use std::time::Duration;

use anyhow::Context;
use kizuna_e2e::{Broker, wait_for};
use serde_json::json;

use crate::helpers::*;

kizuna_e2e::on_each_broker! {
    a_2xx_is_only_sent_after_the_broker_acknowledged,
}

async fn a_2xx_is_only_sent_after_the_broker_acknowledged(broker: Broker) -> anyhow::Result<()> {
    let (env, mapping) = sample_env(broker).await?;

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
    let events = a.body["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 2, "where each event is: {}", a.body);
    for e in &events {
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
    gw.assert_requests(&[
        ("unavailable", "shopify", 1.0),
        ("accepted", "shopify", 0.0),
    ])
    .await?;
    gw.stop().await?;
    env.cleanup().await
}
