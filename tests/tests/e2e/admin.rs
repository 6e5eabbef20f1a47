//! The HTTP API and the operator's tools: the dry run, the timeline, the audited tier override,
//! and the security settings (TLS to PostgreSQL, a metrics port of its own, the admin token).

use kizuna_e2e::{Broker, TestEnv, wait_for};
use kizuna_proto::v1;
use serde_json::json;

use crate::helpers::{Scene, WAIT};
use crate::inputs::purchase;

kizuna_e2e::on_each_broker! {
    dry_run_timeline_and_audited_override,
    security_settings_tls_to_postgres_separate_metrics_port_and_admin_recompute,
}

async fn dry_run_timeline_and_audited_override(broker: Broker) -> anyhow::Result<()> {
    let s = Scene::start(broker).await?;
    let (env, app) = (&s.env, &s.app);
    s.feed.buy("cust-d", "evt-d1", "ord-d1", 20_000).await?;
    app.wait_for_customer("cust-d", "the first purchase", |s| {
        s["metrics"]["orders"] == json!(1.0)
    })
    .await?;

    // Dry run: what would one more purchase do? Nothing is written.
    let body = json!({ "customer_id": "cust-d", "event": { "purchase": purchase("evt-d2", "cust-d", "ord-d2", 15_000) } });
    let resp = app
        .operator
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
        .operator
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
    // The audit records the token's name, then what the body said.
    assert_eq!(state["override"]["set_by"], json!("admin (ops-lead)"));
    let pool = env.pool().await?;
    let (audited,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM tier_overrides WHERE customer_id = 'cust-d' AND tier = 'gold'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(audited, 1);
    let out = env
        .reader(&s.topics().tier_changed)?
        .collect_until(WAIT, |got| !got.is_empty())
        .await?;
    let changed: v1::TierChanged = serde_json::from_slice(&out[0].payload)?;
    assert_eq!(changed.kind(), v1::TierChangeKind::Override);
    assert_eq!(changed.caused_by, "operator:admin (ops-lead)");

    // A second purchase, then the timeline: newest first, with the outputs each event caused.
    s.feed.buy("cust-d", "evt-d3", "ord-d3", 1_000).await?;
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

    s.finish().await
}

async fn security_settings_tls_to_postgres_separate_metrics_port_and_admin_recompute(
    broker: Broker,
) -> anyhow::Result<()> {
    let mut env = TestEnv::on(broker).await?;
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
