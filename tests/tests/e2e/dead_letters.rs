//! Dead letters: a message the engine cannot use is set aside with its reason and the raw
//! bytes, and consumption goes on; so is an event older than the ledger remembers. Every dead
//! letter is a CloudEvent that the CloudEvents SDK parses, the input's own `ce_*` headers kept
//! as `original*` extensions.

use chrono::DateTime;
use kizuna_e2e::{Broker, Received, TestEnv, cloudevents, wait_for};
use serde_json::json;

use crate::helpers::{Scene, WAIT};

kizuna_e2e::on_each_broker! {
    a_malformed_message_is_dead_lettered_and_the_next_one_is_processed,
    the_ledger_is_pruned_past_its_retention_and_older_events_are_refused,
    every_dead_letter_is_a_cloudevent_the_sdk_parses_with_the_inputs_attributes_kept,
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

/// One bad input: what is sent and what its dead letter must say.
struct Bad {
    key: Option<&'static str>,
    payload: Vec<u8>,
    headers: Vec<(&'static str, &'static [u8])>,
    reason: &'static str,
    /// The dead letter's `datacontenttype` (the input's content type), if any.
    datacontenttype: Option<&'static str>,
    /// The extensions the input's `ce_*` headers must become, exactly.
    extensions: Vec<(&'static str, &'static str)>,
}

async fn every_dead_letter_is_a_cloudevent_the_sdk_parses_with_the_inputs_attributes_kept(
    broker: Broker,
) -> anyhow::Result<()> {
    let s = Scene::start(broker).await?;
    let topics = s.topics();
    let purchase = |customer: &str| {
        json!({
            "eventId": format!("evt-{customer}"),
            "customerId": customer,
            "occurredAt": (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339(),
            "orderId": format!("ord-{customer}"),
            "kind": "PURCHASE_KIND_PURCHASE",
            "amountMinor": "1000",
            "currency": "JPY",
        })
    };
    let mut wrong_type = purchase("cust-dl-b");
    wrong_type["amountMinor"] = json!({"yen": 1000});
    let bad = vec![
        // Bad JSON, no ce_* headers.
        Bad {
            key: Some("cust-dl-a"),
            payload: b"{\"eventId\": \"evt-a\", \"customerId\": ".to_vec(),
            headers: vec![("content-type", b"application/json")],
            reason: "unparseable",
            datacontenttype: Some("application/json"),
            extensions: vec![],
        },
        // A schema violation, from a producer that sends CloudEvents in binary mode with an
        // extension whose name is not lowercase alphanumeric.
        Bad {
            key: Some("cust-dl-b"),
            payload: serde_json::to_vec(&wrong_type)?,
            headers: vec![
                ("content-type", b"application/json"),
                ("ce_specversion", b"1.0"),
                ("ce_id", b"shop-evt-b"),
                ("ce_type", b"kizuna.v1.Purchase"),
                ("ce_source", b"shop/pos-7"),
                ("ce_time", b"2026-12-01T09:00:00Z"),
                ("ce_Shop_Region", b"kanto"),
                (
                    "ce_traceparent",
                    b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ),
            ],
            reason: "wrong_type",
            datacontenttype: Some("application/json"),
            extensions: vec![
                ("originalspecversion", "1.0"),
                ("originalid", "shop-evt-b"),
                ("originaltype", "kizuna.v1.Purchase"),
                ("originalsource", "shop/pos-7"),
                ("originaltime", "2026-12-01T09:00:00Z"),
                ("originalshopregion", "kanto"),
                (
                    "originaltraceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ),
            ],
        },
        // An unknown type, otherwise a good purchase.
        Bad {
            key: Some("cust-dl-c"),
            payload: serde_json::to_vec(&purchase("cust-dl-c"))?,
            headers: vec![
                ("content-type", b"application/json"),
                ("ce_specversion", b"1.0"),
                ("ce_id", b"shop-evt-c"),
                ("ce_type", b"kizuna.v9.Purchase"),
                ("ce_source", b"shop/pos-7"),
            ],
            reason: "unknown_schema_version",
            datacontenttype: Some("application/json"),
            extensions: vec![
                ("originalspecversion", "1.0"),
                ("originalid", "shop-evt-c"),
                ("originaltype", "kizuna.v9.Purchase"),
                ("originalsource", "shop/pos-7"),
            ],
        },
        // Cut short, in the structured-mode content type: that content type must not make the
        // dead letter look structured.
        Bad {
            key: Some("cust-dl-d"),
            payload: b"{\"eventId\": \"evt-d\", ".to_vec(),
            headers: vec![("content-type", b"application/cloudevents+json")],
            reason: "unparseable",
            datacontenttype: None,
            extensions: vec![],
        },
        // No key (so no subject), a content type the engine does not read.
        Bad {
            key: None,
            payload: b"hello".to_vec(),
            headers: vec![("content-type", b"text/plain")],
            reason: "unsupported_content_type",
            datacontenttype: Some("text/plain"),
            extensions: vec![],
        },
    ];
    for b in &bad {
        s.feed
            .producer
            .send(&topics.purchases, b.key, &b.payload, &b.headers)
            .await?;
    }

    let letters = s
        .env
        .reader(&topics.dead_letter)?
        .collect_until(WAIT, |got| got.len() >= bad.len())
        .await?;
    assert_eq!(letters.len(), bad.len(), "one dead letter per bad input");
    let parsed = cloudevents::parse(&letters).await?;
    for b in &bad {
        let i = letters
            .iter()
            .position(|l| l.key.as_deref() == b.key && l.payload == b.payload)
            .ok_or_else(|| anyhow::anyhow!("no dead letter for {:?}", b.key))?;
        check_letter(b, &letters[i], &parsed[i], &topics.purchases)?;
    }

    s.finish().await
}

fn check_letter(
    b: &Bad,
    letter: &Received,
    event: &cloudevents::Parsed,
    input_topic: &str,
) -> anyhow::Result<()> {
    let what = format!("the dead letter of {:?} ({})", b.key, b.reason);
    assert!(event.ok, "{what}: the SDK refused it: {:?}", event.error);
    // The raw bytes and the reason headers, as they were.
    assert_eq!(
        letter.payload, b.payload,
        "{what}: the raw bytes, unchanged"
    );
    assert_eq!(letter.header("kizuna-dlq-reason"), Some(b.reason), "{what}");
    assert_eq!(
        letter.header("kizuna-dlq-topic"),
        Some(input_topic),
        "{what}"
    );
    assert!(
        letter
            .header("kizuna-dlq-detail")
            .is_some_and(|d| !d.is_empty()),
        "{what}"
    );
    // The dead letter's own attributes, as the SDK read them.
    assert_eq!(event.attribute("specversion"), Some("1.0"), "{what}");
    assert_eq!(
        event.attribute("type"),
        Some("kizuna.v1.DeadLetter"),
        "{what}"
    );
    assert_eq!(
        event.attribute("source"),
        Some("kizuna/loyalty-engine"),
        "{what}"
    );
    // The SDK makes up an id and a time when the headers have none: both must be the headers'.
    let id = letter
        .header("ce_id")
        .ok_or_else(|| anyhow::anyhow!("{what}: no ce_id"))?;
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{what}: {id}");
    assert_eq!(event.attribute("id"), Some(id), "{what}");
    let time = letter
        .header("ce_time")
        .ok_or_else(|| anyhow::anyhow!("{what}: no ce_time"))?;
    let parsed_time = event.attribute("time").unwrap_or_default();
    assert_eq!(
        DateTime::parse_from_rfc3339(parsed_time)?,
        DateTime::parse_from_rfc3339(time)?,
        "{what}"
    );
    assert_eq!(letter.header("kizuna-dlq-time"), Some(time), "{what}");
    assert_eq!(
        event.attribute("subject"),
        b.key,
        "{what}: the key is the subject"
    );
    assert_eq!(event.attribute("partitionkey"), b.key, "{what}");
    assert_eq!(
        event.attribute("datacontenttype"),
        b.datacontenttype,
        "{what}"
    );
    if b.datacontenttype.is_none() {
        assert_eq!(
            letter.header("kizuna-dlq-content-type"),
            Some("application/cloudevents+json"),
            "{what}: the input's content type is kept aside"
        );
    }
    // The input's ce_* headers, as extensions, and nothing else.
    let mut extensions: Vec<(&str, &str)> = event
        .attributes
        .iter()
        .filter(|(k, _)| k.starts_with("original"))
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("<not a string>")))
        .collect();
    extensions.sort_unstable();
    let mut expected = b.extensions.clone();
    expected.sort_unstable();
    assert_eq!(extensions, expected, "{what}");
    Ok(())
}
