//! The admin API: problems for bad requests, and secrets rotated without a gap.

use kizuna_e2e::Broker;
use kizuna_e2e::webhooks::OutputFeed;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

kizuna_e2e::on_each_broker! {
    the_admin_api_answers_problems_and_rotates_secrets_without_a_gap,
}

async fn the_admin_api_answers_problems_and_rotates_secrets_without_a_gap(
    broker: Broker,
) -> anyhow::Result<()> {
    let (env, receiver, hooks) = start(broker, |_| {}).await?;

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
        .subscribe_endpoint(&receiver, "rot", &[TIER_CHANGED], json!({}), json!({}))
        .await?;
    let out = OutputFeed::new(&env)?;
    let before = out.tier_changed("cust-r", "member", "silver", 1).await?;
    receiver
        .wait_accepted("rot", "a delivery before the rotation", WAIT, |h| {
            h.iter().any(|h| h.id() == before)
        })
        .await?;
    let (status, rotated) = hooks
        .on_subscription(Method::POST, &sub, "/rotate-secret", None)
        .await?;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap_or_default().to_owned();
    assert!(new.starts_with("whsec_") && new != old);
    let (_, shown) = hooks
        .on_subscription(Method::GET, &sub, "/secret", None)
        .await?;
    assert_eq!(shown["secret"], json!(new));
    for (n, secrets) in [(2, vec![old.clone()]), (3, vec![new.clone()])] {
        receiver
            .configure("rot", json!({"secrets": secrets}))
            .await?;
        let id = out.tier_changed("cust-r", "silver", "gold", n).await?;
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
        .on_subscription(Method::DELETE, &sub, "", None)
        .await?;
    assert_eq!(status, 204);
    let (status, _) = hooks.on_subscription(Method::GET, &sub, "", None).await?;
    assert_eq!(status, 404);
    hooks.stop().await?;
    env.cleanup().await
}
