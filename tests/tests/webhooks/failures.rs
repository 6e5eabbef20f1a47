//! Failing receivers: events still failing after the retry period become dead letters, and a
//! subscription that keeps failing is disabled and announced.

use std::collections::{HashMap, HashSet};

use kizuna_e2e::webhooks::{LogCapture, OutputFeed, settings};
use kizuna_e2e::{Broker, wait_for};
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

kizuna_e2e::on_each_broker! {
    events_still_failing_after_the_retry_period_become_dead_letters,
    a_subscription_that_keeps_failing_is_disabled_and_announced,
}

async fn events_still_failing_after_the_retry_period_become_dead_letters(
    broker: Broker,
) -> anyhow::Result<()> {
    let (env, receiver, hooks) = start(broker, |s| {
        s.delivery.retry_period_secs = 2;
        s.delivery.backoff_initial_ms = 200;
        s.delivery.backoff_max_ms = 500;
    })
    .await?;
    let (sub, secret) = hooks
        .subscribe_endpoint(
            &receiver,
            "down",
            &[TIER_CHANGED],
            json!({}),
            json!({"mode": "fail", "status": 500}),
        )
        .await?;
    let out = OutputFeed::new(&env)?;
    let mut dead = HashSet::new();
    for (customer, seq) in [("cust-d", 1), ("cust-d", 2), ("cust-e", 1)] {
        dead.insert(out.tier_changed(customer, "member", "silver", seq).await?);
    }
    let letters = wait_for("three dead letters", WAIT, || async {
        let (status, body) = hooks
            .on_subscription(Method::GET, &sub, "/dead-letters", None)
            .await?;
        anyhow::ensure!(status == 200, "{body}");
        let letters = body["dead_letters"].as_array().cloned().unwrap_or_default();
        Ok((letters.len() >= 3).then_some(letters))
    })
    .await?;
    let ids: HashSet<String> = letters
        .iter()
        .filter_map(|l| l["webhook_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids, dead);
    for l in &letters {
        assert_eq!(l["last_status"], 500, "{l}");
        assert!(l["attempts"].as_i64().unwrap_or(0) >= 2, "retried: {l}");
        assert_eq!(l["event"]["id"], l["webhook_id"]);
        assert_eq!(l["event"]["type"], TIER_CHANGED);
    }
    let body = hooks.subscription(&sub).await?;
    assert_eq!(body["pending"], 0);
    assert_eq!(
        body["status"], "active",
        "dead letters alone do not disable"
    );

    // The customer's stream is not blocked: once the receiver is back, the next event goes out.
    receiver
        .configure("down", json!({"secrets": [secret], "mode": "ok"}))
        .await?;
    let next = out.tier_changed("cust-d", "silver", "gold", 3).await?;
    receiver
        .wait_accepted("down", "the next event of cust-d", WAIT, |h| {
            h.iter().any(|h| h.id() == next)
        })
        .await?;
    assert_all_verified(&receiver.requests("down").await?);
    let text = hooks.metrics().await?;
    assert!(
        text.contains("kizuna_webhook_dead_letters_total 3"),
        "{text}"
    );
    hooks.stop().await?;
    env.cleanup().await
}

async fn a_subscription_that_keeps_failing_is_disabled_and_announced(
    broker: Broker,
) -> anyhow::Result<()> {
    let logs = LogCapture::install();
    let (env, receiver, hooks) = start(broker, |s| {
        s.delivery.disable_after_secs = 1;
        s.delivery.disable_min_failures = 3;
    })
    .await?;
    let webhooks_topic = settings(&env)?.kafka.topics.webhooks;
    let failing_behaviour = json!({"mode": "fail", "status": 503});
    let (failing, failing_secret) = hooks
        .subscribe_endpoint(
            &receiver,
            "failing",
            &[TIER_CHANGED],
            json!({}),
            failing_behaviour,
        )
        .await?;
    let (gone, gone_secret) = hooks
        .subscribe(
            &format!("{}?token=do-not-print", receiver.url("gone")),
            &[TIER_CHANGED],
            json!({}),
        )
        .await?;
    receiver
        .configure("gone", json!({"secrets": [gone_secret], "mode": "gone"}))
        .await?;
    let out = OutputFeed::new(&env)?;
    let first = out.tier_changed("cust-f", "member", "silver", 1).await?;

    for id in [&failing, &gone] {
        wait_for("the subscription to be disabled", WAIT, || async {
            let s = hooks.subscription(id).await?;
            Ok((s["status"] == "disabled").then_some(()))
        })
        .await?;
    }
    let announced = env
        .reader(&webhooks_topic)?
        .collect_until(WAIT, |got| got.len() >= 2)
        .await?;
    let mut reasons = HashMap::new();
    for m in &announced {
        assert_eq!(
            m.header("ce_type"),
            Some("kizuna.v1.WebhookSubscriptionDisabled")
        );
        assert_eq!(m.header("ce_source"), Some("kizuna/webhooks"));
        assert_eq!(
            m.header("ce_dataschema").map(str::to_owned),
            Some(kizuna_proto::dataschema(
                "kizuna.v1.WebhookSubscriptionDisabled"
            ))
        );
        let payload = m.json()?;
        assert_eq!(m.key.as_deref(), payload["subscriptionId"].as_str());
        assert!(
            !payload.to_string().contains("do-not-print")
                && !payload.to_string().contains("cust-f"),
            "no path, query or customer data: {payload}"
        );
        reasons.insert(
            payload["subscriptionId"].as_str().unwrap_or("").to_owned(),
            payload.clone(),
        );
    }
    let f = &reasons[&failing];
    assert_eq!(f["reason"], "WEBHOOK_DISABLED_REASON_FAILING");
    assert!(f["consecutiveFailures"].as_u64().unwrap_or(0) >= 3, "{f}");
    assert_eq!(f["lastStatus"], 503);
    assert_eq!(reasons[&gone]["reason"], "WEBHOOK_DISABLED_REASON_GONE");
    assert_eq!(
        receiver
            .requests("gone")
            .await?
            .iter()
            .filter(|h| h.answered == Some(410))
            .count(),
        1,
        "410 Gone disables at once"
    );

    // Nothing new is queued for a disabled subscription.
    let second = out.tier_changed("cust-f", "silver", "gold", 2).await?;
    wait_consumed(&hooks, 2).await?;
    assert_eq!(hooks.subscription(&failing).await?["pending"], 1);

    // An operator resumes it once the receiver is fixed: the waiting event goes out.
    receiver
        .configure(
            "failing",
            json!({"secrets": [failing_secret], "mode": "ok"}),
        )
        .await?;
    let (status, _) = hooks
        .on_subscription(Method::POST, &failing, "/resume", None)
        .await?;
    assert_eq!(status, 200);
    let got = receiver
        .wait_accepted("failing", "the waiting event", WAIT, |h| {
            h.iter().any(|h| h.id() == first)
        })
        .await?;
    assert!(got.iter().all(|h| h.id() != second));
    assert_all_verified(&receiver.requests("failing").await?);
    let text = hooks.metrics().await?;
    assert!(
        text.contains("kizuna_webhook_subscriptions_disabled_total{reason=\"gone\"} 1"),
        "{text}"
    );
    // The log says which subscription was disabled and why, without customer data or the
    // URL's path and query.
    let log = logs.text();
    assert!(log.contains("webhook subscription disabled"), "{log}");
    assert!(log.contains(&failing), "{log}");
    for secret_or_pii in ["cust-f", "do-not-print", "/hooks/", "whsec_"] {
        assert!(
            !log.contains(secret_or_pii),
            "{secret_or_pii} in the log: {log}"
        );
    }
    hooks.stop().await?;
    env.cleanup().await
}
