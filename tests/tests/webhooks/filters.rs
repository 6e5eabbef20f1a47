//! What a subscription gets: its filters choose, and a paused subscription queues until it
//! is resumed.

use std::collections::{HashMap, HashSet};

use kizuna_e2e::webhooks::OutputFeed;
use kizuna_e2e::{Broker, wait_for};
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

kizuna_e2e::on_each_broker! {
    filters_choose_churn_high_only_and_tier_changes_to_or_from_gold,
    a_paused_subscription_queues_and_resume_delivers_in_order,
}

async fn filters_choose_churn_high_only_and_tier_changes_to_or_from_gold(
    broker: Broker,
) -> anyhow::Result<()> {
    let (env, receiver, hooks) = start(broker, |_| {}).await?;
    for (name, event_type, filter) in [
        ("churn", CHURN, json!({"churn_levels": ["high"]})),
        ("gold", TIER_CHANGED, json!({"tiers": ["gold"]})),
    ] {
        hooks
            .subscribe_endpoint(&receiver, name, &[event_type], filter, json!({}))
            .await?;
    }
    let out = OutputFeed::new(&env)?;
    let mut want_churn = HashSet::new();
    let mut want_gold = HashSet::new();
    for (seq, level) in [
        "CHURN_LEVEL_LOW",
        "CHURN_LEVEL_HIGH",
        "CHURN_LEVEL_MEDIUM",
        "CHURN_LEVEL_HIGH",
    ]
    .into_iter()
    .enumerate()
    {
        let customer = format!("cust-c{seq}");
        let id = out.churn_changed(&customer, level, seq as u32).await?;
        if level == "CHURN_LEVEL_HIGH" {
            want_churn.insert(id);
        }
    }
    for (seq, (from, to)) in [
        ("member", "silver"),
        ("silver", "gold"),
        ("gold", "platinum"),
        ("platinum", "gold"),
        ("silver", "member"),
    ]
    .into_iter()
    .enumerate()
    {
        let customer = format!("cust-t{seq}");
        let id = out.tier_changed(&customer, from, to, seq as u32).await?;
        if from == "gold" || to == "gold" {
            want_gold.insert(id);
        }
    }
    // Everything consumed and the queue drained: what arrived is all that will arrive.
    wait_consumed(&hooks, 9).await?;
    let pool = env.pool().await?;
    wait_drained(&pool).await?;
    let churn: HashSet<String> = receiver
        .requests("churn")
        .await?
        .iter()
        .map(|h| h.id().to_owned())
        .collect();
    let gold: HashSet<String> = receiver
        .requests("gold")
        .await?
        .iter()
        .map(|h| h.id().to_owned())
        .collect();
    assert_eq!(churn, want_churn);
    assert_eq!(gold, want_gold);
    assert_all_verified(&receiver.requests("churn").await?);
    assert_all_verified(&receiver.requests("gold").await?);
    hooks.stop().await?;
    env.cleanup().await
}

async fn a_paused_subscription_queues_and_resume_delivers_in_order(
    broker: Broker,
) -> anyhow::Result<()> {
    let (env, receiver, hooks) = start(broker, |_| {}).await?;
    let (sub, _secret) = hooks
        .subscribe_endpoint(&receiver, "paused", &[TIER_CHANGED], json!({}), json!({}))
        .await?;
    let (status, body) = hooks
        .on_subscription(Method::POST, &sub, "/pause", None)
        .await?;
    assert_eq!((status, body["status"].clone()), (200, json!("paused")));

    let out = OutputFeed::new(&env)?;
    let mut sent: HashMap<String, Vec<String>> = HashMap::new();
    for seq in 0..5 {
        for customer in ["cust-p", "cust-q"] {
            let id = out.tier_changed(customer, "member", "silver", seq).await?;
            sent.entry(customer.to_owned()).or_default().push(id);
        }
    }
    wait_for("10 deliveries queued while paused", WAIT, || async {
        let s = hooks.subscription(&sub).await?;
        Ok((s["pending"] == 10).then_some(()))
    })
    .await?;
    assert!(receiver.requests("paused").await?.is_empty());

    let (status, body) = hooks
        .on_subscription(Method::POST, &sub, "/resume", None)
        .await?;
    assert_eq!((status, body["status"].clone()), (200, json!("active")));
    let got = receiver
        .wait_accepted("paused", "the 10 queued deliveries", WAIT, |h| {
            h.len() >= 10
        })
        .await?;
    assert_eq!(by_customer(&got), sent);
    assert_all_verified(&receiver.requests("paused").await?);
    hooks.stop().await?;
    env.cleanup().await
}
