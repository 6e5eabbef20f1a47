//! Refusals: what cannot be mapped gets 422 naming the field, and the limits (body size,
//! rate) hold.

use kizuna_e2e::Broker;
use serde_json::{Value, json};

use crate::helpers::*;

kizuna_e2e::on_each_broker! {
    unmappable_payloads_get_422_naming_the_field_and_limits_hold,
}

async fn unmappable_payloads_get_422_naming_the_field_and_limits_hold(
    broker: Broker,
) -> anyhow::Result<()> {
    let (env, mapping) = sample_env(broker).await?;
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
    gw.assert_requests(&[
        ("ignored", "zendesk", 1.0),
        ("unprocessable", "shopify", 3.0),
    ])
    .await?;
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
    gw.assert_requests(&[("rate_limited", "shopify", 1.0)])
        .await?;
    // Other sources have their own allowance.
    let a = gw.post("/v1/events", &[], b"{}").await?;
    assert_eq!(a.status, 401);
    let (status, body) = gw.get("/nowhere").await?;
    assert_eq!(status, 404, "{body}");
    gw.stop().await?;

    inputs_empty(&env).await?;
    env.cleanup().await
}
