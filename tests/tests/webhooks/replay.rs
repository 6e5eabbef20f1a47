//! Replays: the logged outputs since a time are delivered again.

use std::collections::HashSet;

use kizuna_e2e::webhooks::{Hook, Receiver};
use kizuna_e2e::{Broker, TestApp};
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;
use crate::inputs::Feed;

kizuna_e2e::on_each_broker! {
    a_replay_from_a_time_delivers_the_logged_outputs_again,
}

/// `customer` reaches silver with two purchases (events `evt-<tag>1`, `evt-<tag>2`); returns
/// the ids of the outputs that logged, once the receiver of "replay" has accepted all of them.
async fn two_purchases_delivered(
    feed: &Feed,
    engine: &TestApp,
    receiver: &Receiver,
    pool: &sqlx::PgPool,
    customer: &str,
    tag: &str,
) -> anyhow::Result<HashSet<String>> {
    for (n, amount) in [(1, 20_000), (2, 15_000)] {
        let (event, order) = (format!("evt-{tag}{n}"), format!("ord-{tag}{n}"));
        feed.buy(customer, &event, &order, amount).await?;
    }
    engine
        .wait_for_customer(customer, "two purchases", |s| {
            s["metrics"]["orders"] == json!(2.0)
        })
        .await?;
    let ids: Vec<(uuid::Uuid,)> =
        sqlx::query_as("SELECT ce_id FROM output_log WHERE customer_id = $1")
            .bind(customer)
            .fetch_all(pool)
            .await?;
    let ids: HashSet<String> = ids.into_iter().map(|(id,)| id.to_string()).collect();
    assert!(!ids.is_empty());
    receiver
        .wait_accepted("replay", &format!("{customer}'s outputs"), WAIT, |h| {
            let got: HashSet<&str> = h.iter().map(Hook::id).collect();
            ids.iter().all(|id| got.contains(id.as_str()))
        })
        .await?;
    Ok(ids)
}

async fn a_replay_from_a_time_delivers_the_logged_outputs_again(
    broker: Broker,
) -> anyhow::Result<()> {
    let (env, receiver, hooks) = start(broker, |_| {}).await?;
    let (sub, _secret) = hooks
        .subscribe_endpoint(&receiver, "replay", &ALL_TYPES, json!({}), json!({}))
        .await?;
    let engine = env.start().await?;
    let feed = Feed::new(&env)?;
    let pool = env.pool().await?;
    let delivered = |customer: &'static str, tag: &'static str| {
        two_purchases_delivered(&feed, &engine, &receiver, &pool, customer, tag)
    };

    // Before T: one customer's outputs, delivered.
    let early = delivered("cust-early", "e").await?;
    let t: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT now()").fetch_one(&pool).await?;

    // After T: another customer's outputs, delivered.
    let late = delivered("cust-late", "l").await?;
    wait_drained(&pool).await?;

    // The replay from T queues cust-late's outputs again, not cust-early's.
    let (status, body) = hooks
        .on_subscription(Method::POST, &sub, "/replay", Some(json!({"since": t})))
        .await?;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["queued"], json!(late.len()), "{body}");
    let got = receiver
        .wait_accepted("replay", "the replayed outputs", WAIT, |h| {
            late.iter()
                .all(|id| h.iter().filter(|x| x.id() == id).count() == 2)
        })
        .await?;
    for id in &early {
        assert_eq!(got.iter().filter(|h| h.id() == id).count(), 1, "{id}");
    }
    assert_all_verified(&receiver.requests("replay").await?);
    engine.stop().await?;
    hooks.stop().await?;
    env.cleanup().await
}
