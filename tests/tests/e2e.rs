//! End-to-end: the real engine against the real broker and the real PostgreSQL.
//! Run through `tests/run.sh`, which starts the stack and runs this suite on each broker.

use std::time::Duration;

use kizuna_e2e::{TestEnv, wait_for};
use kizuna_proto::v1;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn purchase(event_id: &str, customer: &str, order: &str, amount_minor: i64) -> serde_json::Value {
    purchase_at(event_id, customer, order, amount_minor, chrono::Utc::now())
}

fn purchase_at(
    event_id: &str,
    customer: &str,
    order: &str,
    amount_minor: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> serde_json::Value {
    json!({
        "eventId": event_id,
        "customerId": customer,
        "occurredAt": at.to_rfc3339(),
        "orderId": order,
        "kind": "PURCHASE_KIND_PURCHASE",
        "amountMinor": amount_minor.to_string(),
        "currency": "JPY",
        "lineItems": [{"sku": "tea-01", "category": "daily_goods", "quantity": 1, "unitPriceMinor": amount_minor.to_string()}],
        "channel": "web"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchases_carry_a_customer_across_a_tier_threshold() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let app = env.start().await?;
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

    let state = app
        .wait_for_customer("cust-a", "both purchases applied", |s| {
            s["metrics"]["orders"] == json!(2.0)
        })
        .await?;
    assert_eq!(state["metrics"]["lifetime_spend_minor"], json!(35_000));
    assert_eq!(state["tier"], json!("silver"));
    assert_eq!(state["currency"], json!("JPY"));

    let (status, body) = app.get("/v1/customers/nobody").await?;
    assert_eq!(status, 404, "{body}");

    // The state row in PostgreSQL.
    let pool = env.pool().await?;
    let (tier, spend): (String, i64) = sqlx::query_as(
        "SELECT tier, lifetime_spend_minor FROM customers WHERE customer_id = 'cust-a'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!((tier.as_str(), spend), ("silver", 35_000));

    // Wait until the relay has published everything, then read the whole output topic.
    wait_for("the outbox to drain", WAIT, || async {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM outbox")
            .fetch_one(&pool)
            .await?;
        Ok((n == 0).then_some(()))
    })
    .await?;
    let out = env.reader(&topics.tier_changed)?.read_to_end(WAIT).await?;
    assert_eq!(out.len(), 1, "exactly one TierChanged: {out:?}");
    let msg = &out[0];
    assert_eq!(msg.key.as_deref(), Some("cust-a"));
    assert_eq!(msg.header("ce_specversion"), Some("1.0"));
    assert_eq!(msg.header("ce_type"), Some("kizuna.v1.TierChanged"));
    assert_eq!(msg.header("ce_source"), Some("kizuna/loyalty-engine"));
    assert_eq!(msg.header("content-type"), Some("application/json"));
    assert_eq!(
        msg.header("ce_dataschema"),
        Some(
            "https://github.com/kizuna-loyalty/kizuna/blob/main/proto/kizuna/v1/outputs.proto#kizuna.v1.TierChanged"
        )
    );
    let ce_id = msg.header("ce_id").unwrap_or_default();
    assert!(
        uuid::Uuid::parse_str(ce_id).is_ok(),
        "ce_id {ce_id:?} is a UUID"
    );
    let ce_time = msg.header("ce_time").unwrap_or_default();
    assert!(
        chrono::DateTime::parse_from_rfc3339(ce_time).is_ok(),
        "ce_time {ce_time:?}"
    );

    // The payload is a TierChanged in the protobuf JSON mapping.
    let event: v1::TierChanged = serde_json::from_slice(&msg.payload)?;
    assert_eq!(event.customer_id, "cust-a");
    assert_eq!(event.previous_tier, "member");
    assert_eq!(event.new_tier, "silver");
    assert_eq!(event.kind(), v1::TierChangeKind::Upgrade);
    assert_eq!(event.caused_by, "evt-a2");
    assert!(
        event.reason.contains("35000 JPY"),
        "reason: {}",
        event.reason
    );
    let metrics = event.metrics.expect("a metrics snapshot");
    assert_eq!(metrics.lifetime_spend_minor, 35_000);
    assert_eq!(metrics.orders, 2.0);

    let text = app.get_text("/metrics").await?;
    assert!(
        text.contains("kizuna_tier_transitions_total{from=\"member\",to=\"silver\"} 1"),
        "{text}"
    );
    let (status, ready) = app.get("/readyz").await?;
    assert_eq!(status, 200, "{ready}");

    app.stop().await?;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_is_dead_lettered_and_the_next_one_is_processed() -> anyhow::Result<()>
{
    let env = TestEnv::new().await?;
    let app = env.start().await?;
    let topics = env.settings.kafka.topics.clone();
    let producer = env.producer()?;

    let garbage: &[u8] = b"{\"eventId\": \"evt-b1\", \"customerId\": \"cust-b\", \"amountMinor\": ";
    producer
        .send(
            &topics.purchases,
            Some("cust-b"),
            garbage,
            &[("content-type", b"application/json")],
        )
        .await?;
    producer
        .send_json(
            &topics.purchases,
            "cust-b",
            &purchase("evt-b2", "cust-b", "ord-b2", 1_200),
        )
        .await?;

    let state = app
        .wait_for_customer("cust-b", "the valid purchase behind the bad one", |s| {
            s["metrics"]["lifetime_spend_minor"] == json!(1_200)
        })
        .await?;
    assert_eq!(state["metrics"]["orders"], json!(1.0));

    let dlq = env
        .reader(&topics.dead_letter)?
        .collect_until(WAIT, |got| !got.is_empty())
        .await?;
    let letter = &dlq[0];
    assert_eq!(letter.payload, garbage, "the raw bytes, unchanged");
    assert_eq!(letter.header("kizuna-dlq-reason"), Some("unparseable"));
    assert_eq!(
        letter.header("kizuna-dlq-topic"),
        Some(topics.purchases.as_str())
    );
    assert_eq!(letter.key.as_deref(), Some("cust-b"));

    let text = app.get_text("/metrics").await?;
    assert!(
        text.contains("kizuna_dead_letters_total{reason=\"unparseable\""),
        "{text}"
    );

    app.stop().await?;
    env.cleanup().await
}

fn refund_at(
    event_id: &str,
    customer: &str,
    order: &str,
    amount_minor: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> serde_json::Value {
    json!({
        "eventId": event_id,
        "customerId": customer,
        "occurredAt": at.to_rfc3339(),
        "orderId": order,
        "kind": "PURCHASE_KIND_REFUND",
        "amountMinor": amount_minor.to_string(),
        "currency": "JPY"
    })
}

fn nps(event_id: &str, customer: &str, score: u32) -> serde_json::Value {
    json!({
        "eventId": event_id,
        "customerId": customer,
        "occurredAt": chrono::Utc::now().to_rfc3339(),
        "surveyId": "nps-2026q4",
        "kind": "SURVEY_KIND_NPS",
        "score": score,
        "comment": "the delivery was late again"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostage_appears_when_a_big_spender_answers_nps_3() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let app = env.start().await?;
    let topics = env.settings.kafka.topics.clone();
    let producer = env.producer()?;

    producer
        .send_json(
            &topics.purchases,
            "cust-h",
            &purchase("evt-h1", "cust-h", "ord-h1", 150_000),
        )
        .await?;
    app.wait_for_customer("cust-h", "the purchase", |s| {
        s["segment"] == json!("high_value_not_loyal")
    })
    .await?;
    producer
        .send_json(&topics.surveys, "cust-h", &nps("evt-h2", "cust-h", 3))
        .await?;
    let state = app
        .wait_for_customer("cust-h", "the detractor answer", |s| {
            s["segment"] == json!("hostage")
        })
        .await?;
    assert_eq!(state["metrics"]["nps_category"], json!("detractor"));

    let changes = env
        .reader(&topics.segment_changed)?
        .collect_until(WAIT, |got| {
            got.iter().any(|m| {
                m.json()
                    .is_ok_and(|v| v["newSegment"] == json!("SEGMENT_HOSTAGE"))
            })
        })
        .await?;
    let hostage = changes
        .iter()
        .find(|m| {
            m.json()
                .is_ok_and(|v| v["newSegment"] == json!("SEGMENT_HOSTAGE"))
        })
        .expect("found above");
    assert_eq!(hostage.header("ce_type"), Some("kizuna.v1.SegmentChanged"));
    assert_eq!(
        hostage.header("ce_dataschema").map(str::to_owned),
        Some(kizuna_proto::dataschema("kizuna.v1.SegmentChanged"))
    );
    assert_eq!(hostage.key.as_deref(), Some("cust-h"));
    let event: v1::SegmentChanged = serde_json::from_slice(&hostage.payload)?;
    assert_eq!(event.previous_segment(), v1::Segment::HighValueNotLoyal);
    assert_eq!(event.caused_by, "evt-h2");
    assert!(event.reason.contains("NPS 3"), "{}", event.reason);
    assert_eq!(
        event.metrics.map(|m| m.nps_category),
        Some("detractor".to_owned())
    );

    app.stop().await?;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_below_the_threshold_warns_now_and_downgrades_after_the_grace_period()
-> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    // The as-of clock: "now" is the largest event time seen, so 30 days of grace pass as soon
    // as an event 40 days later arrives, without a real wait.
    env.settings.clock = kizuna::config::Clock::EventTime;
    let app = env.start().await?;
    let topics = env.settings.kafka.topics.clone();
    let producer = env.producer()?;
    let t0 = chrono::Utc::now() - chrono::Duration::days(100);

    for (i, at) in [t0, t0 + chrono::Duration::hours(1)]
        .into_iter()
        .enumerate()
    {
        let id = format!("evt-r{i}");
        producer
            .send_json(
                &topics.purchases,
                "cust-r",
                &purchase_at(&id, "cust-r", &format!("ord-r{i}"), 20_000, at),
            )
            .await?;
    }
    app.wait_for_customer("cust-r", "silver", |s| s["tier"] == json!("silver"))
        .await?;

    let refund_time = t0 + chrono::Duration::days(1);
    producer
        .send_json(
            &topics.purchases,
            "cust-r",
            &refund_at("evt-r9", "cust-r", "ord-r1", 20_000, refund_time),
        )
        .await?;
    let state = app
        .wait_for_customer("cust-r", "the pending downgrade", |s| {
            !s["pending_downgrade"].is_null()
        })
        .await?;
    assert_eq!(
        state["tier"],
        json!("silver"),
        "no drop during the grace period"
    );

    // Time passes: another customer's purchase 40 days later moves the clock.
    producer
        .send_json(
            &topics.purchases,
            "cust-other",
            &purchase_at(
                "evt-o1",
                "cust-other",
                "ord-o1",
                1_000,
                t0 + chrono::Duration::days(40),
            ),
        )
        .await?;
    app.wait_for_customer("cust-r", "the downgrade by the sweeper", |s| {
        s["tier"] == json!("member")
    })
    .await?;

    let is_r = |m: &kizuna_e2e::Received| m.key.as_deref() == Some("cust-r");
    let out = env
        .reader(&topics.tier_changed)?
        .collect_until(WAIT, |got| got.iter().filter(|m| is_r(m)).count() >= 3)
        .await?;
    let mine: Vec<_> = out.iter().filter(|m| is_r(m)).collect();
    let types: Vec<_> = mine
        .iter()
        .map(|m| m.header("ce_type").unwrap_or_default())
        .collect();
    assert_eq!(
        types,
        [
            "kizuna.v1.TierChanged",
            "kizuna.v1.TierWillDowngrade",
            "kizuna.v1.TierChanged"
        ],
        "upgrade, warning, drop, in order"
    );
    let warning: v1::TierWillDowngrade = serde_json::from_slice(&mine[1].payload)?;
    assert_eq!(
        (warning.previous_tier.as_str(), warning.new_tier.as_str()),
        ("silver", "member")
    );
    assert_eq!(warning.caused_by, "evt-r9");
    let due = warning.downgrade_at.expect("a downgrade date");
    assert_eq!(
        due.seconds,
        (refund_time + chrono::Duration::days(30)).timestamp()
    );
    assert!(
        warning
            .to_keep_tier
            .iter()
            .any(|k| k.contains("spend 10000 JPY more")),
        "{:?}",
        warning.to_keep_tier
    );
    let drop: v1::TierChanged = serde_json::from_slice(&mine[2].payload)?;
    assert_eq!(drop.kind(), v1::TierChangeKind::Downgrade);
    assert_eq!(
        (drop.previous_tier.as_str(), drop.new_tier.as_str()),
        ("silver", "member")
    );
    assert_eq!(drop.caused_by, "sweep");
    assert_eq!(drop.effective_at.map(|t| t.seconds), Some(due.seconds));

    app.stop().await?;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_timeline_and_audited_override() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let app = env.start().await?;
    let topics = env.settings.kafka.topics.clone();
    let producer = env.producer()?;
    producer
        .send_json(
            &topics.purchases,
            "cust-d",
            &purchase("evt-d1", "cust-d", "ord-d1", 20_000),
        )
        .await?;
    app.wait_for_customer("cust-d", "the first purchase", |s| {
        s["metrics"]["orders"] == json!(1.0)
    })
    .await?;

    // Dry run: what would one more purchase do? Nothing is written.
    let body = json!({ "customer_id": "cust-d", "event": { "purchase": purchase("evt-d2", "cust-d", "ord-d2", 15_000) } });
    let resp = app
        .http
        .post(app.url("/v1/evaluate"))
        .json(&body)
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 200);
    let dry: serde_json::Value = resp.json().await?;
    assert_eq!(dry["state"]["tier"], json!("silver"));
    assert_eq!(dry["outputs"][0]["ce_type"], json!("kizuna.v1.TierChanged"));
    assert_eq!(dry["outputs"][0]["data"]["newTier"], json!("silver"));
    let (_, stored) = app.get("/v1/customers/cust-d").await?;
    assert_eq!(stored["tier"], json!("member"), "the dry run wrote nothing");
    let bad = json!({ "customer_id": "cust-d", "event": { "purchase": { "eventId": "x", "customerId": "cust-d" } } });
    let resp = app
        .http
        .post(app.url("/v1/evaluate"))
        .json(&bad)
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 422);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let problem: serde_json::Value = resp.json().await?;
    assert_eq!(problem["status"], json!(422));
    assert!(
        problem["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("#problem-would-be-dead-lettered")),
        "{problem}"
    );
    assert!(problem["reason"].is_string(), "{problem}");

    // The admin override needs the bearer token.
    let req = json!({ "tier": "gold", "reason": "goodwill after a lost parcel", "expires_at": (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339(), "set_by": "ops-lead" });
    let path = app.url("/v1/customers/cust-d/tier-override");
    let resp = app.http.post(&path).json(&req).send().await?;
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(
        resp.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer realm=\"kizuna\"")
    );
    let problem: serde_json::Value = resp.json().await?;
    assert_eq!(problem["status"], json!(401));
    let resp = app
        .http
        .post(&path)
        .bearer_auth("wrong")
        .json(&req)
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 401);
    let token = format!("admin-{}", env.id);
    let resp = app
        .http
        .post(&path)
        .bearer_auth(&token)
        .json(&req)
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().await?);
    let (_, state) = app.get("/v1/customers/cust-d").await?;
    assert_eq!(state["tier"], json!("gold"));
    assert_eq!(state["override"]["set_by"], json!("ops-lead"));
    let pool = env.pool().await?;
    let (audited,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM tier_overrides WHERE customer_id = 'cust-d' AND tier = 'gold'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(audited, 1);
    let out = env
        .reader(&topics.tier_changed)?
        .collect_until(WAIT, |got| !got.is_empty())
        .await?;
    let changed: v1::TierChanged = serde_json::from_slice(&out[0].payload)?;
    assert_eq!(changed.kind(), v1::TierChangeKind::Override);
    assert_eq!(changed.caused_by, "operator:ops-lead");

    // A second purchase, then the timeline: newest first, with the outputs each event caused.
    producer
        .send_json(
            &topics.purchases,
            "cust-d",
            &purchase("evt-d3", "cust-d", "ord-d3", 1_000),
        )
        .await?;
    app.wait_for_customer("cust-d", "the second purchase", |s| {
        s["metrics"]["orders"] == json!(2.0)
    })
    .await?;
    let (status, page) = app.get("/v1/customers/cust-d/timeline?limit=2").await?;
    assert_eq!(status, 200);
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["event_id"], json!("evt-d3"));
    assert_eq!(
        items[1]["type"],
        json!("output"),
        "the override, caused by an operator"
    );
    let next = page["next"].as_str().expect("a next page").to_owned();
    let (_, page2) = app
        .get(&format!(
            "/v1/customers/cust-d/timeline?limit=2&before={next}"
        ))
        .await?;
    assert_eq!(page2["items"][0]["event_id"], json!("evt-d1"));
    assert!(page2["next"].is_null());

    app.stop().await?;
    env.cleanup().await
}

fn ticket_at(
    event_id: &str,
    customer: &str,
    ticket: &str,
    status: &str,
    escalated: bool,
    at: chrono::DateTime<chrono::Utc>,
) -> serde_json::Value {
    json!({
        "eventId": event_id,
        "customerId": customer,
        "occurredAt": at.to_rfc3339(),
        "ticketId": ticket,
        "status": status,
        "priority": "TICKET_PRIORITY_HIGH",
        "channel": "chat",
        "category": "delivery",
        "escalated": escalated,
        "slaBreached": escalated,
        "csat": 1,
        "sentiment": -0.8
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_churn_alert_says_why_and_what_to_do() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let app = env.start().await?;
    let topics = env.settings.kafka.topics.clone();
    let producer = env.producer()?;
    let now = chrono::Utc::now();

    // A big spender, buying today…
    for i in 0..3 {
        let at = now - chrono::Duration::hours(3 - i);
        producer
            .send_json(
                &topics.purchases,
                "cust-c",
                &purchase_at(
                    &format!("evt-c{i}"),
                    "cust-c",
                    &format!("ord-c{i}"),
                    60_000,
                    at,
                ),
            )
            .await?;
    }
    app.wait_for_customer("cust-c", "the purchases", |s| {
        s["metrics"]["orders"] == json!(3.0)
    })
    .await?;
    // …has two bad support experiences and answers NPS 2.
    producer
        .send_json(
            &topics.support_tickets,
            "cust-c",
            &ticket_at(
                "evt-c5",
                "cust-c",
                "T-1",
                "TICKET_STATUS_REOPENED",
                true,
                now,
            ),
        )
        .await?;
    producer
        .send_json(
            &topics.support_tickets,
            "cust-c",
            &ticket_at(
                "evt-c6",
                "cust-c",
                "T-2",
                "TICKET_STATUS_RESOLVED",
                false,
                now,
            ),
        )
        .await?;
    producer
        .send_json(&topics.surveys, "cust-c", &nps("evt-c7", "cust-c", 2))
        .await?;
    let state = app
        .wait_for_customer("cust-c", "high churn risk", |s| {
            s["churn"]["level"] == json!("high")
        })
        .await?;
    assert_eq!(state["segment"], json!("hostage"));

    let alerts = env
        .reader(&topics.churn_risk)?
        .collect_until(WAIT, |got| {
            got.iter().any(|m| {
                m.json()
                    .is_ok_and(|v| v["newLevel"] == json!("CHURN_LEVEL_HIGH"))
            })
        })
        .await?;
    let alert = alerts
        .iter()
        .find(|m| {
            m.json()
                .is_ok_and(|v| v["newLevel"] == json!("CHURN_LEVEL_HIGH"))
        })
        .expect("found above");
    assert_eq!(alert.header("ce_type"), Some("kizuna.v1.ChurnRiskChanged"));
    assert_eq!(
        alert.header("ce_dataschema").map(str::to_owned),
        Some(kizuna_proto::dataschema("kizuna.v1.ChurnRiskChanged"))
    );
    let event: v1::ChurnRiskChanged = serde_json::from_slice(&alert.payload)?;
    assert_eq!(
        event.play(),
        v1::Play::VipOutreach,
        "a high-value hostage gets personal outreach"
    );
    assert!(event.score >= 0.7, "{}", event.score);
    let names: Vec<&str> = event.drivers.iter().map(|d| d.name.as_str()).collect();
    assert!(
        names.contains(&"bad_experiences") && names.contains(&"detractor_nps"),
        "{names:?}"
    );
    let sum: f64 = event.drivers.iter().map(|d| d.contribution).sum();
    assert!(
        (sum - event.score).abs() < 1e-6,
        "contributions add up to the score"
    );
    assert!(
        event
            .drivers
            .windows(2)
            .all(|w| w[0].contribution >= w[1].contribution),
        "drivers are ranked"
    );
    assert_eq!(
        event.metrics.as_ref().and_then(|m| m.churn_risk),
        Some(event.score)
    );

    let text = app.get_text("/metrics").await?;
    assert!(
        text.contains("kizuna_churn_risk_changes_total{level=\"high\",play=\"vip_outreach\"}"),
        "{text}"
    );
    app.stop().await?;
    env.cleanup().await
}

/// The `kizuna` binary next to this test binary (tests/run.sh builds it first).
fn kizuna_bin() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or_else(|| anyhow::anyhow!("unexpected test binary location {}", exe.display()))?;
    let bin = dir.join("kizuna");
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: run `cargo build --bin kizuna` first",
        bin.display()
    );
    Ok(bin)
}

/// Runs `kizuna ARGS` against the test environment; returns (success, stdout, stderr).
fn kizuna_cli(
    env: &TestEnv,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> anyhow::Result<(bool, String, String)> {
    use std::io::Write;
    let mut cmd = std::process::Command::new(kizuna_bin()?);
    cmd.args(args)
        .env("KIZUNA_DATABASE__URL", &env.database_url)
        .env("KIZUNA_KAFKA__BROKERS", &env.settings.kafka.brokers)
        .env("KIZUNA_KAFKA__GROUP_ID", &env.settings.kafka.group_id)
        .env(
            "KIZUNA_KAFKA__TOPICS__TIER_CHANGED",
            &env.settings.kafka.topics.tier_changed,
        )
        .env(
            "KIZUNA_KAFKA__TOPICS__CHURN_RISK",
            &env.settings.kafka.topics.churn_risk,
        )
        .env(
            "KIZUNA_KAFKA__TOPICS__SEGMENT_CHANGED",
            &env.settings.kafka.topics.segment_changed,
        )
        .env(
            "KIZUNA_KAFKA__PARTITIONS",
            env.settings.kafka.partitions.to_string(),
        )
        .env_remove("KIZUNA_CONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn()?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.unwrap_or_default())?;
    }
    let out = child.wait_with_output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A year of purchases for `customers` customers, as InputEvent JSON lines: each buys on
/// their own rhythm; every fifth stops after a few months.
fn history(customers: usize, end: chrono::DateTime<chrono::Utc>) -> Vec<String> {
    let mut lines = Vec::new();
    let mut seed: u64 = 0x5eed;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as f64 / (1u64 << 31) as f64
    };
    for c in 0..customers {
        let id = format!("hist-{c:04}");
        let rhythm = 5.0 + next() * 40.0;
        let stop = if c % 5 == 0 {
            60.0 + next() * 120.0
        } else {
            365.0
        };
        let mut day = next() * 30.0;
        let mut n = 0;
        while day < stop.min(364.0) {
            let at = end - chrono::Duration::days(365)
                + chrono::Duration::minutes((day * 1440.0) as i64);
            let amount = 1_000 + (next() * 9_000.0) as i64;
            let purchase = purchase_at(
                &format!("{id}-e{n}"),
                &id,
                &format!("{id}-o{n}"),
                amount,
                at,
            );
            lines.push(json!({ "purchase": purchase }).to_string());
            n += 1;
            day += rhythm * (0.5 + next());
        }
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_fit_model_export_scores_and_recompute_from_the_cli() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let end = chrono::Utc::now() - chrono::Duration::days(1);
    let mut lines = history(300, end);
    let valid = lines.len();
    lines.insert(10, "{\"purchase\": {\"eventId\": \"broken\"".to_owned());
    lines.insert(20, String::new());
    lines.insert(30, json!({ "surveyResponse": { "eventId": "s", "customerId": "hist-0001", "occurredAt": end.to_rfc3339(), "surveyId": "x", "kind": "SURVEY_KIND_NPS", "score": 11 } }).to_string());
    let file = std::env::temp_dir().join(format!("kizuna-backfill-{}.jsonl", env.id));
    std::fs::write(&file, lines.join("\n"))?;
    let path = file.to_string_lossy().into_owned();

    let (ok, _, err) = kizuna_cli(
        &env,
        &["backfill", &path, "--clock", "event-time", "--no-outputs"],
        None,
    )?;
    assert!(ok, "{err}");
    assert!(
        err.contains("line 11: unparseable"),
        "bad lines are reported by number: {err}"
    );
    assert!(err.contains("line 31: score_out_of_range"), "{err}");
    assert!(err.contains(&format!("{valid} events applied")), "{err}");
    assert!(err.contains("2 bad lines skipped"), "{err}");
    // --no-outputs: the states are there, no output event was queued or logged.
    let pool = env.pool().await?;
    let (states, queued, logged): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM outbox), (SELECT count(*) FROM output_log)",
    )
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    assert!(states > 0, "the backfill wrote no customer");
    assert_eq!((queued, logged), (0, 0), "--no-outputs queued outputs");
    // Running it again applies nothing twice.
    let (ok, _, err) = kizuna_cli(&env, &["backfill", &path, "--clock", "event-time"], None)?;
    assert!(ok, "{err}");
    assert!(
        err.contains("0 events applied") && err.contains(&format!("{valid} already applied")),
        "{err}"
    );
    // The same events from stdin, under another source name: deduplicated by event id.
    let (ok, _, err) = kizuna_cli(
        &env,
        &["backfill", "-", "--clock", "event-time"],
        Some(lines.join("\n").as_bytes()),
    )?;
    assert!(ok, "{err}");
    assert!(err.contains(&format!("{valid} duplicates")), "{err}");

    let pool = env.pool().await?;
    let (customers,): (i64,) = sqlx::query_as("SELECT count(*) FROM customers")
        .fetch_one(&pool)
        .await?;
    assert_eq!(customers, 300);

    let (ok, _, err) = kizuna_cli(&env, &["fit-model", "--clock", "event-time"], None)?;
    assert!(ok, "{err}");
    assert!(err.contains("stored as model version 1"), "{err}");
    let (r, converged_customers): (f64, f64) =
        sqlx::query_as("SELECT r, customers FROM churn_models WHERE version = 1")
            .fetch_one(&pool)
            .await?;
    assert!(
        r > 0.0 && converged_customers >= 299.0,
        "r {r}, customers {converged_customers}"
    );

    let as_of = end.to_rfc3339();
    let (ok, csv, err) = kizuna_cli(
        &env,
        &["export-scores", "--as-of", &as_of, "--horizon-days", "90"],
        None,
    )?;
    assert!(ok, "{err}");
    let mut rows = csv.lines();
    assert_eq!(
        rows.next(),
        Some("customer_id,p_alive,expected_purchases,clv,churn_risk,churn_level,tier,segment")
    );
    let rows: Vec<Vec<&str>> = rows.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 300);
    let risk = |id: &str| -> f64 {
        rows.iter()
            .find(|r| r[0] == id)
            .and_then(|r| r[4].parse().ok())
            .unwrap_or(f64::NAN)
    };
    // Customers who stopped months ago rank above those who kept buying.
    let stopped: Vec<f64> = (0..300)
        .step_by(5)
        .map(|c| risk(&format!("hist-{c:04}")))
        .collect();
    let active: Vec<f64> = (1..300)
        .step_by(5)
        .map(|c| risk(&format!("hist-{c:04}")))
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(
        mean(&stopped) > mean(&active) + 0.3,
        "stopped {} vs active {}",
        mean(&stopped),
        mean(&active)
    );
    for r in &rows {
        let p_alive: f64 = r[1].parse()?;
        assert!((0.0..=1.0).contains(&p_alive), "{r:?}");
    }

    let (ok, _, err) = kizuna_cli(&env, &["recompute", "--clock", "event-time"], None)?;
    assert!(ok, "{err}");
    assert!(err.contains("recomputed 300 customers"), "{err}");
    let (ok, _, err) = kizuna_cli(&env, &["recompute", "--clock", "event-time"], None)?;
    assert!(ok, "{err}");
    assert!(
        err.contains("0 tier changes, 0 output events"),
        "a second recompute finds no difference: {err}"
    );

    std::fs::remove_file(&file).ok();
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_tell_what_happened_by_name() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let app = env.start().await?;
    let topics = env.settings.kafka.topics.clone();
    let producer = env.producer()?;
    for (i, amount) in [20_000, 15_000].into_iter().enumerate() {
        producer
            .send_json(
                &topics.purchases,
                "cust-m",
                &purchase(&format!("evt-m{i}"), "cust-m", &format!("ord-m{i}"), amount),
            )
            .await?;
    }
    // The same event again, and one that cannot be read.
    producer
        .send_json(
            &topics.purchases,
            "cust-m",
            &purchase("evt-m1", "cust-m", "ord-m1", 15_000),
        )
        .await?;
    producer
        .send(&topics.purchases, Some("cust-m"), b"\x00\x01garbage", &[])
        .await?;
    producer
        .send_json(&topics.surveys, "cust-m", &nps("evt-m9", "cust-m", 10))
        .await?;

    let p = &topics.purchases;
    let s = &topics.surveys;
    let expected = [
        format!("kizuna_events_consumed_total{{outcome=\"applied\",topic=\"{p}\"}} 2"),
        format!("kizuna_events_consumed_total{{outcome=\"duplicate\",topic=\"{p}\"}} 1"),
        format!("kizuna_events_consumed_total{{outcome=\"dead_lettered\",topic=\"{p}\"}} 1"),
        format!("kizuna_events_consumed_total{{outcome=\"applied\",topic=\"{s}\"}} 1"),
        format!("kizuna_dead_letters_total{{reason=\"unparseable\",topic=\"{p}\"}} 1"),
        "kizuna_tier_transitions_total{from=\"member\",to=\"silver\"} 1".to_owned(),
        "to=\"angel\"} 1".to_owned(),
        "kizuna_customers{tier=\"silver\"} 1".to_owned(),
        "kizuna_customers_by_segment{segment=\"angel\"} 1".to_owned(),
        "kizuna_customers_by_churn_level{level=\"low\"} 1".to_owned(),
        "kizuna_outbox_backlog_rows 0".to_owned(),
        "kizuna_model_version 0".to_owned(),
        "kizuna_db_pool_max_connections 5".to_owned(),
        "kizuna_assigned_partitions 9".to_owned(),
    ];
    let names = [
        "kizuna_batch_events_bucket",
        "kizuna_batch_duration_seconds_bucket",
        "kizuna_batch_stage_seconds_bucket{stage=\"ledger\"",
        "kizuna_event_processing_lag_seconds_bucket",
        "kizuna_outbox_publish_latency_seconds_bucket",
        "kizuna_outbox_published_total{topic=",
        "kizuna_outputs_total{kind=\"tier_changed\"} 1",
        "kizuna_consumer_lag_messages{partition=",
        "kizuna_db_pool_connections{state=\"idle\"}",
        "kizuna_ready",
        "kizuna_build_info{version=",
        "process_resident_memory_bytes",
    ];
    let text = wait_for("the metrics of a known event stream", WAIT, || async {
        let text = app.get_text("/metrics").await?;
        let all = expected.iter().all(|line| text.contains(line.as_str()))
            && names.iter().all(|n| text.contains(n));
        Ok(all.then_some(text))
    })
    .await;
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            let now = app.get_text("/metrics").await.unwrap_or_default();
            let missing: Vec<&str> = expected
                .iter()
                .map(String::as_str)
                .chain(names)
                .filter(|l| !now.contains(l))
                .collect();
            anyhow::bail!("{e:#}; missing {missing:?} from\n{now}");
        }
    };
    // Labels never carry a customer id.
    assert!(!text.contains("cust-m"));

    app.stop().await?;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_settings_tls_to_postgres_separate_metrics_port_and_admin_recompute()
-> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    // TLS to PostgreSQL (the local cluster has ssl = on), /metrics on its own port.
    env.settings.database.url =
        secrecy::SecretString::from(format!("{}?sslmode=require", env.database_url));
    env.settings.http.metrics_bind = Some("127.0.0.1:0".parse()?);
    let app = kizuna::startup::Application::build(env.settings.clone()).await?;
    let (api, metrics_port) = (app.port(), app.metrics_port());
    assert_ne!(api, metrics_port);
    let stop = app.stop_token();
    let handle = tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();

    let metrics = http
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await?;
    assert_eq!(metrics.status().as_u16(), 200);
    assert!(metrics.text().await?.contains("kizuna_build_info"));
    let on_api = http
        .get(format!("http://127.0.0.1:{api}/metrics"))
        .send()
        .await?;
    assert_eq!(
        on_api.status().as_u16(),
        404,
        "metrics are not on the API port"
    );

    let pool = env.pool().await?;
    let encrypted: Vec<(bool,)> = sqlx::query_as(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.datname = current_database() AND a.application_name = 'kizuna'",
    )
    .fetch_all(&pool)
    .await?;
    assert!(!encrypted.is_empty(), "the engine holds connections");
    assert!(
        encrypted.iter().all(|(ssl,)| *ssl),
        "every engine connection uses TLS: {encrypted:?}"
    );

    // The recompute admin endpoint needs the token.
    let url = format!("http://127.0.0.1:{api}/v1/admin/recompute");
    assert_eq!(http.post(&url).send().await?.status().as_u16(), 401);
    let token = format!("admin-{}", env.id);
    let started = http.post(&url).bearer_auth(&token).send().await?;
    assert_eq!(started.status().as_u16(), 202);
    let status = wait_for("the recompute to finish", WAIT, || async {
        let body: serde_json::Value = http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        Ok((body["recompute"]["state"] == json!("finished")).then_some(body))
    })
    .await?;
    assert_eq!(status["recompute"]["customers"], json!(0));

    stop.cancel();
    handle.await??;
    env.cleanup().await
}

/// How a marketing-automation team consumes Kizuna: a plain Kafka consumer in a consumer group
/// of its own, reading `loyalty.tier-changed`, telling events apart by the CloudEvents
/// `ce_type` header, decoding the JSON payload (protobuf JSON mapping) into the contract's type,
/// and deduplicating on `ce_id` (delivery is at least once from the subscriber's point of view:
/// it may itself crash between processing and committing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_consumes_tier_changes_with_a_plain_kafka_client() -> anyhow::Result<()> {
    use rdkafka::ClientConfig;
    use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
    use rdkafka::message::{Headers, Message};

    let env = TestEnv::new().await?;
    let app = env.start().await?;
    let topics = env.settings.kafka.topics.clone();
    let producer = env.producer()?;
    for (i, amount) in [25_000, 10_000].into_iter().enumerate() {
        producer
            .send_json(
                &topics.purchases,
                "cust-s",
                &purchase(&format!("evt-s{i}"), "cust-s", &format!("ord-s{i}"), amount),
            )
            .await?;
    }

    // --- the subscriber ---
    let subscriber: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &env.settings.kafka.brokers)
        .set("group.id", format!("marketing-automation-{}", env.id))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    subscriber.subscribe(&[&topics.tier_changed])?;
    let mut seen = std::collections::HashSet::new();
    let upgrade = tokio::time::timeout(WAIT, async {
        loop {
            let msg = subscriber.recv().await?;
            let header = |name: &str| {
                msg.headers()
                    .and_then(|h| h.iter().find(|h| h.key == name))
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            };
            let ce_id = header("ce_id").unwrap_or_default();
            if !seen.insert(ce_id) {
                continue; // already handled
            }
            if header("ce_type").as_deref() == Some("kizuna.v1.TierChanged") {
                let event: v1::TierChanged =
                    serde_json::from_slice(msg.payload().unwrap_or_default())?;
                subscriber.commit_message(&msg, CommitMode::Sync)?;
                return anyhow::Ok((
                    msg.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    event,
                ));
            }
        }
    })
    .await??;
    // --- end of the subscriber ---

    let (key, event) = upgrade;
    assert_eq!(key.as_deref(), Some("cust-s"));
    assert_eq!(event.customer_id, "cust-s");
    assert_eq!(
        (event.previous_tier.as_str(), event.new_tier.as_str()),
        ("member", "silver")
    );
    assert_eq!(event.kind(), v1::TierChangeKind::Upgrade);

    app.stop().await?;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_is_pruned_past_its_retention_and_older_events_are_refused() -> anyhow::Result<()>
{
    let mut env = TestEnv::new().await?;
    env.settings.ledger.retention_days = 30;
    env.settings.ledger.prune_interval_secs = 1;
    let app = env.start().await?;
    let topics = env.settings.kafka.topics.clone();
    let producer = env.producer()?;
    let pool = env.pool().await?;

    // One event recorded 40 days ago (as if the retention had been longer then), one today.
    let old = chrono::Utc::now() - chrono::Duration::days(40);
    sqlx::query(
        "INSERT INTO event_ledger (customer_id, event_id, occurred_at, kind, body, source)
         VALUES ('cust-p', 'evt-ancient', $1, 'purchase', '\\x80'::bytea, 'test')",
    )
    .bind(old)
    .execute(&pool)
    .await?;
    producer
        .send_json(
            &topics.purchases,
            "cust-p",
            &purchase("evt-p1", "cust-p", "ord-p1", 1_000),
        )
        .await?;
    app.wait_for_customer("cust-p", "the fresh purchase", |s| {
        s["metrics"]["orders"] == json!(1.0)
    })
    .await?;
    let remaining = wait_for("the pruning job", WAIT, || async {
        let ids: Vec<(String,)> = sqlx::query_as(
            "SELECT event_id FROM event_ledger WHERE customer_id = 'cust-p' ORDER BY 1",
        )
        .fetch_all(&pool)
        .await?;
        Ok((ids.len() == 1).then_some(ids))
    })
    .await?;
    assert_eq!(
        remaining,
        vec![("evt-p1".to_owned(),)],
        "only the event inside the retention is kept"
    );
    let text = app.get_text("/metrics").await?;
    assert!(
        text.contains("kizuna_ledger_pruned_events_total 1"),
        "{text}"
    );

    // A resend from 40 days ago could no longer be recognised: refused, not applied twice.
    producer
        .send_json(
            &topics.purchases,
            "cust-p",
            &purchase_at("evt-ancient", "cust-p", "ord-x", 5_000, old),
        )
        .await?;
    let letters = env
        .reader(&topics.dead_letter)?
        .collect_until(WAIT, |got| !got.is_empty())
        .await?;
    assert_eq!(letters[0].header("kizuna-dlq-reason"), Some("too_old"));
    let (_, state) = app.get("/v1/customers/cust-p").await?;
    assert_eq!(state["metrics"]["lifetime_spend_minor"], json!(1_000));

    app.stop().await?;
    env.cleanup().await
}

/// Key lookups in tables that grow (customers; the outbox with a backlog) are planned with the
/// table as it is. A generic plan cached while the table was small is a sequential scan that
/// compares every row with every key: a 3,000-customer batch took 7 s that way on 100,000
/// customers, in the first minute of a fresh database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_lookups_never_keep_a_plan_made_for_a_small_table() -> anyhow::Result<()> {
    use kizuna::domain::ids::CustomerId;
    use kizuna::store::{customers, outbox};

    let env = TestEnv::new().await?;
    let pool = env.pool().await?;
    kizuna::store::migrate(&pool).await?;
    let mut conn = pool.acquire().await?;
    // A small, analyzed table: the planner's best plan for it is a sequential scan.
    sqlx::query(
        "INSERT INTO customers (customer_id, tier, lifetime_spend_minor, orders, home_partition, state)
         SELECT 'small-' || g, 'member', 0, 0, 0, '\\x00'::bytea FROM generate_series(1, 20) g",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query("ANALYZE customers, outbox")
        .execute(&mut *conn)
        .await?;
    let ids: Vec<CustomerId> = (0..50)
        .map(|i| CustomerId::parse(&format!("absent-{i}"), 128))
        .collect::<Result<_, _>>()?;
    let refs: Vec<&CustomerId> = ids.iter().collect();
    // PostgreSQL considers a generic plan from a prepared statement's sixth execution on.
    for _ in 0..12 {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        assert!(customers::load_for_update(&mut tx, &refs).await?.is_empty());
        assert!(
            outbox::lock_batch(&mut tx, &[0, 1, 2], 100, true)
                .await?
                .is_empty()
        );
        outbox::delete(&mut tx, &[1, 2, 3], true).await?;
        tx.commit().await?;
    }
    let generic: Vec<(String, i64)> = sqlx::query_as(
        "SELECT statement, generic_plans FROM pg_prepared_statements
         WHERE generic_plans > 0 AND statement NOT LIKE '%pg_prepared_statements%'
           AND (statement LIKE '%FROM customers WHERE customer_id = ANY%'
                OR statement LIKE '%FROM outbox%')",
    )
    .fetch_all(&mut *conn)
    .await?;
    assert!(
        generic.is_empty(),
        "statements running on a cached generic plan: {generic:?}"
    );
    drop(conn);
    pool.close().await;
    env.cleanup().await
}
