//! Erasure (issue 18): `DELETE /v1/customers/{id}` and `kizuna erase` remove a customer from
//! every table — a search of every text, bytea and JSON column finds the id nowhere — while the
//! referrer keeps the count of referrals under a pseudonym; the receipt `CustomerErased` goes out
//! with the id's keyed hash only; a later event for the id is a dead letter (`erased`). An
//! erasure of a customer with 10,000 events takes well under a minute. Before the erasure, the
//! access request (`GET /v1/customers/{id}/export`) returns everything kept about them.

use std::time::{Duration, Instant};

use futures::future::try_join_all;
use kizuna_e2e::{Broker, TestEnv};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{Scene, WAIT, kizuna_cli};
use crate::inputs::{nps, purchase_at};
use crate::points_kit;

/// 1 point per 100 JPY, spendable at once; a referral bonus of 300.
const POINTS: &str = r#"
[points]
enabled = true
cost_per_point_minor = 1

[points.earn]
per_currency_unit = 1.0
currency_unit_minor = 100
rounding = "down"
pending_days = 0
referral_bonus = 300

[points.expiry]
mode = "rolling"
months = 12
warn_days = 30
"#;

kizuna_e2e::on_each_broker! {
    an_erased_customer_is_found_nowhere_and_the_referrer_keeps_the_count,
}

/// Every (table, column) of the public schema whose text, bytea, JSON or array value holds
/// `needle` somewhere: a generic search, not a list of the tables erasure knows about.
async fn find_everywhere(pool: &PgPool, needle: &str) -> anyhow::Result<Vec<String>> {
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text
           FROM information_schema.columns
          WHERE table_schema = 'public'
            AND data_type IN ('text', 'character varying', 'bytea', 'jsonb', 'json', 'ARRAY')",
    )
    .fetch_all(pool)
    .await?;
    assert!(
        columns.len() > 20,
        "the search sees the schema: {columns:?}"
    );
    let mut found = Vec::new();
    for (table, column, ty) in columns {
        let test = if ty == "bytea" {
            format!("position(convert_to($1, 'UTF8') IN \"{column}\") > 0")
        } else {
            format!("strpos(\"{column}\"::text, $1) > 0")
        };
        let sql = format!("SELECT count(*) FROM \"{table}\" WHERE {test}");
        let (n,): (i64,) = sqlx::query_as(&sql).bind(needle).fetch_one(pool).await?;
        if n > 0 {
            found.push(format!("{table}.{column} ({n} rows)"));
        }
    }
    Ok(found)
}

/// `GET path` with the admin token (which may read everything): status and JSON body.
async fn get(s: &Scene, path: &str, token: &str) -> anyhow::Result<(u16, Value)> {
    let resp = s
        .app
        .http
        .get(s.app.url(path))
        .bearer_auth(token)
        .send()
        .await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

async fn delete(s: &Scene, customer: &str, token: Option<&str>) -> anyhow::Result<(u16, Value)> {
    let mut req = s
        .app
        .http
        .delete(s.app.url(&format!("/v1/customers/{customer}")));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

async fn an_erased_customer_is_found_nowhere_and_the_referrer_keeps_the_count(
    broker: Broker,
) -> anyhow::Result<()> {
    let mut env = TestEnv::on(broker).await?;
    points_kit::with_points_section(&mut env, POINTS)?;
    let s = Scene::start_in(env).await?;
    let token = format!("admin-{}", s.env.id);
    let pool = s.env.pool().await?;
    let privacy = s.env.settings.kafka.topics.privacy.clone();
    let receipts = s.env.reader(&privacy)?;
    let dead = s.env.reader(&s.env.settings.kafka.topics.dead_letter)?;

    // cust-erase was referred by cust-ref and referred cust-kid; they buy, answer a survey
    // with a comment.
    let erased = "cust-erase";
    let now = chrono::Utc::now();
    let mut bought = purchase_at("evt-e1", erased, "ord-e1", 20_000, now);
    bought["referredBy"] = json!("cust-ref");
    s.feed.purchase(erased, &bought).await?;
    s.env
        .producer()?
        .send_json(
            &s.env.settings.kafka.topics.surveys.clone(),
            erased,
            &nps("evt-e2", erased, 3),
        )
        .await?;
    let mut kid = purchase_at("evt-k1", "cust-kid", "ord-k1", 5_000, now);
    kid["referredBy"] = json!(erased);
    s.feed.purchase("cust-kid", &kid).await?;
    s.feed.buy("cust-ref", "evt-r1", "ord-r1", 3_000).await?;
    for who in [erased, "cust-kid", "cust-ref"] {
        s.app
            .wait_for_customer(who, "the customer is applied", |c| {
                c["customer_id"] == json!(who)
            })
            .await?;
    }
    wait_ledger(&pool, erased, 2).await?;
    // cust-ref: 30 points of their own and the 300 of the referral.
    points_kit::wait_points(&s.env, "cust-ref", 330, |_| true, WAIT).await?;
    // The search can find the id: before the erasure it is in several tables.
    let before = find_everywhere(&pool, erased).await?;
    assert!(
        before.iter().any(|t| t.starts_with("event_ledger."))
            && before.iter().any(|t| t.starts_with("customers.")),
        "{before:?}"
    );

    // The survey comment is stored sealed under cust-erase's key: found nowhere in clear, shown
    // in clear by the timeline.
    let comment = "the delivery was late again";
    let clear = find_everywhere(&pool, comment).await?;
    assert!(
        clear.is_empty(),
        "the comment is stored in clear in {clear:?}"
    );
    let (status, timeline) = get(&s, &format!("/v1/customers/{erased}/timeline"), &token).await?;
    assert_eq!(status, 200, "{timeline}");
    assert!(timeline.to_string().contains(comment), "{timeline}");
    // A backup of the ledger row, and the key as it is before the erasure: it opens.
    let (backup,): (Vec<u8>,) =
        sqlx::query_as("SELECT body FROM event_ledger WHERE customer_id = $1 AND kind = 'survey'")
            .bind(erased)
            .fetch_one(&pool)
            .await?;
    let (key,): (Vec<u8>,) =
        sqlx::query_as("SELECT comment_key FROM customer_keys WHERE customer_id = $1")
            .bind(erased)
            .fetch_one(&pool)
            .await?;
    let mut copy = kizuna::store::ledger::decode(&backup)?;
    kizuna::store::comments::open_event(&mut copy, Some(&key));
    assert!(format!("{:?}", copy.body).contains("Survey"));
    let opened = match &copy.body {
        kizuna::domain::event::EventBody::Survey(a) => a.comment.clone(),
        _ => None,
    };
    assert_eq!(opened.as_deref(), Some(comment));
    drop(key);

    // The access request: one document with everything kept, a section for every table the
    // search found the id in (the outbox aside: it holds messages only until they are published).
    let export = format!("/v1/customers/{erased}/export");
    let resp = s.app.http.get(s.app.url(&export)).send().await?;
    assert_eq!(resp.status().as_u16(), 401);
    let resp = s
        .app
        .http
        .get(s.app.url(&export))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let doc: Value = resp.json().await?;
    assert_eq!(doc["customer_id"], json!(erased));
    assert_eq!(doc["events"].as_array().map(Vec::len), Some(2), "{doc}");
    assert!(
        doc.to_string().contains("the delivery was late again"),
        "the comment is exported"
    );
    assert_eq!(doc["state"]["customer_id"], json!(erased));
    for found in &before {
        let table = found.split('.').next().unwrap_or_default();
        let section = match table {
            "outbox" => continue,
            // A key, not data about the customer: the comments it opens are in `events`.
            "customer_keys" => continue,
            "customers" => &doc["state"],
            "event_ledger" => &doc["events"],
            "output_log" => &doc["published"],
            "tier_overrides" => &doc["tier_overrides"],
            "points_redemptions" => &doc["points_requests"],
            t if t.starts_with("webhook_") => &doc["webhooks"][t],
            other => panic!("{other} holds the id but the export has no section for it"),
        };
        assert!(
            !section.is_null() && section.as_array().is_none_or(|a| !a.is_empty()),
            "{table} holds the id ({found}) but its export section is empty: {doc}"
        );
    }
    // `get` is the viewer's: the export is the admin's.
    let (status, p) = s.app.get("/v1/customers/cust-never-seen/export").await?;
    assert_eq!(status, 403, "the export needs the admin role: {p}");
    assert_eq!(p["required_role"], json!("admin"), "{p}");

    // Without the admin token: 401, nothing erased.
    let (status, _) = delete(&s, erased, None).await?;
    assert_eq!(status, 401);
    let (status, receipt) = delete(&s, erased, Some(&token)).await?;
    assert_eq!(status, 200, "{receipt}");
    assert!(receipt["ledger_events"].as_i64() >= Some(2), "{receipt}");
    assert!(receipt["other_rows"].as_i64() >= Some(1), "{receipt}");
    // The referrer's state and the referred customer's purchase keep a pseudonym.
    assert_eq!(receipt["pseudonymised"], json!(2), "{receipt}");
    let hash = receipt["subject_hash"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(hash.len(), 64, "{receipt}");
    assert!(receipt["refuse_until"].is_string(), "{receipt}");

    let after = find_everywhere(&pool, erased).await?;
    assert!(after.is_empty(), "the erased id is still in {after:?}");
    let (status, _) = get(&s, &format!("/v1/customers/{erased}"), &token).await?;
    assert_eq!(status, 404);

    // Crypto-shredding: the key is gone, so the backup's comment cannot be opened.
    let keys: Vec<(Vec<u8>,)> =
        sqlx::query_as("SELECT comment_key FROM customer_keys WHERE customer_id = $1")
            .bind(erased)
            .fetch_all(&pool)
            .await?;
    assert!(keys.is_empty());
    let mut copy = kizuna::store::ledger::decode(&backup)?;
    kizuna::store::comments::open_event(&mut copy, None);
    let unreadable = match &copy.body {
        kizuna::domain::event::EventBody::Survey(a) => a.comment.clone(),
        _ => None,
    };
    assert_eq!(
        unreadable.as_deref(),
        Some(kizuna::store::comments::UNREADABLE)
    );

    // The referrer keeps one referral and the bonus, under the pseudonym.
    let alias = format!("erased-{}", &hash[..16]);
    let (bytes,): (Vec<u8>,) =
        sqlx::query_as("SELECT state FROM customers WHERE customer_id = 'cust-ref'")
            .fetch_one(&pool)
            .await?;
    let state = kizuna::store::customers::decode(&bytes)?;
    assert_eq!(
        state.facts.referrals.iter().collect::<Vec<_>>(),
        vec![&alias],
        "the referral count is kept"
    );
    assert!(
        state
            .points
            .movements
            .iter()
            .any(|m| m.id == format!("referral:{alias}")),
        "the referral bonus is kept: {:?}",
        state.points.movements
    );
    // The referred customer's purchase names the pseudonym.
    let (referrer,): (Option<String>,) = sqlx::query_as(
        "SELECT referred_by FROM event_ledger WHERE customer_id = 'cust-kid' AND event_id = 'evt-k1'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(referrer.as_deref(), Some(alias.as_str()));

    // The receipt: keyed by the hash, subject the hash, no id.
    let got = receipts
        .collect_until(WAIT, |got| {
            got.iter().any(|m| m.key.as_deref() == Some(hash.as_str()))
        })
        .await?;
    let r = got
        .iter()
        .find(|m| m.key.as_deref() == Some(hash.as_str()))
        .ok_or_else(|| anyhow::anyhow!("no receipt"))?;
    assert_eq!(r.header("ce_type"), Some("kizuna.v1.CustomerErased"));
    assert_eq!(r.header("ce_subject"), Some(hash.as_str()));
    assert!(!String::from_utf8_lossy(&r.payload).contains(erased));
    assert_eq!(r.json()?["subjectHash"], json!(hash));

    // A later event for the id: a dead letter with reason `erased`; the customer stays gone.
    s.feed.buy(erased, "evt-e9", "ord-e9", 1_000).await?;
    dead.collect_until(WAIT, |got| {
        got.iter()
            .any(|m| m.header("kizuna-dlq-reason") == Some("erased"))
    })
    .await?;
    s.feed.buy("cust-ref", "evt-r2", "ord-r2", 1_000).await?;
    points_kit::wait_points(&s.env, "cust-ref", 340, |_| true, WAIT).await?;
    let (status, _) = s.app.get(&format!("/v1/customers/{erased}")).await?;
    assert_eq!(
        status, 404,
        "a refused event does not bring the customer back"
    );

    // Erasing again: a receipt that deleted nothing. An id never seen: 404.
    let (status, again) = delete(&s, erased, Some(&token)).await?;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["ledger_events"], json!(0));
    assert_eq!(again["subject_hash"], json!(hash));
    let (status, _) = delete(&s, "cust-never-seen", Some(&token)).await?;
    assert_eq!(status, 404);
    let (status, _) = get(&s, &export, &token).await?;
    assert_eq!(status, 404, "nothing is kept about an erased id");

    // 10,000 events of one customer, erased by the command in well under a minute.
    let big = "cust-big";
    for chunk in (0..10_000).collect::<Vec<i64>>().chunks(1_000) {
        try_join_all(chunk.iter().map(|i| {
            let e = purchase_at(&format!("evt-b{i}"), big, &format!("ord-b{i}"), 1_000, now);
            let feed = &s.feed;
            async move { feed.purchase(big, &e).await }
        }))
        .await?;
    }
    wait_ledger(&pool, big, 10_000).await?;
    let started = Instant::now();
    let (ok, stdout, stderr) = kizuna_cli(&s.env, &["erase", big], None)?;
    let took = started.elapsed();
    assert!(ok, "{stderr}");
    let printed: Value = serde_json::from_str(&stdout)?;
    // The receipt as published (protobuf JSON mapping: 64-bit integers are strings).
    assert_eq!(printed["ledgerEvents"], json!("10000"), "{printed}");
    assert!(took < Duration::from_secs(60), "the erasure took {took:?}");
    eprintln!("erasing 10,000 events took {took:?}");
    let left = find_everywhere(&pool, big).await?;
    assert!(left.is_empty(), "{big} is still in {left:?}");

    drop((receipts, dead));
    pool.close().await;
    s.finish().await
}

/// Waits until `customer` has `n` events in the ledger.
async fn wait_ledger(pool: &PgPool, customer: &str, n: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (got,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM event_ledger WHERE customer_id = $1")
                .bind(customer)
                .fetch_one(pool)
                .await?;
        if got >= n {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{customer} has {got} of {n} events in the ledger after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
