//! Points events for marketing automation: a subscription to `kizuna.v1.PointsChanged` gets
//! the engine's points changes (from `loyalty.points`), signed and verified, and a subscription
//! to tier changes only gets none of them.

use kizuna_e2e::Broker;
use serde_json::json;

use crate::helpers::*;
use crate::inputs::Feed;
use crate::points_kit;

kizuna_e2e::on_each_broker! {
    points_changes_reach_the_subscribers_who_asked_for_them,
}

async fn points_changes_reach_the_subscribers_who_asked_for_them(
    broker: Broker,
) -> anyhow::Result<()> {
    let (mut env, receiver, hooks) = start(broker, |_| {}).await?;
    points_kit::add_points(&mut env)?;
    // A tier filter does not apply to points events: they all pass it.
    hooks
        .subscribe_endpoint(
            &receiver,
            "loyalty-app",
            &["kizuna.v1.PointsChanged", "kizuna.v1.PointsWillExpire"],
            json!({"tiers": ["gold"]}),
            json!({"mode": "ok"}),
        )
        .await?;
    hooks
        .subscribe_endpoint(
            &receiver,
            "crm",
            &[TIER_CHANGED],
            json!({}),
            json!({"mode": "ok"}),
        )
        .await?;
    let engine = env.start().await?;
    let feed = Feed::new(&env)?;

    // 12,300 JPY: 123 points, spendable at once.
    feed.buy("cust-p", "evt-p1", "ord-p1", 12_300).await?;
    let changed = points_kit::wait_points(&env, "cust-p", 123, |_| true, WAIT).await?;
    assert_eq!(changed.changes.as_ref().map(|t| t.earned), Some(123));
    let on_topic = env
        .reader(&env.settings.kafka.topics.points)?
        .read_to_end(WAIT)
        .await?;
    let ce_id = on_topic[0].header("ce_id").unwrap_or_default().to_owned();

    let got = receiver
        .wait_accepted("loyalty-app", "the PointsChanged delivery", WAIT, |h| {
            h.iter().any(|h| h.id() == ce_id)
        })
        .await?;
    assert_all_verified(&got);
    let hook = got.iter().find(|h| h.id() == ce_id).expect("found above");
    assert_eq!(hook.event["type"], "kizuna.v1.PointsChanged");
    assert_eq!(hook.event["subject"], "cust-p");
    assert_eq!(hook.event["data"], on_topic[0].json()?);
    assert_eq!(hook.event["data"]["available"], "123");

    // The queue drained: what arrived is all that will arrive.
    let pool = env.pool().await?;
    wait_drained(&pool).await?;
    // One purchase of 12,300 JPY changes no tier: the tier subscriber got nothing at all.
    let crm = receiver.requests("crm").await?;
    assert!(crm.is_empty(), "{crm:?}");

    engine.stop().await?;
    hooks.stop().await?;
    env.cleanup().await
}
