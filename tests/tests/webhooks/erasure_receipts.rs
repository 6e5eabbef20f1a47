//! Erasure receipts for webhook subscribers: a subscription to `kizuna.v1.CustomerErased` gets
//! the receipt of an erasure (from `loyalty.privacy`), signed and verified, with the erased id's
//! keyed hash as its subject and never the id; the delivery log of earlier events about the
//! customer is erased with them.

use kizuna_e2e::Broker;
use serde_json::json;

use crate::helpers::*;
use crate::inputs::Feed;

kizuna_e2e::on_each_broker! {
    an_erasure_receipt_reaches_its_subscribers_without_the_id,
}

async fn an_erasure_receipt_reaches_its_subscribers_without_the_id(
    broker: Broker,
) -> anyhow::Result<()> {
    let (env, receiver, hooks) = start(broker, |_| {}).await?;
    hooks
        .subscribe_endpoint(
            &receiver,
            "privacy",
            &["kizuna.v1.CustomerErased", TIER_CHANGED],
            json!({}),
            json!({"mode": "ok"}),
        )
        .await?;
    let engine = env.start().await?;
    let feed = Feed::new(&env)?;
    let token = format!("admin-{}", env.id);

    // Two purchases make cust-x silver: a TierChanged delivery about them.
    feed.buy("cust-x", "evt-x1", "ord-x1", 20_000).await?;
    feed.buy("cust-x", "evt-x2", "ord-x2", 20_000).await?;
    receiver
        .wait_accepted("privacy", "the TierChanged delivery", WAIT, |h| {
            h.iter().any(|h| h.event["type"] == TIER_CHANGED)
        })
        .await?;
    let pool = env.pool().await?;
    wait_drained(&pool).await?;
    let (before,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM webhook_attempts WHERE customer_id = 'cust-x'")
            .fetch_one(&pool)
            .await?;
    assert!(before >= 1, "the delivery attempt about cust-x is logged");

    let resp = engine
        .http
        .delete(engine.url("/v1/customers/cust-x"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 200);
    let receipt: serde_json::Value = resp.json().await?;
    let hash = receipt["subject_hash"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(hash.len(), 64, "{receipt}");
    assert!(
        receipt["other_rows"].as_i64() >= Some(1 + before),
        "{receipt}"
    );

    let got = receiver
        .wait_accepted("privacy", "the CustomerErased delivery", WAIT, |h| {
            h.iter()
                .any(|h| h.event["type"] == "kizuna.v1.CustomerErased")
        })
        .await?;
    assert_all_verified(&got);
    let hook = got
        .iter()
        .find(|h| h.event["type"] == "kizuna.v1.CustomerErased")
        .expect("found above");
    assert_eq!(hook.event["subject"], json!(hash));
    assert_eq!(hook.event["data"]["subjectHash"], json!(hash));
    assert!(!hook.event.to_string().contains("cust-x"), "{}", hook.event);
    let (left,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM webhook_attempts WHERE customer_id = 'cust-x'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(
        left, 0,
        "the earlier delivery attempts about cust-x are erased"
    );

    pool.close().await;
    engine.stop().await?;
    hooks.stop().await?;
    env.cleanup().await
}
