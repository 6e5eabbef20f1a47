//! Registry-framed redemptions and cancels.

use anyhow::Context;
use kizuna_e2e::process::metric_sum;
use kizuna_e2e::{Broker, wait_for};
use kizuna_proto::{INPUTS_PROTO, Timestamp, v1};

use crate::frames::*;
use crate::points_kit;

kizuna_e2e::on_each_broker! {
    framed_redemptions_move_points_and_refusals_are_dead_lettered,
}

/// Points redeemed at a till that produces through a Confluent protobuf serializer:
/// `kizuna.v1.Redemption` is message 5 of inputs.proto (appended after InputEvent).
async fn framed_redemptions_move_points_and_refusals_are_dead_lettered(
    broker: Broker,
) -> anyhow::Result<()> {
    let mut env = env_with_registry(broker).await?;
    points_kit::add_points(&mut env)?;
    let topics = env.settings.kafka.topics.clone();
    let purchases_id = register_inputs(&topics.purchases).await?;
    let redemptions_id = register_inputs(&topics.redemptions).await?;
    let redemption_at = [top_level_index(INPUTS_PROTO, "Redemption").context("Redemption")?];
    assert_eq!(redemption_at, [5], "appended: the earlier indexes stay");

    let app = env.start().await?;
    let producer = env.producer()?;
    let till = FramedSender {
        producer: &producer,
        customer: "cust-t",
    };
    // 50,000 JPY: 500 points.
    till.send(
        &topics.purchases,
        (purchases_id, &[1]),
        &purchase("evt-t1", "cust-t", "ord-t1", 50_000),
    )
    .await?;
    points_kit::wait_points(&env, "cust-t", 500, |_| true, WAIT).await?;
    let coffee = v1::Redemption {
        event_id: "evt-t2".into(),
        customer_id: "cust-t".into(),
        occurred_at: now_ts(),
        redemption_id: "till-7/0042".into(),
        kind: v1::RedemptionKind::Redeem as i32,
        points: 300,
        reward: "coffee".into(),
    };
    till.send(
        &topics.redemptions,
        (redemptions_id, &redemption_at),
        &coffee,
    )
    .await?;
    let after = points_kit::wait_points(&env, "cust-t", 200, |_| true, WAIT).await?;
    assert_eq!(after.changes.as_ref().map(|t| t.redeemed), Some(300));

    // A second coffee does not fit in 200 points (JSON, next to the framed ones).
    let second = points_kit::redemption("evt-t3", "cust-t", "till-7/0043", 300, "coffee");
    producer
        .send_json(&topics.redemptions, "cust-t", &second)
        .await?;
    // The first one given back, framed: 500 again.
    // Later than the JSON one (now_ts() drops the fraction of a second): in one batch, events
    // apply in event-time order.
    let now = chrono::Utc::now();
    let cancel = v1::Redemption {
        event_id: "evt-t4".into(),
        occurred_at: Some(Timestamp {
            seconds: now.timestamp(),
            nanos: i32::try_from(now.timestamp_subsec_nanos())?,
        }),
        kind: v1::RedemptionKind::Cancel as i32,
        points: 0,
        reward: String::new(),
        ..coffee
    };
    till.send(
        &topics.redemptions,
        (redemptions_id, &redemption_at),
        &cancel,
    )
    .await?;
    let back = |p: &v1::PointsChanged| p.changes.as_ref().is_some_and(|t| t.cancelled == 300);
    points_kit::wait_points(&env, "cust-t", 500, back, WAIT).await?;
    // And its cancel resent as JSON under another event id: a duplicate, nothing moves.
    producer
        .send_json(
            &topics.redemptions,
            "cust-t",
            &points_kit::cancel("evt-t5", "cust-t", "till-7/0042"),
        )
        .await?;

    let letters = env
        .reader(&topics.dead_letter)?
        .collect_until(WAIT, |got| !got.is_empty())
        .await?;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        letters[0].header("kizuna-dlq-reason"),
        Some("insufficient_points")
    );
    let text = wait_for("the resent cancel counted", WAIT, || async {
        let text = app.get_text("/metrics").await?;
        let duplicates = metric_sum(
            &text,
            "kizuna_events_consumed_total",
            &[
                ("topic", topics.redemptions.as_str()),
                ("outcome", "duplicate"),
            ],
        );
        Ok((duplicates == 1.0).then_some(text))
    })
    .await?;
    assert_eq!(
        metric_sum(
            &text,
            "kizuna_events_consumed_total",
            &[
                ("topic", topics.redemptions.as_str()),
                ("outcome", "applied")
            ]
        ),
        2.0,
        "{text}"
    );
    let changes = points_kit::points_changed(
        &env.reader(&topics.points)?.read_to_end(WAIT).await?,
        "cust-t",
    );
    assert_eq!(
        changes.last().map(|p| p.available),
        Some(500),
        "the resent cancel gave nothing back twice"
    );

    app.stop().await?;
    env.cleanup().await
}
