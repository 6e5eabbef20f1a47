//! Points redeemed at the till: redemptions published to the `redemptions` topic move points
//! once per redemption id, an over-spend is dead-lettered with its reason, a cancel gives the
//! points back, and every change is announced on `loyalty.points` (`PointsChanged`).

use chrono::{Duration, Utc};
use kizuna_e2e::{Broker, Received, TestEnv};
use kizuna_proto::v1;
use serde_json::{Value, json};

use crate::helpers::{Scene, WAIT};

kizuna_e2e::on_each_broker! {
    redemptions_from_kafka_move_points_once_and_refusals_are_dead_lettered,
}

/// The built-in programme with points: 1 point per 100 JPY, spendable at once (no return
/// window), one reward of 300 points.
pub const POINTS_SECTION: &str = r#"
[points]
enabled = true
cost_per_point_minor = 1

[points.earn]
per_currency_unit = 1.0
currency_unit_minor = 100
rounding = "down"
pending_days = 0

[points.expiry]
mode = "rolling"
months = 12
warn_days = 30

[[points.reward]]
id = "coffee"
name = "A free coffee"
cost = 300
min_tier = "member"
"#;

/// An environment whose programme is the built-in one plus `POINTS_SECTION`.
pub async fn env_with_points(broker: Broker) -> anyhow::Result<TestEnv> {
    let mut env = TestEnv::on(broker).await?;
    let builtin = include_str!("../../../services/loyalty-engine/config/programme.toml");
    let path = std::env::temp_dir().join(format!("kizuna-points-{}.toml", env.id));
    std::fs::write(&path, format!("{builtin}\n{POINTS_SECTION}"))?;
    env.settings.programme_file = Some(path);
    Ok(env)
}

/// A `kizuna.v1.Redemption` in the protobuf JSON mapping, now.
pub fn redemption(
    event_id: &str,
    customer: &str,
    redemption_id: &str,
    points: i64,
    reward: &str,
) -> Value {
    json!({
        "eventId": event_id,
        "customerId": customer,
        "occurredAt": Utc::now().to_rfc3339(),
        "redemptionId": redemption_id,
        "kind": "REDEMPTION_KIND_REDEEM",
        "points": points.to_string(),
        "reward": reward,
    })
}

/// The cancel of redemption `redemption_id`, now.
pub fn cancel(event_id: &str, customer: &str, redemption_id: &str) -> Value {
    json!({
        "eventId": event_id,
        "customerId": customer,
        "occurredAt": Utc::now().to_rfc3339(),
        "redemptionId": redemption_id,
        "kind": "REDEMPTION_KIND_CANCEL",
    })
}

/// The `PointsChanged` events of `customer` on the points topic so far.
fn points_changed(got: &[Received], customer: &str) -> Vec<v1::PointsChanged> {
    got.iter()
        .filter(|m| m.header("ce_type") == Some("kizuna.v1.PointsChanged"))
        .filter_map(|m| serde_json::from_slice::<v1::PointsChanged>(&m.payload).ok())
        .filter(|p| p.customer_id == customer)
        .collect()
}

/// Waits for a `PointsChanged` of `customer` announcing `available` points, and returns it.
async fn wait_available(
    s: &Scene,
    customer: &str,
    available: i64,
) -> anyhow::Result<v1::PointsChanged> {
    let got = s
        .env
        .reader(&s.topics().points)?
        .collect_until(WAIT, |got| {
            points_changed(got, customer)
                .iter()
                .any(|p| p.available == available)
        })
        .await?;
    points_changed(&got, customer)
        .into_iter()
        .find(|p| p.available == available)
        .ok_or_else(|| anyhow::anyhow!("no PointsChanged with {available} available"))
}

async fn redemptions_from_kafka_move_points_once_and_refusals_are_dead_lettered(
    broker: Broker,
) -> anyhow::Result<()> {
    let s = Scene::start_in(env_with_points(broker).await?).await?;
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
