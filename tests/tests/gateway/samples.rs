//! The platforms' documented samples, posted signed as the platforms sign them, become the
//! right customer state in the engine.

use kizuna_e2e::Broker;
use serde_json::json;

use crate::helpers::*;

kizuna_e2e::on_each_broker! {
    documented_samples_become_the_right_state,
}

async fn documented_samples_become_the_right_state(broker: Broker) -> anyhow::Result<()> {
    let (env, mapping) = sample_env(broker).await?;
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

    gw.assert_requests(&[
        ("accepted", "shopify", 2.0),
        ("accepted", "zendesk", 2.0),
        ("accepted", "typeform", 1.0),
    ])
    .await?;
    gw.stop().await?;
    app.stop().await?;
    env.cleanup().await
}
