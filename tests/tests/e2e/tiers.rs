//! Tiers: purchases carry a customer up, a refund warns first and drops them after the grace
//! period, and every change is published as a CloudEvent.

use kizuna_e2e::{Broker, Received, TestEnv, wait_for};
use kizuna_proto::v1;
use serde_json::json;

use crate::helpers::{Scene, WAIT};
use crate::inputs::{purchase_at, refund_of};

kizuna_e2e::on_each_broker! {
    purchases_carry_a_customer_across_a_tier_threshold,
    a_refund_below_the_threshold_warns_now_and_downgrades_after_the_grace_period,
}

async fn purchases_carry_a_customer_across_a_tier_threshold(broker: Broker) -> anyhow::Result<()> {
    let s = Scene::start(broker).await?;
    let app = &s.app;

    // The built-in programme: silver needs 30,000 JPY over 2 orders.
    s.feed.buy("cust-a", "evt-a1", "ord-a1", 20_000).await?;
    s.feed.buy("cust-a", "evt-a2", "ord-a2", 15_000).await?;

    let state = app
        .wait_for_customer("cust-a", "both purchases applied", |s| {
            s["metrics"]["orders"] == json!(2.0)
        })
        .await?;
    assert_eq!(state["metrics"]["lifetime_spend_minor"], json!(35_000));
    assert_eq!(state["tier"], json!("silver"));
    assert_eq!(state["currency"], json!("JPY"));

    let (status, body) = app.get("/v1/customers/nobody").await?;
    assert_eq!(status, 404, "{body}");

    // The state row in PostgreSQL.
    let pool = s.env.pool().await?;
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
    let out = s
        .env
        .reader(&s.topics().tier_changed)?
        .read_to_end(WAIT)
        .await?;
    assert_eq!(out.len(), 1, "exactly one TierChanged: {out:?}");
    let msg = &out[0];
    assert_eq!(msg.key.as_deref(), Some("cust-a"));
    assert_eq!(msg.header("ce_specversion"), Some("1.0"));
    assert_eq!(msg.header("ce_type"), Some("kizuna.v1.TierChanged"));
    assert_eq!(msg.header("ce_source"), Some("kizuna/loyalty-engine"));
    assert_eq!(msg.header("content-type"), Some("application/json"));
    assert_eq!(
        msg.header("ce_dataschema"),
        Some(
            "https://github.com/kizuna-loyalty/kizuna/blob/main/proto/kizuna/v1/outputs.proto#kizuna.v1.TierChanged"
        )
    );
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

    s.finish().await
}

async fn a_refund_below_the_threshold_warns_now_and_downgrades_after_the_grace_period(
    broker: Broker,
) -> anyhow::Result<()> {
    let mut env = TestEnv::on(broker).await?;
    // The as-of clock: "now" is the largest event time seen, so 30 days of grace pass as soon
    // as an event 40 days later arrives, without a real wait.
    env.settings.clock = kizuna::config::Clock::EventTime;
    let s = Scene::start_in(env).await?;
    let app = &s.app;
    let t0 = chrono::Utc::now() - chrono::Duration::days(100);

    let mut last = serde_json::Value::Null;
    for (i, at) in [t0, t0 + chrono::Duration::hours(1)]
        .into_iter()
        .enumerate()
    {
        last = purchase_at(
            &format!("evt-r{i}"),
            "cust-r",
            &format!("ord-r{i}"),
            20_000,
            at,
        );
        s.feed.purchase("cust-r", &last).await?;
    }
    app.wait_for_customer("cust-r", "silver", |s| s["tier"] == json!("silver"))
        .await?;

    let refund_time = t0 + chrono::Duration::days(1);
    // The second order (ord-r1, 20,000 JPY) comes back.
    let refund = refund_of(&last, "evt-r9", refund_time);
    s.feed.purchase("cust-r", &refund).await?;
    let state = app
        .wait_for_customer("cust-r", "the pending downgrade", |s| {
            !s["pending_downgrade"].is_null()
        })
        .await?;
    assert_eq!(
        state["tier"],
        json!("silver"),
        "no drop during the grace period"
    );

    // Time passes: another customer's purchase 40 days later moves the clock.
    let later = t0 + chrono::Duration::days(40);
    s.feed
        .buy_at("cust-other", "evt-o1", "ord-o1", 1_000, later)
        .await?;
    app.wait_for_customer("cust-r", "the downgrade by the sweeper", |s| {
        s["tier"] == json!("member")
    })
    .await?;

    let is_r = |m: &Received| m.key.as_deref() == Some("cust-r");
    let out = s
        .env
        .reader(&s.topics().tier_changed)?
        .collect_until(WAIT, |got| got.iter().filter(|m| is_r(m)).count() >= 3)
        .await?;
    let mine: Vec<_> = out.iter().filter(|m| is_r(m)).collect();
    let types: Vec<_> = mine
        .iter()
        .map(|m| m.header("ce_type").unwrap_or_default())
        .collect();
    assert_eq!(
        types,
        [
            "kizuna.v1.TierChanged",
            "kizuna.v1.TierWillDowngrade",
            "kizuna.v1.TierChanged"
        ],
        "upgrade, warning, drop, in order"
    );
    let warning: v1::TierWillDowngrade = serde_json::from_slice(&mine[1].payload)?;
    assert_eq!(
        (warning.previous_tier.as_str(), warning.new_tier.as_str()),
        ("silver", "member")
    );
    assert_eq!(warning.caused_by, "evt-r9");
    let due = warning.downgrade_at.expect("a downgrade date");
    assert_eq!(
        due.seconds,
        (refund_time + chrono::Duration::days(30)).timestamp()
    );
    assert!(
        warning
            .to_keep_tier
            .iter()
            .any(|k| k.contains("spend 10000 JPY more")),
        "{:?}",
        warning.to_keep_tier
    );
    let drop: v1::TierChanged = serde_json::from_slice(&mine[2].payload)?;
    assert_eq!(drop.kind(), v1::TierChangeKind::Downgrade);
    assert_eq!(
        (drop.previous_tier.as_str(), drop.new_tier.as_str()),
        ("silver", "member")
    );
    assert_eq!(drop.caused_by, "sweep");
    assert_eq!(drop.effective_at.map(|t| t.seconds), Some(due.seconds));

    s.finish().await
}
