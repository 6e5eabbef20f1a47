//! The outbox as the relay finds it after an upgrade or a crash: rows of the old form (one
//! message each, written before migration 0006) are still published, and a bundle that went out
//! in part before a crash is finished without publishing its first messages twice.

use std::collections::HashMap;

use kizuna::store::outbox::{self, OutboxMessage};
use kizuna_e2e::{Broker, Received, TestEnv, wait_for};

use crate::helpers::{Scene, WAIT};

kizuna_e2e::on_each_broker! {
    old_rows_and_half_published_bundles_are_published_once,
}

/// A message on `topic` (the dead-letter topic: published as it is, never framed).
fn message(env_id: &str, n: u32, topic: &str) -> OutboxMessage {
    let ce_id = format!("outbox-{env_id}-{n}");
    OutboxMessage {
        ce_id: ce_id.clone(),
        partition: 0,
        customer_id: None,
        topic: topic.to_owned(),
        key: Some(format!("key-{n}").into_bytes()),
        payload: format!("payload {n}").into_bytes(),
        headers: vec![("ce_id".to_owned(), ce_id.into_bytes())],
    }
}

async fn old_rows_and_half_published_bundles_are_published_once(
    broker: Broker,
) -> anyhow::Result<()> {
    let env = TestEnv::on(broker).await?;
    let topic = env.settings.kafka.topics.dead_letter.clone();
    let pool = env.pool().await?;
    kizuna::store::migrate(&pool).await?;
    let id = env.id.clone();
    let m: Vec<OutboxMessage> = (1..=4).map(|n| message(&id, n, &topic)).collect();

    // A row of the old form, as written before the bundles.
    sqlx::query(
        "INSERT INTO outbox (ce_id, partition, topic, key, payload, headers)
         VALUES ($1, 0, $2, $3, $4, $5)",
    )
    .bind(&m[0].ce_id)
    .bind(&topic)
    .bind(m[0].key.as_deref())
    .bind(&m[0].payload)
    .bind(serde_json::json!([["ce_id", m[0].ce_id]]))
    .execute(&pool)
    .await?;
    // A bundle of three, the first of which reached the broker before a crash.
    let mut conn = pool.acquire().await?;
    outbox::insert(&mut conn, &m[1..4]).await?;
    drop(conn);
    env.producer()?
        .send(
            &topic,
            Some("key-2"),
            &m[1].payload,
            &[("ce_id", m[1].ce_id.as_bytes())],
        )
        .await?;

    let s = Scene::start_in(env).await?;
    let wanted: Vec<&str> = m.iter().map(|m| m.ce_id.as_str()).collect();
    let got = s
        .env
        .reader(&topic)?
        .collect_until(WAIT, |got| {
            wanted
                .iter()
                .all(|w| got.iter().any(|r| r.header("ce_id") == Some(*w)))
        })
        .await?;
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for r in &got {
        if let Some(ce_id) = r.header("ce_id") {
            *counts.entry(ce_id).or_default() += 1;
        }
    }
    for w in &wanted {
        assert_eq!(counts.get(w), Some(&1), "{w} once: {counts:?}");
    }
    let of = |ce_id: &str| got.iter().find(|r| r.header("ce_id") == Some(ce_id));
    let old: Option<&Received> = of(&m[0].ce_id);
    assert_eq!(old.map(|r| r.payload.as_slice()), Some(&b"payload 1"[..]));
    assert_eq!(old.and_then(|r| r.key.as_deref()), Some("key-1"));
    let last = of(&m[3].ce_id);
    assert_eq!(last.map(|r| r.payload.as_slice()), Some(&b"payload 4"[..]));

    // And the rows are gone once published.
    wait_for("the outbox is empty", WAIT, || async {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&pool)
            .await?;
        Ok((left == 0).then_some(()))
    })
    .await?;
    pool.close().await;
    s.finish().await
}
