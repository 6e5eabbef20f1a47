//! What the webhook-delivery scenarios share: the event types, checks on what the receiver
//! got, and waits on the delivery service.

use std::collections::HashMap;
use std::time::Duration;

use kizuna_e2e::process::metric_sum;
use kizuna_e2e::webhooks::{Hook, Receiver, WebhooksApp, settings};
use kizuna_e2e::{Broker, TestEnv, wait_for};

pub use kizuna_e2e::webhooks::{CHURN_RISK_CHANGED as CHURN, TIER_CHANGED};

pub const WAIT: Duration = Duration::from_secs(60);
pub const ALL_TYPES: [&str; 7] = [
    "kizuna.v1.TierChanged",
    "kizuna.v1.TierWillDowngrade",
    "kizuna.v1.ChurnRiskChanged",
    "kizuna.v1.SegmentChanged",
    "kizuna.v1.PointsChanged",
    "kizuna.v1.PointsWillExpire",
    "kizuna.v1.CustomerErased",
];

/// A fresh environment on `broker`, the receiver, and the delivery service with the test
/// settings as `tweak` changes them.
pub async fn start(
    broker: Broker,
    tweak: impl FnOnce(&mut kizuna_webhooks::config::Settings),
) -> anyhow::Result<(TestEnv, Receiver, WebhooksApp)> {
    let env = TestEnv::on(broker).await?;
    let receiver = Receiver::start().await?;
    let mut s = settings(&env)?;
    tweak(&mut s);
    let hooks = WebhooksApp::start(s).await?;
    Ok((env, receiver, hooks))
}

/// Every request was verified by the reference library.
pub fn assert_all_verified(hooks: &[Hook]) {
    for h in hooks {
        assert!(
            h.verified,
            "delivery {} failed verification: {:?}",
            h.id(),
            h.verify_error
        );
    }
}

/// Webhook ids accepted per customer, in arrival order.
pub fn by_customer(hooks: &[Hook]) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for h in hooks {
        out.entry(h.subject().to_owned())
            .or_default()
            .push(h.id().to_owned());
    }
    out
}

/// Waits until the service has consumed `n` output messages (any outcome).
pub async fn wait_consumed(app: &WebhooksApp, n: u64) -> anyhow::Result<()> {
    wait_for("the output messages to be consumed", WAIT, || async {
        let text = app.metrics().await?;
        let consumed = metric_sum(&text, "kizuna_webhook_events_consumed_total", &[]) as u64;
        Ok((consumed >= n).then_some(()))
    })
    .await
}

/// Deliveries waiting in the queue.
pub async fn pending(pool: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries")
            .fetch_one(pool)
            .await?,
    )
}

/// Waits until no delivery is waiting in the queue.
pub async fn wait_drained(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    wait_for("the queue to drain", WAIT, || async {
        Ok((pending(pool).await? == 0).then_some(()))
    })
    .await
}
