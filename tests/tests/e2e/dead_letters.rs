//! Dead letters: a message the engine cannot use is set aside with its reason and the raw
//! bytes, and consumption goes on; so is an event older than the ledger remembers.

use kizuna_e2e::{Broker, TestEnv, wait_for};
use serde_json::json;

use crate::helpers::{Scene, WAIT};

kizuna_e2e::on_each_broker! {
    a_malformed_message_is_dead_lettered_and_the_next_one_is_processed,
    the_ledger_is_pruned_past_its_retention_and_older_events_are_refused,
}

async fn a_malformed_message_is_dead_lettered_and_the_next_one_is_processed(
    broker: Broker,
) -> anyhow::Result<()> {
    let s = Scene::start(broker).await?;
    let topics = s.topics();

    let garbage: &[u8] = b"{\"eventId\": \"evt-b1\", \"customerId\": \"cust-b\", \"amountMinor\": ";
    s.feed
        .producer
        .send(
            &topics.purchases,
            Some("cust-b"),
            garbage,
            &[("content-type", b"application/json")],
        )
        .await?;
    s.feed.buy("cust-b", "evt-b2", "ord-b2", 1_200).await?;

    let state = s
        .app
        .wait_for_customer("cust-b", "the valid purchase behind the bad one", |s| {
            s["metrics"]["lifetime_spend_minor"] == json!(1_200)
        })
        .await?;
    assert_eq!(state["metrics"]["orders"], json!(1.0));

    let dlq = s
        .env
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

    let text = s.app.get_text("/metrics").await?;
    assert!(
        text.contains("kizuna_dead_letters_total{reason=\"unparseable\""),
        "{text}"
    );

    s.finish().await
}

async fn the_ledger_is_pruned_past_its_retention_and_older_events_are_refused(
    broker: Broker,
) -> anyhow::Result<()> {
    let mut env = TestEnv::on(broker).await?;
    env.settings.ledger.retention_days = 30;
    env.settings.ledger.prune_interval_secs = 1;
    let s = Scene::start_in(env).await?;
    let app = &s.app;
    let pool = s.env.pool().await?;

    // One event recorded 40 days ago (as if the retention had been longer then), one today.
    let old = chrono::Utc::now() - chrono::Duration::days(40);
    sqlx::query(
        "INSERT INTO event_ledger (customer_id, event_id, occurred_at, kind, body, source)
         VALUES ('cust-p', 'evt-ancient', $1, 'purchase', '\\x80'::bytea, 'test')",
    )
    .bind(old)
    .execute(&pool)
    .await?;
    s.feed.buy("cust-p", "evt-p1", "ord-p1", 1_000).await?;
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
    s.feed
        .buy_at("cust-p", "evt-ancient", "ord-x", 5_000, old)
        .await?;
    let letters = s
        .env
        .reader(&s.topics().dead_letter)?
        .collect_until(WAIT, |got| !got.is_empty())
        .await?;
    assert_eq!(letters[0].header("kizuna-dlq-reason"), Some("too_old"));
    let (_, state) = app.get("/v1/customers/cust-p").await?;
    assert_eq!(state["metrics"]["lifetime_spend_minor"], json!(1_000));

    s.finish().await
}
