//! Delivery: the engine's outputs reach a subscriber signed and verified; an outage loses
//! nothing and delivers each event once, in order; a hanging receiver holds up no one else.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use kizuna_e2e::process::metric_sum;
use kizuna_e2e::webhooks::{Hook, OutputFeed};
use kizuna_e2e::{Broker, wait_for};
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;
use crate::inputs::Feed;

kizuna_e2e::on_each_broker! {
    engine_outputs_reach_a_subscriber_signed_and_verified,
    a_receiver_outage_loses_nothing_and_each_event_is_accepted_once_in_order,
    a_hanging_receiver_does_not_hold_up_another_subscription,
}

async fn engine_outputs_reach_a_subscriber_signed_and_verified(
    broker: Broker,
) -> anyhow::Result<()> {
    let (env, receiver, hooks) = start(broker, |_| {}).await?;
    let (_, _secret) = hooks
        .subscribe_endpoint(
            &receiver,
            "crm",
            &ALL_TYPES,
            json!({}),
            json!({"mode": "ok"}),
        )
        .await?;
    let engine = env.start().await?;
    let feed = Feed::new(&env)?;

    // The built-in programme: silver needs 30,000 JPY over 2 orders.
    feed.buy("cust-a", "evt-a1", "ord-a1", 20_000).await?;
    feed.buy("cust-a", "evt-a2", "ord-a2", 15_000).await?;

    let tier = env
        .reader(&feed.topics.tier_changed)?
        .collect_until(WAIT, |got| !got.is_empty())
        .await?;
    let ce_id = tier[0].header("ce_id").unwrap_or_default().to_owned();
    let got = receiver
        .wait_accepted("crm", "the TierChanged delivery", WAIT, |h| {
            h.iter().any(|h| h.id() == ce_id)
        })
        .await?;
    let hook = got.iter().find(|h| h.id() == ce_id).expect("found above");
    assert_eq!(hook.content_type.as_deref(), Some("application/json"));
    assert!(
        hook.signature.as_deref().unwrap_or("").starts_with("v1,"),
        "{:?}",
        hook.signature
    );
    let ts: i64 = hook.timestamp.as_deref().unwrap_or("").parse()?;
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 120);
    // The CloudEvent in structured JSON mode.
    let event = &hook.event;
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["id"], json!(ce_id));
    assert_eq!(event["type"], TIER_CHANGED);
    assert_eq!(event["source"], "kizuna/loyalty-engine");
    assert_eq!(event["subject"], "cust-a");
    assert_eq!(event["datacontenttype"], "application/json");
    assert_eq!(
        event["dataschema"].as_str().map(str::to_owned),
        Some(kizuna_proto::dataschema(TIER_CHANGED))
    );
    assert_eq!(event["time"], json!(tier[0].header("ce_time")));
    assert_eq!(event["data"]["newTier"], "silver");
    assert_eq!(event["data"]["previousTier"], "member");
    assert_eq!(event["data"], tier[0].json()?);

    // Every output of the customer, on every topic, is delivered, and every delivery verified.
    let pool = env.pool().await?;
    let logged: Vec<(uuid::Uuid,)> =
        sqlx::query_as("SELECT ce_id FROM output_log WHERE customer_id = 'cust-a'")
            .fetch_all(&pool)
            .await?;
    assert!(!logged.is_empty());
    let all = receiver
        .wait_accepted("crm", "every output of cust-a", WAIT, |h| {
            let ids: HashSet<&str> = h.iter().map(Hook::id).collect();
            logged
                .iter()
                .all(|(id,)| ids.contains(id.to_string().as_str()))
        })
        .await?;
    assert_all_verified(&receiver.requests("crm").await?);
    assert_eq!(all.len(), logged.len(), "each output once: {all:?}");

    let text = hooks.metrics().await?;
    assert!(
        text.contains("kizuna_webhook_attempts_total{outcome=\"success\"}"),
        "{text}"
    );
    assert!(text.contains("kizuna_webhook_attempt_duration_seconds_bucket"));
    engine.stop().await?;
    hooks.stop().await?;
    env.cleanup().await
}

async fn a_receiver_outage_loses_nothing_and_each_event_is_accepted_once_in_order(
    broker: Broker,
) -> anyhow::Result<()> {
    let (env, receiver, hooks) = start(broker, |_| {}).await?;
    // The receiver is down (503) for its first 15 requests, then recovers.
    let (sub, _secret) = hooks
        .subscribe_endpoint(
            &receiver,
            "flaky",
            &[TIER_CHANGED],
            json!({}),
            json!({"mode": "fail", "status": 503, "fail_count": 15}),
        )
        .await?;
    let out = OutputFeed::new(&env)?;
    let mut sent: HashMap<String, Vec<String>> = HashMap::new();
    for seq in 0..6 {
        for c in 0..4 {
            let customer = format!("cust-{c}");
            let id = out.tier_changed(&customer, "member", "silver", seq).await?;
            sent.entry(customer).or_default().push(id);
        }
    }

    let accepted = receiver
        .wait_accepted("flaky", "all 24 events accepted", WAIT, |h| h.len() >= 24)
        .await?;
    let all = receiver.requests("flaky").await?;
    assert_all_verified(&all);
    assert!(
        all.iter().filter(|h| h.answered == Some(503)).count() >= 15,
        "the outage was seen"
    );
    // Exactly once by webhook-id, and in order per customer.
    let ids: Vec<&str> = accepted.iter().map(Hook::id).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(
        ids.len(),
        unique.len(),
        "an event was accepted twice: {ids:?}"
    );
    assert_eq!(by_customer(&accepted), sent);
    // Still once after the queue drained.
    let pool = env.pool().await?;
    wait_drained(&pool).await?;
    let again: Vec<Hook> = receiver
        .requests("flaky")
        .await?
        .into_iter()
        .filter(|h| h.accepted)
        .collect();
    assert_eq!(again.len(), 24);

    // The delivery log has the failures with their status, and the metrics count them.
    let (status, log) = hooks
        .on_subscription(Method::GET, &sub, "/attempts?limit=1000", None)
        .await?;
    assert_eq!(status, 200, "{log}");
    let attempts = log["attempts"].as_array().cloned().unwrap_or_default();
    assert_eq!(attempts.len(), all.len(), "one log row per request");
    assert!(attempts.iter().filter(|a| a["status_code"] == 503).count() >= 15);
    assert!(attempts.iter().all(|a| a["latency_ms"].as_f64().is_some()));
    let text = hooks.metrics().await?;
    let failures_5xx = metric_sum(&text, "kizuna_webhook_failures_total", &[("class", "5xx")]);
    assert!(failures_5xx >= 15.0, "{text}");
    hooks.stop().await?;
    env.cleanup().await
}

async fn a_hanging_receiver_does_not_hold_up_another_subscription(
    broker: Broker,
) -> anyhow::Result<()> {
    let (env, receiver, hooks) = start(broker, |s| {
        s.delivery.max_in_flight = 4;
        s.delivery.max_in_flight_per_subscription = 2;
        s.delivery.request_timeout_ms = 8_000;
    })
    .await?;
    for (name, mode) in [("stuck", "hang"), ("fine", "ok")] {
        let behaviour = json!({"mode": mode});
        hooks
            .subscribe_endpoint(&receiver, name, &[TIER_CHANGED], json!({}), behaviour)
            .await?;
    }
    let out = OutputFeed::new(&env)?;
    let started = std::time::Instant::now();
    // More customers waiting at the hanging receiver than there are request slots.
    for c in 0..10 {
        for seq in 0..2 {
            let customer = format!("cust-{c}");
            out.tier_changed(&customer, "member", "silver", seq).await?;
        }
    }
    // All 20 reach the healthy subscriber while the other hangs, well before the hung
    // requests time out.
    let fine = receiver
        .wait_accepted("fine", "all 20 at the healthy receiver", WAIT, |h| {
            h.len() >= 20
        })
        .await?;
    assert_eq!(fine.len(), 20);
    let stuck = receiver.requests("stuck").await?;
    assert!(!stuck.is_empty(), "the hanging receiver was called");
    assert!(stuck.iter().all(|h| !h.accepted));
    assert!(
        stuck.len() <= 2,
        "at most its share of the slots: {}",
        stuck.len()
    );
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "the healthy subscription waited for the hanging one: {:?}",
        started.elapsed()
    );

    // The hung requests time out (and are retried, hanging again)…
    wait_for("a hung request to time out", WAIT, || async {
        let text = hooks.metrics().await?;
        Ok(text
            .contains("kizuna_webhook_failures_total{class=\"timeout\"}")
            .then_some(()))
    })
    .await?;
    // …until the receiver recovers and gets everything, once each.
    receiver.release("stuck").await?;
    let recovered = receiver
        .wait_accepted("stuck", "all 20 after the hang", WAIT, |h| h.len() >= 20)
        .await?;
    let ids: HashSet<&str> = recovered.iter().map(Hook::id).collect();
    assert_eq!(ids.len(), 20);
    assert_all_verified(&receiver.requests("stuck").await?);
    assert_all_verified(&receiver.requests("fine").await?);
    hooks.stop().await?;
    env.cleanup().await
}
