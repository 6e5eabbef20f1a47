//! Webhook delivery end to end: the real engine or engine-format messages on the real output
//! topics, the delivery service in-process, the real PostgreSQL, and a real HTTP receiver
//! (tests/receivers/webhook_receiver.py) that verifies every delivery with the Standard
//! Webhooks reference library. Waits are on conditions, with time limits.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use kizuna_e2e::webhooks::{
    Hook, LogCapture, Receiver, WebhooksApp, churn_changed, produce_output, settings, tier_changed,
};
use kizuna_e2e::{TestEnv, wait_for};
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const TIER_CHANGED: &str = "kizuna.v1.TierChanged";
const CHURN: &str = "kizuna.v1.ChurnRiskChanged";
const ALL_TYPES: [&str; 4] = [
    "kizuna.v1.TierChanged",
    "kizuna.v1.TierWillDowngrade",
    "kizuna.v1.ChurnRiskChanged",
    "kizuna.v1.SegmentChanged",
];

fn purchase(event_id: &str, customer: &str, order: &str, amount_minor: i64) -> Value {
    json!({
        "eventId": event_id, "customerId": customer,
        "occurredAt": chrono::Utc::now().to_rfc3339(), "orderId": order,
        "kind": "PURCHASE_KIND_PURCHASE", "amountMinor": amount_minor.to_string(), "currency": "JPY",
        "lineItems": [{"sku": "tea-01", "category": "daily_goods", "quantity": 1,
                       "unitPriceMinor": amount_minor.to_string()}],
        "channel": "web"
    })
}

/// Every request was verified by the reference library.
fn assert_all_verified(hooks: &[Hook]) {
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
fn by_customer(hooks: &[Hook]) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for h in hooks {
        out.entry(h.subject().to_owned())
            .or_default()
            .push(h.id().to_owned());
    }
    out
}

/// Waits until the service has consumed `n` output messages (any outcome).
async fn wait_consumed(app: &WebhooksApp, n: u64) -> anyhow::Result<()> {
    wait_for("the output messages to be consumed", WAIT, || async {
        let text = app.metrics().await?;
        let consumed: u64 = text
            .lines()
            .filter(|l| l.starts_with("kizuna_webhook_events_consumed_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum();
        Ok((consumed >= n).then_some(()))
    })
    .await
}

async fn pending(pool: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries")
            .fetch_one(pool)
            .await?,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_outputs_reach_a_subscriber_signed_and_verified() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let receiver = Receiver::start().await?;
    let hooks = WebhooksApp::start(settings(&env)?).await?;
    let (_, secret) = hooks
        .subscribe(&receiver.url("crm"), &ALL_TYPES, json!({}))
        .await?;
    receiver
        .configure("crm", json!({"secrets": [secret], "mode": "ok"}))
        .await?;
    let engine = env.start().await?;
    let topics = env.settings.kafka.topics.clone();
    let producer = env.producer()?;

    // The built-in programme: silver needs 30,000 JPY over 2 orders.
    producer
        .send_json(
            &topics.purchases,
            "cust-a",
            &purchase("evt-a1", "cust-a", "ord-a1", 20_000),
        )
        .await?;
    producer
        .send_json(
            &topics.purchases,
            "cust-a",
            &purchase("evt-a2", "cust-a", "ord-a2", 15_000),
        )
        .await?;

    let tier = env
        .reader(&topics.tier_changed)?
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_outage_loses_nothing_and_each_event_is_accepted_once_in_order()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let receiver = Receiver::start().await?;
    let hooks = WebhooksApp::start(settings(&env)?).await?;
    let (sub, secret) = hooks
        .subscribe(&receiver.url("flaky"), &[TIER_CHANGED], json!({}))
        .await?;
    // The receiver is down (503) for its first 15 requests, then recovers.
    receiver
        .configure(
            "flaky",
            json!({"secrets": [secret], "mode": "fail", "status": 503, "fail_count": 15}),
        )
        .await?;
    let producer = env.producer()?;
    let topic = env.settings.kafka.topics.tier_changed.clone();
    let mut sent: HashMap<String, Vec<String>> = HashMap::new();
    for seq in 0..6 {
        for c in 0..4 {
            let customer = format!("cust-{c}");
            let id = produce_output(
                &producer,
                &topic,
                &customer,
                TIER_CHANGED,
                tier_changed(&customer, "member", "silver", seq),
            )
            .await?;
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
    wait_for("the queue to drain", WAIT, || async {
        Ok((pending(&pool).await? == 0).then_some(()))
    })
    .await?;
    let again: Vec<Hook> = receiver
        .requests("flaky")
        .await?
        .into_iter()
        .filter(|h| h.accepted)
        .collect();
    assert_eq!(again.len(), 24);

    // The delivery log has the failures with their status, and the metrics count them.
    let (status, log) = hooks
        .admin(
            Method::GET,
            &format!("/v1/webhooks/subscriptions/{sub}/attempts?limit=1000"),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{log}");
    let attempts = log["attempts"].as_array().cloned().unwrap_or_default();
    assert_eq!(attempts.len(), all.len(), "one log row per request");
    assert!(attempts.iter().filter(|a| a["status_code"] == 503).count() >= 15);
    assert!(attempts.iter().all(|a| a["latency_ms"].as_f64().is_some()));
    let text = hooks.metrics().await?;
    let failures_5xx = text
        .lines()
        .find(|l| l.starts_with("kizuna_webhook_failures_total{class=\"5xx\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(failures_5xx >= 15.0, "{text}");
    hooks.stop().await?;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_does_not_hold_up_another_subscription() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let receiver = Receiver::start().await?;
    let mut s = settings(&env)?;
    s.delivery.max_in_flight = 4;
    s.delivery.max_in_flight_per_subscription = 2;
    s.delivery.request_timeout_ms = 8_000;
    let hooks = WebhooksApp::start(s).await?;
    let (_, stuck_secret) = hooks
        .subscribe(&receiver.url("stuck"), &[TIER_CHANGED], json!({}))
        .await?;
    let (_, fine_secret) = hooks
        .subscribe(&receiver.url("fine"), &[TIER_CHANGED], json!({}))
        .await?;
    receiver
        .configure("stuck", json!({"secrets": [stuck_secret], "mode": "hang"}))
        .await?;
    receiver
        .configure("fine", json!({"secrets": [fine_secret], "mode": "ok"}))
        .await?;
    let producer = env.producer()?;
    let topic = env.settings.kafka.topics.tier_changed.clone();
    let started = std::time::Instant::now();
    // More customers waiting at the hanging receiver than there are request slots.
    for c in 0..10 {
        for seq in 0..2 {
            let customer = format!("cust-{c}");
            produce_output(
                &producer,
                &topic,
                &customer,
                TIER_CHANGED,
                tier_changed(&customer, "member", "silver", seq),
            )
            .await?;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_choose_churn_high_only_and_tier_changes_to_or_from_gold() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let receiver = Receiver::start().await?;
    let hooks = WebhooksApp::start(settings(&env)?).await?;
    let (_, churn_secret) = hooks
        .subscribe(
            &receiver.url("churn"),
            &[CHURN],
            json!({"churn_levels": ["high"]}),
        )
        .await?;
    let (_, gold_secret) = hooks
        .subscribe(
            &receiver.url("gold"),
            &[TIER_CHANGED],
            json!({"tiers": ["gold"]}),
        )
        .await?;
    receiver
        .configure("churn", json!({"secrets": [churn_secret]}))
        .await?;
    receiver
        .configure("gold", json!({"secrets": [gold_secret]}))
        .await?;
    let producer = env.producer()?;
    let topics = env.settings.kafka.topics.clone();
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
        let id = produce_output(
            &producer,
            &topics.churn_risk,
            &customer,
            CHURN,
            churn_changed(&customer, level, seq as u32),
        )
        .await?;
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
        let id = produce_output(
            &producer,
            &topics.tier_changed,
            &customer,
            TIER_CHANGED,
            tier_changed(&customer, from, to, seq as u32),
        )
        .await?;
        if from == "gold" || to == "gold" {
            want_gold.insert(id);
        }
    }
    // Everything consumed and the queue drained: what arrived is all that will arrive.
    wait_consumed(&hooks, 9).await?;
    let pool = env.pool().await?;
    wait_for("the queue to drain", WAIT, || async {
        Ok((pending(&pool).await? == 0).then_some(()))
    })
    .await?;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_subscription_queues_and_resume_delivers_in_order() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let receiver = Receiver::start().await?;
    let hooks = WebhooksApp::start(settings(&env)?).await?;
    let (sub, secret) = hooks
        .subscribe(&receiver.url("paused"), &[TIER_CHANGED], json!({}))
        .await?;
    receiver
        .configure("paused", json!({"secrets": [secret]}))
        .await?;
    let (status, body) = hooks
        .admin(
            Method::POST,
            &format!("/v1/webhooks/subscriptions/{sub}/pause"),
            None,
        )
        .await?;
    assert_eq!((status, body["status"].clone()), (200, json!("paused")));

    let producer = env.producer()?;
    let topic = env.settings.kafka.topics.tier_changed.clone();
    let mut sent: HashMap<String, Vec<String>> = HashMap::new();
    for seq in 0..5 {
        for customer in ["cust-p", "cust-q"] {
            let id = produce_output(
                &producer,
                &topic,
                customer,
                TIER_CHANGED,
                tier_changed(customer, "member", "silver", seq),
            )
            .await?;
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
        .admin(
            Method::POST,
            &format!("/v1/webhooks/subscriptions/{sub}/resume"),
            None,
        )
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_from_a_time_delivers_the_logged_outputs_again() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let receiver = Receiver::start().await?;
    let hooks = WebhooksApp::start(settings(&env)?).await?;
    let (sub, secret) = hooks
        .subscribe(&receiver.url("replay"), &ALL_TYPES, json!({}))
        .await?;
    receiver
        .configure("replay", json!({"secrets": [secret]}))
        .await?;
    let engine = env.start().await?;
    let purchases = env.settings.kafka.topics.purchases.clone();
    let producer = env.producer()?;
    let pool = env.pool().await?;
    let logged = |customer: &'static str| {
        let pool = pool.clone();
        async move {
            let ids: Vec<(uuid::Uuid,)> =
                sqlx::query_as("SELECT ce_id FROM output_log WHERE customer_id = $1")
                    .bind(customer)
                    .fetch_all(&pool)
                    .await?;
            anyhow::Ok(
                ids.into_iter()
                    .map(|(id,)| id.to_string())
                    .collect::<HashSet<String>>(),
            )
        }
    };

    // Before T: one customer's outputs, delivered.
    for (n, amount) in [(1, 20_000), (2, 15_000)] {
        producer
            .send_json(
                &purchases,
                "cust-early",
                &purchase(
                    &format!("evt-e{n}"),
                    "cust-early",
                    &format!("ord-e{n}"),
                    amount,
                ),
            )
            .await?;
    }
    engine
        .wait_for_customer("cust-early", "two purchases", |s| {
            s["metrics"]["orders"] == json!(2.0)
        })
        .await?;
    let early = logged("cust-early").await?;
    assert!(!early.is_empty());
    receiver
        .wait_accepted("replay", "cust-early's outputs", WAIT, |h| {
            let ids: HashSet<&str> = h.iter().map(Hook::id).collect();
            early.iter().all(|id| ids.contains(id.as_str()))
        })
        .await?;
    let t: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT now()").fetch_one(&pool).await?;

    // After T: another customer's outputs, delivered.
    for (n, amount) in [(1, 20_000), (2, 15_000)] {
        producer
            .send_json(
                &purchases,
                "cust-late",
                &purchase(
                    &format!("evt-l{n}"),
                    "cust-late",
                    &format!("ord-l{n}"),
                    amount,
                ),
            )
            .await?;
    }
    engine
        .wait_for_customer("cust-late", "two purchases", |s| {
            s["metrics"]["orders"] == json!(2.0)
        })
        .await?;
    let late = logged("cust-late").await?;
    assert!(!late.is_empty());
    receiver
        .wait_accepted("replay", "cust-late's outputs", WAIT, |h| {
            let ids: HashSet<&str> = h.iter().map(Hook::id).collect();
            late.iter().all(|id| ids.contains(id.as_str()))
        })
        .await?;
    wait_for("the queue to drain", WAIT, || async {
        Ok((pending(&pool).await? == 0).then_some(()))
    })
    .await?;

    // The replay from T queues cust-late's outputs again, not cust-early's.
    let (status, body) = hooks
        .admin(
            Method::POST,
            &format!("/v1/webhooks/subscriptions/{sub}/replay"),
            Some(json!({"since": t})),
        )
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_still_failing_after_the_retry_period_become_dead_letters() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let receiver = Receiver::start().await?;
    let mut s = settings(&env)?;
    s.delivery.retry_period_secs = 2;
    s.delivery.backoff_initial_ms = 200;
    s.delivery.backoff_max_ms = 500;
    let hooks = WebhooksApp::start(s).await?;
    let (sub, secret) = hooks
        .subscribe(&receiver.url("down"), &[TIER_CHANGED], json!({}))
        .await?;
    receiver
        .configure(
            "down",
            json!({"secrets": [secret], "mode": "fail", "status": 500}),
        )
        .await?;
    let producer = env.producer()?;
    let topic = env.settings.kafka.topics.tier_changed.clone();
    let mut dead = HashSet::new();
    for (customer, seq) in [("cust-d", 1), ("cust-d", 2), ("cust-e", 1)] {
        dead.insert(
            produce_output(
                &producer,
                &topic,
                customer,
                TIER_CHANGED,
                tier_changed(customer, "member", "silver", seq),
            )
            .await?,
        );
    }
    let letters = wait_for("three dead letters", WAIT, || async {
        let (status, body) = hooks
            .admin(
                Method::GET,
                &format!("/v1/webhooks/subscriptions/{sub}/dead-letters"),
                None,
            )
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
    let next = produce_output(
        &producer,
        &topic,
        "cust-d",
        TIER_CHANGED,
        tier_changed("cust-d", "silver", "gold", 3),
    )
    .await?;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_that_keeps_failing_is_disabled_and_announced() -> anyhow::Result<()> {
    let logs = LogCapture::install();
    let env = TestEnv::new().await?;
    let receiver = Receiver::start().await?;
    let mut s = settings(&env)?;
    s.delivery.disable_after_secs = 1;
    s.delivery.disable_min_failures = 3;
    let webhooks_topic = s.kafka.topics.webhooks.clone();
    let hooks = WebhooksApp::start(s).await?;
    let (failing, failing_secret) = hooks
        .subscribe(&receiver.url("failing"), &[TIER_CHANGED], json!({}))
        .await?;
    let (gone, gone_secret) = hooks
        .subscribe(
            &format!("{}?token=do-not-print", receiver.url("gone")),
            &[TIER_CHANGED],
            json!({}),
        )
        .await?;
    receiver
        .configure(
            "failing",
            json!({"secrets": [failing_secret], "mode": "fail", "status": 503}),
        )
        .await?;
    receiver
        .configure("gone", json!({"secrets": [gone_secret], "mode": "gone"}))
        .await?;
    let producer = env.producer()?;
    let topic = env.settings.kafka.topics.tier_changed.clone();
    let first = produce_output(
        &producer,
        &topic,
        "cust-f",
        TIER_CHANGED,
        tier_changed("cust-f", "member", "silver", 1),
    )
    .await?;

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
    let second = produce_output(
        &producer,
        &topic,
        "cust-f",
        TIER_CHANGED,
        tier_changed("cust-f", "silver", "gold", 2),
    )
    .await?;
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
        .admin(
            Method::POST,
            &format!("/v1/webhooks/subscriptions/{failing}/resume"),
            None,
        )
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_answers_problems_and_rotates_secrets_without_a_gap() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let receiver = Receiver::start().await?;
    let hooks = WebhooksApp::start(settings(&env)?).await?;

    // No token, a wrong token: 401 with WWW-Authenticate, as a problem.
    for token in [None, Some("wrong")] {
        let mut req = hooks.http.get(hooks.url("/v1/webhooks/subscriptions"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        assert_eq!(resp.status(), 401);
        assert!(resp.headers().contains_key("www-authenticate"));
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
        let problem: Value = resp.json().await?;
        assert_eq!(problem["status"], 401);
    }
    // Invalid requests name the field; malformed JSON and unknown ids are problems too.
    let (status, problem) = hooks
        .admin(
            Method::POST,
            "/v1/webhooks/subscriptions",
            Some(json!({"url": receiver.url("x"), "event_types": ["kizuna.v1.Nope"]})),
        )
        .await?;
    assert_eq!(
        (status, problem["field"].clone()),
        (422, json!("event_types"))
    );
    let (status, problem) = hooks
        .admin(
            Method::POST,
            "/v1/webhooks/subscriptions",
            Some(json!({"url": "ftp://example.com", "event_types": [TIER_CHANGED]})),
        )
        .await?;
    assert_eq!((status, problem["field"].clone()), (422, json!("url")));
    let resp = hooks
        .http
        .post(hooks.url("/v1/webhooks/subscriptions"))
        .bearer_auth(format!("webhooks-admin-{}", env.id))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let (status, problem) = hooks
        .admin(
            Method::GET,
            &format!("/v1/webhooks/subscriptions/{}", uuid::Uuid::new_v4()),
            None,
        )
        .await?;
    assert_eq!((status, problem["status"].clone()), (404, json!(404)));

    // Rotation: during the grace period every delivery carries both signatures, so a
    // receiver still on the old secret and one already on the new both verify.
    let (sub, old) = hooks
        .subscribe(&receiver.url("rot"), &[TIER_CHANGED], json!({}))
        .await?;
    receiver.configure("rot", json!({"secrets": [old]})).await?;
    let producer = env.producer()?;
    let topic = env.settings.kafka.topics.tier_changed.clone();
    let before = produce_output(
        &producer,
        &topic,
        "cust-r",
        TIER_CHANGED,
        tier_changed("cust-r", "member", "silver", 1),
    )
    .await?;
    receiver
        .wait_accepted("rot", "a delivery before the rotation", WAIT, |h| {
            h.iter().any(|h| h.id() == before)
        })
        .await?;
    let (status, rotated) = hooks
        .admin(
            Method::POST,
            &format!("/v1/webhooks/subscriptions/{sub}/rotate-secret"),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap_or_default().to_owned();
    assert!(new.starts_with("whsec_") && new != old);
    let (_, shown) = hooks
        .admin(
            Method::GET,
            &format!("/v1/webhooks/subscriptions/{sub}/secret"),
            None,
        )
        .await?;
    assert_eq!(shown["secret"], json!(new));
    for (n, secrets) in [(2, vec![old.clone()]), (3, vec![new.clone()])] {
        receiver
            .configure("rot", json!({"secrets": secrets}))
            .await?;
        let id = produce_output(
            &producer,
            &topic,
            "cust-r",
            TIER_CHANGED,
            tier_changed("cust-r", "silver", "gold", n),
        )
        .await?;
        let got = receiver
            .wait_accepted("rot", "a delivery after the rotation", WAIT, |h| {
                h.iter().any(|h| h.id() == id)
            })
            .await?;
        let hook = got.iter().find(|h| h.id() == id).expect("found above");
        assert_eq!(
            hook.signature.as_deref().unwrap_or("").split(' ').count(),
            2,
            "signed with both secrets"
        );
    }
    assert_all_verified(&receiver.requests("rot").await?);

    // List, delete, gone.
    let (status, listed) = hooks
        .admin(Method::GET, "/v1/webhooks/subscriptions", None)
        .await?;
    assert_eq!(status, 200);
    assert!(listed["subscriptions"].as_array().is_some_and(|l| {
        l.iter()
            .any(|s| s["id"] == json!(sub) && s.get("secret").is_none())
    }));
    let (status, _) = hooks
        .admin(
            Method::DELETE,
            &format!("/v1/webhooks/subscriptions/{sub}"),
            None,
        )
        .await?;
    assert_eq!(status, 204);
    let (status, _) = hooks
        .admin(
            Method::GET,
            &format!("/v1/webhooks/subscriptions/{sub}"),
            None,
        )
        .await?;
    assert_eq!(status, 404);
    hooks.stop().await?;
    env.cleanup().await
}
