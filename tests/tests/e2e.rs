//! End-to-end: the real engine against the real broker and the real PostgreSQL.
//! Run through `tests/run.sh`, which starts the stack and runs this suite on each broker.

use std::time::Duration;

use kizuna_e2e::{TestEnv, wait_for};
use kizuna_proto::v1;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn purchase(event_id: &str, customer: &str, order: &str, amount_minor: i64) -> serde_json::Value {
    json!({
        "eventId": event_id,
        "customerId": customer,
        "occurredAt": chrono::Utc::now().to_rfc3339(),
        "orderId": order,
        "kind": "PURCHASE_KIND_PURCHASE",
        "amountMinor": amount_minor.to_string(),
        "currency": "JPY",
        "lineItems": [{"sku": "tea-01", "category": "daily_goods", "quantity": 1, "unitPriceMinor": amount_minor.to_string()}],
        "channel": "web"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchases_carry_a_customer_across_a_tier_threshold() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let app = env.start().await?;
    let topics = env.settings.kafka.topics.clone();
    let producer = env.producer()?;

    // The built-in programme: silver needs 30,000 JPY over 2 orders.
    producer
        .send_json(
            &topics.purchases,
            "cust-a",
            &purchase("evt-a1", "cust-a", "ord-a1", 20_000),
        )
        .await?;
    producer
        .send_json(
            &topics.purchases,
            "cust-a",
            &purchase("evt-a2", "cust-a", "ord-a2", 15_000),
        )
        .await?;

    let state = app
        .wait_for_customer("cust-a", "both purchases applied", |s| {
            s["orders"] == json!(2.0)
        })
        .await?;
    assert_eq!(state["lifetime_spend_minor"], json!(35_000));
    assert_eq!(state["tier"], json!("silver"));
    assert_eq!(state["currency"], json!("JPY"));

    let (status, body) = app.get("/v1/customers/nobody").await?;
    assert_eq!(status, 404, "{body}");

    // The state row in PostgreSQL.
    let pool = env.pool().await?;
    let (tier, spend): (String, i64) = sqlx::query_as(
        "SELECT tier, lifetime_spend_minor FROM customers WHERE customer_id = 'cust-a'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!((tier.as_str(), spend), ("silver", 35_000));

    // Wait until the relay has published everything, then read the whole output topic.
    wait_for("the outbox to drain", WAIT, || async {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM outbox")
            .fetch_one(&pool)
            .await?;
        Ok((n == 0).then_some(()))
    })
    .await?;
    let out = env.reader(&topics.tier_changed)?.read_to_end(WAIT).await?;
    assert_eq!(out.len(), 1, "exactly one TierChanged: {out:?}");
    let msg = &out[0];
    assert_eq!(msg.key.as_deref(), Some("cust-a"));
    assert_eq!(msg.header("ce_specversion"), Some("1.0"));
    assert_eq!(msg.header("ce_type"), Some("kizuna.v1.TierChanged"));
    assert_eq!(msg.header("ce_source"), Some("kizuna/loyalty-engine"));
    assert_eq!(msg.header("content-type"), Some("application/json"));
    let ce_id = msg.header("ce_id").unwrap_or_default();
    assert!(
        uuid::Uuid::parse_str(ce_id).is_ok(),
        "ce_id {ce_id:?} is a UUID"
    );
    let ce_time = msg.header("ce_time").unwrap_or_default();
    assert!(
        chrono::DateTime::parse_from_rfc3339(ce_time).is_ok(),
        "ce_time {ce_time:?}"
    );

    // The payload is a TierChanged in the protobuf JSON mapping.
    let event: v1::TierChanged = serde_json::from_slice(&msg.payload)?;
    assert_eq!(event.customer_id, "cust-a");
    assert_eq!(event.previous_tier, "member");
    assert_eq!(event.new_tier, "silver");
    assert_eq!(event.kind(), v1::TierChangeKind::Upgrade);
    assert_eq!(event.caused_by, "evt-a2");
    assert!(
        event.reason.contains("35000 JPY"),
        "reason: {}",
        event.reason
    );
    let metrics = event.metrics.expect("a metrics snapshot");
    assert_eq!(metrics.lifetime_spend_minor, 35_000);
    assert_eq!(metrics.orders, 2.0);

    let text = app.get_text("/metrics").await?;
    assert!(
        text.contains("kizuna_tier_transitions_total{from=\"member\",to=\"silver\"} 1"),
        "{text}"
    );
    let (status, ready) = app.get("/readyz").await?;
    assert_eq!(status, 200, "{ready}");

    app.stop().await?;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_is_dead_lettered_and_the_next_one_is_processed() -> anyhow::Result<()>
{
    let env = TestEnv::new().await?;
    let app = env.start().await?;
    let topics = env.settings.kafka.topics.clone();
    let producer = env.producer()?;

    let garbage: &[u8] = b"{\"eventId\": \"evt-b1\", \"customerId\": \"cust-b\", \"amountMinor\": ";
    producer
        .send(
            &topics.purchases,
            Some("cust-b"),
            garbage,
            &[("content-type", b"application/json")],
        )
        .await?;
    producer
        .send_json(
            &topics.purchases,
            "cust-b",
            &purchase("evt-b2", "cust-b", "ord-b2", 1_200),
        )
        .await?;

    let state = app
        .wait_for_customer("cust-b", "the valid purchase behind the bad one", |s| {
            s["lifetime_spend_minor"] == json!(1_200)
        })
        .await?;
    assert_eq!(state["orders"], json!(1.0));

    let dlq = env
        .reader(&topics.dead_letter)?
        .collect_until(WAIT, |got| !got.is_empty())
        .await?;
    let letter = &dlq[0];
    assert_eq!(letter.payload, garbage, "the raw bytes, unchanged");
    assert_eq!(letter.header("kizuna-dlq-reason"), Some("unparseable"));
    assert_eq!(
        letter.header("kizuna-dlq-topic"),
        Some(topics.purchases.as_str())
    );
    assert_eq!(letter.key.as_deref(), Some("cust-b"));

    let text = app.get_text("/metrics").await?;
    assert!(
        text.contains("kizuna_dead_letters_total{reason=\"unparseable\""),
        "{text}"
    );

    app.stop().await?;
    env.cleanup().await
}
