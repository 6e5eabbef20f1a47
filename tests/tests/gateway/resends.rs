//! Resent deliveries: the same delivery, the same refund in two updates and a caller's own
//! idempotency key each count once.

use kizuna_e2e::process::metric_sum;
use kizuna_e2e::{Broker, wait_for};
use serde_json::{Value, json};

use crate::helpers::*;

kizuna_e2e::on_each_broker! {
    a_resent_delivery_counts_once,
}

async fn a_resent_delivery_counts_once(broker: Broker) -> anyhow::Result<()> {
    let (env, mapping) = sample_env(broker).await?;
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
    // (events consumed as duplicates, on the purchases and on the surveys topic)
    let duplicates = || async {
        let text = app.get_text("/metrics").await?;
        let on = |topic: &str| {
            let filter = [("outcome", "duplicate"), ("topic", topic)];
            metric_sum(&text, "kizuna_events_consumed_total", &filter)
        };
        anyhow::Ok((on(&topics.purchases), on(&topics.surveys)))
    };
    wait_for("the engine to drop the copies", WAIT, || async {
        let (p, s) = duplicates().await?;
        Ok((p >= 2.0 && s >= 2.0).then_some((p, s)))
    })
    .await?;
    let (purchases_dup, surveys_dup) = duplicates().await?;
    assert_eq!(purchases_dup, 2.0, "one resent order, one resent refund");
    assert_eq!(surveys_dup, 2.0, "the two answers of the resent response");
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
