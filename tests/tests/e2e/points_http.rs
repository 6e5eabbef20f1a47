//! Points over HTTP (issue 16): purchases fed through Kafka earn points; 1,000 concurrent
//! redemption requests against one customer, from a real HTTP client while ingest keeps
//! applying that customer's purchases, never spend more than the balance; the ledger's
//! invariant holds after; idempotent retries return the first answer byte for byte; a cancel
//! gives the points back; the same key sent many times at once redeems once; the liability (API
//! and gauges), the customer view, the timeline.

use std::time::Duration;

use futures::StreamExt;
use kizuna_e2e::{Broker, TestEnv, wait_for};
use serde_json::{Value, json};

use crate::helpers::{Scene, WAIT, kizuna_cli};

kizuna_e2e::on_each_broker! {
    concurrent_redemptions_never_spend_more_than_the_balance,
}

const PROGRAMME: &str = include_str!("../../../services/loyalty-engine/config/programme.toml");

/// The built-in programme with points: 1 point per 100 JPY, spendable at once, 6 months
/// rolling expiry, a coffee for 300 points and a lounge for platinum customers only.
const POINTS: &str = r#"
[points]
enabled = true
cost_per_point_minor = 2

[points.earn]
per_currency_unit = 1.0
currency_unit_minor = 100
rounding = "down"
pending_days = 0
first_order_bonus = 0
anniversary_bonus = 0
survey_bonus = 0
referral_bonus = 0

[points.expiry]
mode = "rolling"
months = 6
warn_days = 30

[[points.reward]]
id = "coffee"
name = "A free coffee"
cost = 300
min_tier = "member"

[[points.reward]]
id = "lounge"
name = "The lounge"
cost = 100
min_tier = "platinum"
"#;

const CUSTOMER: &str = "cust-pts";
const REQUESTS: usize = 1_000;
const EACH: i64 = 10;

async fn env_with_points(broker: Broker) -> anyhow::Result<TestEnv> {
    let mut env = TestEnv::on(broker).await?;
    let dir = std::env::temp_dir().join(format!("kizuna-points-{}", env.id));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("programme.toml");
    std::fs::write(&file, format!("{PROGRAMME}\n{POINTS}"))?;
    env.settings.programme_file = Some(file);
    // The attack holds connections while requests queue on the customer's row lock.
    env.settings.database.max_connections = 12;
    Ok(env)
}

/// `POST path` with an optional Idempotency-Key: status and body text.
async fn post(
    http: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<(u16, String)> {
    let mut req = http.post(url);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

async fn concurrent_redemptions_never_spend_more_than_the_balance(
    broker: Broker,
) -> anyhow::Result<()> {
    let s = Scene::start_in(env_with_points(broker).await?).await?;
    let app = &s.app;
    let points_path = format!("/v1/customers/{CUSTOMER}/points");
    let redeem_url = app.url(&format!("/v1/customers/{CUSTOMER}/redemptions"));

    // 5 purchases of 20,000 JPY: 1,000 points, spendable at once.
    for i in 0..5 {
        s.feed
            .buy(CUSTOMER, &format!("evt-p{i}"), &format!("ord-p{i}"), 20_000)
            .await?;
    }
    for c in 0..3 {
        s.feed
            .buy(
                &format!("cust-o{c}"),
                &format!("evt-o{c}"),
                &format!("ord-o{c}"),
                5_000,
            )
            .await?;
    }
    let before = wait_for("1,000 points available", WAIT, || async {
        let (status, body) = app.get(&points_path).await?;
        Ok((status == 200 && body["available"] == json!(1000)).then_some(body))
    })
    .await?;
    assert_eq!(before["pending"], json!(0));
    assert_eq!(before["lots"].as_array().map(Vec::len), Some(5), "{before}");

    // Refusals that do not depend on the balance.
    let (status, text) = post(
        &app.operator,
        &redeem_url,
        None,
        Some(&json!({"points": 10})),
    )
    .await?;
    assert_eq!(status, 400, "{text}");
    assert_eq!(parse(&text)["field"], json!("Idempotency-Key"));
    let (status, text) = post(
        &app.operator,
        &redeem_url,
        Some("bad-cost"),
        Some(&json!({"points": 200, "reward": "coffee"})),
    )
    .await?;
    assert_eq!(status, 422, "{text}");
    assert_eq!(parse(&text)["reason"], json!("reward_cost_mismatch"));
    let (status, text) = post(
        &app.operator,
        &redeem_url,
        Some("bad-reward"),
        Some(&json!({"points": 300, "reward": "yacht"})),
    )
    .await?;
    assert_eq!(status, 422, "{text}");
    assert_eq!(parse(&text)["reason"], json!("unknown_reward"));
    let (status, text) = post(
        &app.operator,
        &redeem_url,
        Some("bad-tier"),
        Some(&json!({"points": 100, "reward": "lounge"})),
    )
    .await?;
    assert_eq!(status, 422, "{text}");
    assert_eq!(parse(&text)["reason"], json!("tier_too_low"));
    let (status, text) = post(
        &app.operator,
        &redeem_url,
        Some("zero"),
        Some(&json!({"points": 0})),
    )
    .await?;
    assert_eq!(status, 422, "{text}");
    assert_eq!(parse(&text)["reason"], json!("points_not_positive"));
    let (status, _) = post(
        &app.operator,
        &app.url("/v1/customers/nobody/redemptions"),
        Some("k"),
        Some(&json!({"points": 10})),
    )
    .await?;
    assert_eq!(status, 404);

    // The attack: 1,000 redemptions of 10 points (10,000 asked for, 1,000 held), 50 at a time,
    // while 10 more purchases of 1,000 JPY (10 points each) go through ingest.
    let http = reqwest::Client::builder()
        .default_headers(kizuna_e2e::bearer_headers(&app.tokens.operator)?)
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(60))
        .build()?;
    let feeding = {
        let feed = s.feed.clone();
        tokio::spawn(async move {
            for i in 0..10 {
                feed.buy(CUSTOMER, &format!("evt-q{i}"), &format!("ord-q{i}"), 1_000)
                    .await?;
            }
            anyhow::Ok(())
        })
    };
    let started = std::time::Instant::now();
    let answers: Vec<(usize, anyhow::Result<(u16, String)>)> = futures::stream::iter(0..REQUESTS)
        .map(|i| {
            let (http, url) = (http.clone(), redeem_url.clone());
            async move {
                let key = format!("attack-{i}");
                let answer = post(&http, &url, Some(&key), Some(&json!({"points": EACH}))).await;
                (i, answer)
            }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    let took = started.elapsed();
    feeding.await??;

    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for (i, answer) in answers {
        let (status, text) = answer?;
        match status {
            201 => accepted.push((i, text)),
            409 => refused.push((i, text)),
            other => panic!("request {i}: unexpected {other}: {text}"),
        }
    }
    let spent = accepted.len() as i64 * EACH;
    eprintln!(
        "{REQUESTS} concurrent redemptions in {took:?}: {} accepted, {} refused",
        accepted.len(),
        refused.len()
    );
    // Never more than was ever held: 1,000 before, at most 100 more from the purchases.
    assert!(spent <= 1_100, "spent {spent}");
    assert!(
        spent >= 1_000,
        "the 1,000 points held before were spendable: spent {spent}"
    );
    let (_, first_refusal) = refused.first().ok_or_else(|| anyhow::anyhow!("no 409"))?;
    let problem = parse(first_refusal);
    assert_eq!(problem["reason"], json!("insufficient_points"), "{problem}");
    assert_eq!(problem["requested"], json!(EACH), "{problem}");
    assert!(
        problem["available"].as_i64().is_some_and(|a| a < EACH),
        "{problem}"
    );

    // Ingest was not blocked: all 15 purchases applied; the balance is what was earned less
    // what was spent, and the ledger's invariant holds.
    let after = wait_for("the 10 purchases applied", WAIT, || async {
        let (_, c) = app.get(&format!("/v1/customers/{CUSTOMER}")).await?;
        if c["metrics"]["orders"] != json!(15.0) {
            return Ok(None);
        }
        let (_, p) = app.get(&points_path).await?;
        Ok(Some(p))
    })
    .await?;
    assert_eq!(after["available"], json!(1_100 - spent), "{after}");
    assert_eq!(after["debt"], json!(0));
    let lots: i64 = after["lots"]
        .as_array()
        .map(|l| l.iter().filter_map(|l| l["remaining"].as_i64()).sum())
        .unwrap_or(-1);
    assert_eq!(lots, 1_100 - spent, "open lots add up to the balance");
    let movements = after["movements"].as_array().cloned().unwrap_or_default();
    let signed: i64 = movements.iter().filter_map(|m| m["signed"].as_i64()).sum();
    assert_eq!(signed, 1_100 - spent, "the movements add up to the balance");
    let redeemed = movements
        .iter()
        .filter(|m| m["kind"] == json!("redeem"))
        .count();
    assert_eq!(
        redeemed,
        accepted.len(),
        "one movement per accepted redemption"
    );
    assert!(
        movements
            .iter()
            .all(|m| m["reason"].as_str().is_some_and(|r| !r.is_empty())
                && m["programme_version"].is_string()
                && m["source_event"].is_string()),
        "every movement explains itself"
    );

    // Retries return the first answer, byte for byte: an acceptance and a refusal.
    let (i, first) = &accepted[0];
    let again = post(
        &app.operator,
        &redeem_url,
        Some(&format!("attack-{i}")),
        Some(&json!({"points": EACH})),
    )
    .await?;
    assert_eq!(again, (201, first.clone()));
    let (j, first) = &refused[0];
    let again = post(
        &app.operator,
        &redeem_url,
        Some(&format!("attack-{j}")),
        Some(&json!({"points": EACH})),
    )
    .await?;
    assert_eq!(
        again,
        (409, first.clone()),
        "a refusal is answered the same way"
    );
    // The same key for another request is refused.
    let (status, text) = post(
        &app.operator,
        &redeem_url,
        Some(&format!("attack-{i}")),
        Some(&json!({"points": EACH + 1})),
    )
    .await?;
    assert_eq!(status, 422, "{text}");
    assert_eq!(parse(&text)["reason"], json!("idempotency_key_reused"));

    // A cancel gives the points back, once.
    let cancel_url = app.url(&format!(
        "/v1/customers/{CUSTOMER}/redemptions/attack-{i}/cancel"
    ));
    let (status, cancelled) = post(&app.operator, &cancel_url, None, None).await?;
    assert_eq!(status, 200, "{cancelled}");
    let body = parse(&cancelled);
    assert_eq!(body["points"], json!(EACH));
    assert_eq!(body["available"], json!(1_100 - spent + EACH));
    assert_eq!(
        post(&app.operator, &cancel_url, None, None).await?,
        (200, cancelled)
    );
    let (status, _) = post(
        &app.operator,
        &app.url(&format!(
            "/v1/customers/{CUSTOMER}/redemptions/never/cancel"
        )),
        None,
        None,
    )
    .await?;
    assert_eq!(status, 404);
    let (_, now) = app.get(&points_path).await?;
    assert_eq!(now["available"], json!(1_100 - spent + EACH));

    // Everywhere a customer shows: the view, the timeline with each movement's reason.
    let (_, customer) = app.get(&format!("/v1/customers/{CUSTOMER}")).await?;
    assert_eq!(customer["points"]["available"], json!(1_100 - spent + EACH));
    let (status, timeline) = app
        .get(&format!("/v1/customers/{CUSTOMER}/timeline?limit=20"))
        .await?;
    assert_eq!(status, 200);
    let items = timeline["items"].as_array().cloned().unwrap_or_default();
    let cancel_item = items
        .iter()
        .find(|it| it["kind"] == json!("redemption_cancel"))
        .ok_or_else(|| anyhow::anyhow!("no cancel in the timeline: {timeline}"))?;
    assert!(
        cancel_item["points"][0]["movement"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("cancelled")),
        "{cancel_item}"
    );

    // The liability: every customer's points, as counts and money (2 per point), in the API
    // and as gauges.
    let mut held = 0;
    for c in [CUSTOMER, "cust-o0", "cust-o1", "cust-o2"] {
        let (_, p) = app.get(&format!("/v1/customers/{c}/points")).await?;
        held += p["available"].as_i64().unwrap_or(-1_000_000);
    }
    let (status, liability) = app.get("/v1/programme/liability").await?;
    assert_eq!(status, 200, "{liability}");
    assert_eq!(liability["available"]["points"], json!(held), "{liability}");
    assert_eq!(
        liability["available"]["value_minor"],
        json!(held as f64 * 2.0)
    );
    assert_eq!(liability["expiring"][2]["within_days"], json!(365));
    assert_eq!(
        liability["expiring"][2]["points"],
        json!(held),
        "{liability}"
    );
    assert_eq!(liability["expiring"][1]["points"], json!(0), "{liability}");
    wait_for("the liability gauges", WAIT, || async {
        let text = app.get_text("/metrics").await?;
        let points = kizuna_e2e::process::metric_sum(
            &text,
            "kizuna_points_outstanding",
            &[("state", "available")],
        );
        Ok((points == held as f64).then_some(()))
    })
    .await?;

    // The same key sent 20 times at once: one redemption, one answer.
    let body = json!({"points": EACH});
    let dup: Vec<(u16, String)> = futures::stream::iter(0..20)
        .map(|_| post(&http, &redeem_url, Some("dup"), Some(&body)))
        .buffer_unordered(20)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    assert_eq!(dup[0].0, 201, "{}", dup[0].1);
    assert!(dup.iter().all(|d| *d == dup[0]), "{dup:?}");
    let (_, p) = app.get(&points_path).await?;
    assert_eq!(p["available"], json!(1_100 - spent), "{p}");
    let dups = p["movements"]
        .as_array()
        .map(|m| m.iter().filter(|m| m["id"] == json!("redeem:dup")).count());
    assert_eq!(dups, Some(1));

    // export-scores has the balance columns (`cargo build --bin kizuna` first).
    let as_of = chrono::Utc::now().to_rfc3339();
    let (ok, csv, err) = kizuna_cli(&s.env, &["export-scores", "--as-of", &as_of], None)?;
    assert!(ok, "{err}");
    let header: Vec<&str> = csv.lines().next().unwrap_or_default().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let row: Vec<&str> = csv
        .lines()
        .find(|l| l.starts_with(&format!("{CUSTOMER},")))
        .unwrap_or_default()
        .split(',')
        .collect();
    let available = column("points_available").and_then(|i| row.get(i).copied());
    let balance = column("points_balance").and_then(|i| row.get(i).copied());
    let expected = (1_100 - spent).to_string();
    assert_eq!(available, Some(expected.as_str()), "{csv}");
    assert_eq!(balance, Some(expected.as_str()), "{csv}");

    s.finish().await
}
