//! Manual points adjustments (`POST /v1/customers/{id}/points/adjustments`): goodwill points
//! granted and taken back by an operator behind the admin token, with a reason shown in the
//! points history; retries with the same `Idempotency-Key` answer the first answer byte for
//! byte; a deduction beyond the balance is refused with the balance; each change is announced
//! as a `PointsChanged` with `adjusted`; `kizuna recompute` keeps the adjustments.

use kizuna_e2e::{Broker, TestEnv};
use serde_json::{Value, json};

use crate::helpers::{Scene, WAIT, kizuna_cli};
use crate::points_kit;

kizuna_e2e::on_each_broker! {
    adjustments_grant_and_take_back_points_once_and_recompute_keeps_them,
}

/// `POST path` with the admin token (when `token` is given), an Idempotency-Key and an
/// operator: status and body text.
async fn post(
    s: &Scene,
    path: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: &Value,
) -> anyhow::Result<(u16, String)> {
    let mut req = s
        .app
        .http
        .post(s.app.url(path))
        .header("X-Kizuna-Operator", "ops-aiko")
        .json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let resp = req.send().await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

async fn adjustments_grant_and_take_back_points_once_and_recompute_keeps_them(
    broker: Broker,
) -> anyhow::Result<()> {
    let mut env = TestEnv::on(broker).await?;
    points_kit::add_points(&mut env)?;
    let s = Scene::start_in(env).await?;
    let token = format!("admin-{}", s.env.id);
    let c = "cust-adj";
    let path = format!("/v1/customers/{c}/points/adjustments");
    let points_path = format!("/v1/customers/{c}/points");

    // 10,000 JPY: 100 points, spendable at once.
    s.feed.buy(c, "evt-a0", "ord-a0", 10_000).await?;
    points_kit::wait_points(&s.env, c, 100, |_| true, WAIT).await?;

    let grant = json!({ "points": 500, "reason": "sorry for the late parcel" });
    // No admin token, or a wrong one: 401, nothing moves.
    let (status, _) = post(&s, &path, None, Some("adj-1"), &grant).await?;
    assert_eq!(status, 401);
    let (status, _) = post(&s, &path, Some("wrong"), Some("adj-1"), &grant).await?;
    assert_eq!(status, 401);
    // No Idempotency-Key: 400.
    let (status, text) = post(&s, &path, Some(&token), None, &grant).await?;
    assert_eq!(status, 400, "{text}");
    assert_eq!(parse(&text)["field"], json!("Idempotency-Key"));
    // Invalid requests: 422 with their reason.
    for (body, reason) in [
        (json!({ "points": 0, "reason": "x" }), "points_zero"),
        (
            json!({ "points": 1_000_001, "reason": "x" }),
            "points_too_large",
        ),
        (json!({ "points": 10, "reason": "  " }), "invalid_reason"),
        (
            json!({ "points": 10, "reason": "x".repeat(501) }),
            "invalid_reason",
        ),
        (
            json!({ "points": -10, "reason": "x", "expires_at": "2099-01-01T00:00:00Z" }),
            "expires_at_with_deduction",
        ),
    ] {
        let (status, text) = post(&s, &path, Some(&token), Some("adj-bad"), &body).await?;
        assert_eq!(status, 422, "{body}: {text}");
        assert_eq!(parse(&text)["reason"], json!(reason), "{text}");
    }
    let (status, text) = post(
        &s,
        &path,
        Some(&token),
        Some("adj-bad"),
        &json!({ "points": 10, "reason": "x", "by": "me" }),
    )
    .await?;
    assert_eq!(status, 422, "unknown fields are refused: {text}");
    assert!(text.contains("unknown field `by`"), "{text}");

    // The grant: 201, available at once.
    let (status, first) = post(&s, &path, Some(&token), Some("adj-1"), &grant).await?;
    assert_eq!(status, 201, "{first}");
    let answer = parse(&first);
    assert_eq!(answer["adjustment_id"], json!("adj-1"));
    assert_eq!(answer["points"], json!(500));
    assert_eq!(answer["available"], json!(600), "{answer}");
    assert_eq!(answer["debt"], json!(0));

    // The same key again: the first answer, byte for byte, and nothing moves.
    let (status, again) = post(&s, &path, Some(&token), Some("adj-1"), &grant).await?;
    assert_eq!((status, again.as_str()), (201, first.as_str()));
    // The same key for another request: 422.
    let (status, text) = post(
        &s,
        &path,
        Some(&token),
        Some("adj-1"),
        &json!({ "points": 400, "reason": "sorry for the late parcel" }),
    )
    .await?;
    assert_eq!(status, 422, "{text}");
    assert_eq!(parse(&text)["reason"], json!("idempotency_key_reused"));

    let (status, book) = s.app.get(&points_path).await?;
    assert_eq!(status, 200, "{book}");
    assert_eq!(book["available"], json!(600), "{book}");
    let movements = book["movements"].as_array().cloned().unwrap_or_default();
    let adjusted: Vec<&Value> = movements
        .iter()
        .filter(|m| m["kind"] == json!("adjust"))
        .collect();
    assert_eq!(adjusted.len(), 1, "{book}");
    let m = adjusted[0];
    assert_eq!(m["id"], json!("adjust:adj-1"));
    assert_eq!(m["amount"], json!(500));
    assert_eq!(
        m["reason"],
        json!("adjustment by admin (ops-aiko): sorry for the late parcel")
    );
    assert_eq!(m["source_event"], json!("adjustment:adj-1"));
    // Rolling 12 months: the granted lot expires about a year from now.
    let expires = m["expires_at"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .ok_or_else(|| anyhow::anyhow!("an expiry: {m}"))?;
    let days = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_days();
    assert!((360..=366).contains(&days), "{m}");

    // Announced: adjusted = 500.
    let changed = points_kit::wait_points(
        &s.env,
        c,
        600,
        |p| p.changes.as_ref().is_some_and(|x| x.adjusted == 500),
        WAIT,
    )
    .await?;
    assert_eq!(changed.caused_by, "adjustment:adj-1");

    // Taking back more than there is: 409 with the balance, never debt.
    let (status, text) = post(
        &s,
        &path,
        Some(&token),
        Some("adj-2"),
        &json!({ "points": -1_000, "reason": "granted twice" }),
    )
    .await?;
    assert_eq!(status, 409, "{text}");
    let problem = parse(&text);
    assert_eq!(problem["reason"], json!("insufficient_points"), "{problem}");
    assert_eq!(problem["requested"], json!(1_000));
    assert_eq!(problem["available"], json!(600));
    assert_eq!(problem["debt"], json!(0));
    // A purchase dated before that refusal arrives after it: 1,000 points more (1,600). Had
    // recompute judged the refused deduction again, in time order, it would now accept it.
    s.feed
        .buy_at(
            c,
            "evt-a1",
            "ord-a1",
            100_000,
            chrono::Utc::now() - chrono::Duration::hours(1),
        )
        .await?;
    points_kit::wait_points(&s.env, c, 1_600, |_| true, WAIT).await?;
    // What can be taken back is.
    let (status, text) = post(
        &s,
        &path,
        Some(&token),
        Some("adj-3"),
        &json!({ "points": -200, "reason": "granted twice" }),
    )
    .await?;
    assert_eq!(status, 201, "{text}");
    assert_eq!(parse(&text)["available"], json!(1_400));
    points_kit::wait_points(
        &s.env,
        c,
        1_400,
        |p| p.changes.as_ref().is_some_and(|x| x.adjusted == -200),
        WAIT,
    )
    .await?;
    let (_, book) = s.app.get(&points_path).await?;
    assert_eq!(book["available"], json!(1_400), "{book}");
    assert_eq!(book["debt"], json!(0), "{book}");

    // Recompute rebuilds the points from the event ledger: the adjustments are kept, and the
    // refused deduction is not judged again.
    let (ok, _, err) = kizuna_cli(&s.env, &["recompute"], None)?;
    assert!(ok, "{err}");
    assert!(
        err.contains("0 with different points"),
        "recompute finds no difference: {err}"
    );
    let (_, after) = s.app.get(&points_path).await?;
    assert_eq!(after["available"], json!(1_400), "{after}");
    assert_eq!(after["movements"], book["movements"]);

    s.finish().await
}
