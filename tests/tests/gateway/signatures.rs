//! Forged, tampered, missing and stale signatures get 401 and produce nothing.

use kizuna_e2e::Broker;
use kizuna_gateway::signature;
use serde_json::json;

use crate::helpers::*;

kizuna_e2e::on_each_broker! {
    forged_signatures_get_401_and_produce_nothing,
}

async fn forged_signatures_get_401_and_produce_nothing(broker: Broker) -> anyhow::Result<()> {
    let (env, mapping) = sample_env(broker).await?;
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
    gw.assert_requests(&[
        ("unauthorized", "shopify", 3.0),
        ("unauthorized", "kizuna", 1.0),
    ])
    .await?;
    gw.assert_rejections(&[("mismatch", "shopify", 2.0), ("stale", "zendesk", 1.0)])
        .await?;
    inputs_empty(&env).await?;
    gw.stop().await?;
    env.cleanup().await
}
