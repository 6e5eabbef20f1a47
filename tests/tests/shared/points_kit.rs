//! A programme with points, and redemptions in the protobuf JSON mapping as a till produces
//! them to the `redemptions` topic.
//!
//! Shared by the `e2e`, `registry` and `webhooks` test binaries (`#[path = "../shared/points_kit.rs"]`).

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use kizuna::domain::programme::Programme;
use kizuna_e2e::{Received, TestEnv};
use kizuna_proto::v1;
use serde_json::{Value, json};

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

/// Makes `env`'s programme the built-in one plus `POINTS_SECTION`.
pub fn add_points(env: &mut TestEnv) -> anyhow::Result<()> {
    with_points_section(env, POINTS_SECTION).map(drop)
}

/// Writes the built-in programme plus `section` (checked first) to a file of this test and
/// points the engine (and the `kizuna` command line) at it; returns the file, to remove at
/// the end.
pub fn with_points_section(env: &mut TestEnv, section: &str) -> anyhow::Result<PathBuf> {
    let builtin = include_str!("../../../services/loyalty-engine/config/programme.toml");
    let text = format!("{builtin}\n{section}");
    Programme::parse(&text).map_err(|e| anyhow::anyhow!("test programme: {e}"))?;
    let path = std::env::temp_dir().join(format!("kizuna-points-{}.toml", env.id));
    std::fs::write(&path, text)?;
    env.settings.programme_file = Some(path.clone());
    Ok(path)
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

/// The `PointsChanged` events of `customer` among `got` (JSON payloads).
pub fn points_changed(got: &[Received], customer: &str) -> Vec<v1::PointsChanged> {
    got.iter()
        .filter(|m| m.header("ce_type") == Some("kizuna.v1.PointsChanged"))
        .filter_map(|m| serde_json::from_slice::<v1::PointsChanged>(&m.payload).ok())
        .filter(|p| p.customer_id == customer)
        .collect()
}

/// Waits up to `timeout` for a `PointsChanged` of `customer` on `env`'s points topic that
/// announces `available` points and passes `check`, and returns it.
pub async fn wait_points(
    env: &TestEnv,
    customer: &str,
    available: i64,
    check: impl Fn(&v1::PointsChanged) -> bool,
    timeout: Duration,
) -> anyhow::Result<v1::PointsChanged> {
    let found = |got: &[Received]| {
        points_changed(got, customer)
            .into_iter()
            .find(|p| p.available == available && check(p))
    };
    let got = env
        .reader(&env.settings.kafka.topics.points)?
        .collect_until(timeout, |got| found(got).is_some())
        .await?;
    found(&got).ok_or_else(|| anyhow::anyhow!("no such PointsChanged with {available} available"))
}
