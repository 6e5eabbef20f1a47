//! Points redeemed at the till: redemptions published to the `redemptions` topic move points
//! once per redemption id, an over-spend is dead-lettered with its reason, a cancel gives the
//! points back, and every change is announced on `loyalty.points` (`PointsChanged`).

use chrono::{Duration, Utc};
use kizuna_e2e::{Broker, TestEnv};
use kizuna_proto::v1;

use crate::helpers::{Scene, WAIT};
use crate::points_kit::{self, cancel, redemption};

kizuna_e2e::on_each_broker! {
    redemptions_from_kafka_move_points_once_and_refusals_are_dead_lettered,
}

/// Waits for a `PointsChanged` of `customer` announcing `available` points.
async fn wait_available(
    s: &Scene,
    customer: &str,
    available: i64,
) -> anyhow::Result<v1::PointsChanged> {
    points_kit::wait_points(&s.env, customer, available, |_| true, WAIT).await
}

async fn redemptions_from_kafka_move_points_once_and_refusals_are_dead_lettered(
    broker: Broker,
) -> anyhow::Result<()> {
    let mut env = TestEnv::on(broker).await?;
    points_kit::add_points(&mut env)?;
    let s = Scene::start_in(env).await?;
    let topics = s.topics().clone();
    let producer = &s.feed.producer;
    let c = "cust-r";

    // 100,000 JPY earns 1,000 points, spendable at once.
    s.feed
        .buy_at(
            c,
            "evt-r0",
            "ord-r0",
            100_000,
            Utc::now() - Duration::minutes(5),
        )
        .await?;
    let earned = wait_available(&s, c, 1_000).await?;
    assert_eq!(earned.changes.as_ref().map(|t| t.earned), Some(1_000));

    // A coffee: 300 points.
    producer
        .send_json(
            &topics.redemptions,
            c,
            &redemption("evt-r1", c, "red-1", 300, "coffee"),
        )
        .await?;
    let redeemed = wait_available(&s, c, 700).await?;
    assert_eq!(redeemed.changes.as_ref().map(|t| t.redeemed), Some(300));
    assert_eq!(redeemed.caused_by, "evt-r1");

    // The till resends the same redemption under another event id: nothing moves.
    producer
        .send_json(
            &topics.redemptions,
            c,
            &redemption("evt-r1-resent", c, "red-1", 300, "coffee"),
        )
        .await?;
    // More than the balance: refused, dead-lettered with the points book's reason.
    let overspend = serde_json::to_vec(&redemption("evt-r2", c, "red-2", 5_000, ""))?;
    producer
        .send(
            &topics.redemptions,
            Some(c),
            &overspend,
            &[("content-type", b"application/json")],
        )
        .await?;
    // Then 100 points at the till: 700 - 100 = 600 only if the resend moved nothing.
    producer
        .send_json(
            &topics.redemptions,
            c,
            &redemption("evt-r3", c, "red-3", 100, ""),
        )
        .await?;
    wait_available(&s, c, 600).await?;

    let letters = s
        .env
        .reader(&topics.dead_letter)?
        .collect_until(WAIT, |got| !got.is_empty())
        .await?;
    assert_eq!(letters.len(), 1, "only the over-spend is refused");
    let letter = &letters[0];
    assert_eq!(
        letter.header("kizuna-dlq-reason"),
        Some("insufficient_points")
    );
    assert_eq!(
        letter.header("kizuna-dlq-topic"),
        Some(topics.redemptions.as_str())
    );
    assert_eq!(letter.payload, overspend, "the raw bytes, unchanged");
    assert_eq!(letter.key.as_deref(), Some(c));
    let detail = letter.header("kizuna-dlq-detail").unwrap_or_default();
    assert!(
        detail.contains("5000 requested") && detail.contains("700 available"),
        "{detail}"
    );

    // The cancel of the coffee gives its 300 points back: 900.
    producer
        .send_json(&topics.redemptions, c, &cancel("evt-r4", c, "red-1"))
        .await?;
    let back = wait_available(&s, c, 900).await?;
    assert_eq!(back.changes.as_ref().map(|t| t.cancelled), Some(300));
    // A cancel of a redemption that never was: dead-lettered too.
    producer
        .send_json(&topics.redemptions, c, &cancel("evt-r5", c, "red-404"))
        .await?;
    let letters = s
        .env
        .reader(&topics.dead_letter)?
        .collect_until(WAIT, |got| got.len() >= 2)
        .await?;
    assert_eq!(
        letters[1].header("kizuna-dlq-reason"),
        Some("unknown_redemption")
    );

    // The contract: every message on the points topic is outputs.proto's JSON mapping of its
    // ce_type (it reads back into the message and writes out to the same JSON), with the
    // CloudEvents headers.
    let published = s.env.reader(&topics.points)?.read_to_end(WAIT).await?;
    // One per change: the refusals and the resend announce nothing.
    let balances: Vec<i64> = points_kit::points_changed(&published, c)
        .iter()
        .map(|p| p.available)
        .collect();
    assert_eq!(balances, [1_000, 700, 600, 900]);
    for m in &published {
        let ce_type = m.header("ce_type").unwrap_or_default();
        assert_eq!(ce_type, "kizuna.v1.PointsChanged");
        let json = m.json()?;
        let typed: v1::PointsChanged = serde_json::from_value(json.clone())?;
        assert_eq!(serde_json::to_value(&typed)?, json);
        assert_eq!(
            json["available"].as_str(),
            Some(typed.available.to_string().as_str())
        );
        assert_eq!(m.header("ce_subject"), Some(c));
        assert_eq!(m.header("ce_specversion"), Some("1.0"));
        assert_eq!(
            m.header("ce_dataschema"),
            Some(kizuna_proto::dataschema(ce_type).as_str())
        );
        assert_eq!(m.header("content-type"), Some("application/json"));
        assert_eq!(m.key.as_deref(), Some(c));
    }

    let text = s.app.get_text("/metrics").await?;
    let consumed = |outcome: &str| {
        kizuna_testkit::metrics::metric_sum(
            &text,
            "kizuna_events_consumed_total",
            &[("topic", topics.redemptions.as_str()), ("outcome", outcome)],
        )
    };
    assert_eq!(consumed("applied"), 3.0, "{text}");
    assert_eq!(consumed("duplicate"), 1.0, "the resent redemption");
    assert_eq!(consumed("dead_lettered"), 2.0);
    assert_eq!(
        kizuna_testkit::metrics::metric_sum(
            &text,
            "kizuna_dead_letters_total",
            &[
                ("topic", topics.redemptions.as_str()),
                ("reason", "insufficient_points")
            ]
        ),
        1.0
    );

    s.finish().await
}
