//! Registry-framed input: applied, refused with a reason, or held while the registry is away.

use anyhow::Context;
use kizuna_e2e::process::metric_sum;
use kizuna_e2e::{Broker, TestEnv, wait_for};
use kizuna_proto::INPUTS_PROTO;
use prost::Message;
use serde_json::json;

use crate::frames::*;

kizuna_e2e::on_each_broker! {
    framed_purchases_and_tickets_update_the_state,
    unknown_ids_and_other_schemas_go_to_the_dead_letters_with_a_reason,
    without_a_registry_a_framed_message_is_dead_lettered_saying_so,
    an_unreachable_registry_holds_the_batch_and_dead_letters_nothing,
}

async fn framed_purchases_and_tickets_update_the_state(broker: Broker) -> anyhow::Result<()> {
    let env = env_with_registry(broker).await?;
    let topics = env.settings.kafka.topics.clone();
    // What a Confluent protobuf serializer does: inputs.proto under <topic>-value.
    let purchases_id = register_inputs(&topics.purchases).await?;
    let tickets_id = register_inputs(&topics.support_tickets).await?;
    let purchase_at = [top_level_index(INPUTS_PROTO, "Purchase").context("Purchase")?];
    let ticket_at = [top_level_index(INPUTS_PROTO, "SupportTicket").context("SupportTicket")?];
    assert_eq!(
        (purchase_at, ticket_at),
        ([1], [2]),
        "LineItem comes first in inputs.proto"
    );

    let app = env.start().await?;
    let producer = env.producer()?;
    let as_cust_r = FramedSender {
        producer: &producer,
        customer: "cust-r",
    };
    let first = purchase("evt-r1", "cust-r", "ord-r1", 20_000);
    as_cust_r
        .send(&topics.purchases, (purchases_id, &purchase_at), &first)
        .await?;
    // Unframed messages keep working next to framed ones: this one is JSON.
    producer
        .send_json(
            &topics.purchases,
            "cust-r",
            &json!({"eventId": "evt-r2", "customerId": "cust-r",
                    "occurredAt": chrono::Utc::now().to_rfc3339(), "orderId": "ord-r2",
                    "kind": "PURCHASE_KIND_PURCHASE", "amountMinor": "9000", "currency": "JPY"}),
        )
        .await?;
    let third = purchase("evt-r3", "cust-r", "ord-r3", 6_000);
    as_cust_r
        .send(&topics.purchases, (purchases_id, &purchase_at), &third)
        .await?;
    let ticket = open_ticket("evt-r4", "cust-r", "tkt-r1");
    as_cust_r
        .send(&topics.support_tickets, (tickets_id, &ticket_at), &ticket)
        .await?;

    let state = app
        .wait_for_customer("cust-r", "three purchases and the ticket applied", |s| {
            s["metrics"]["orders"] == json!(3.0) && s["metrics"]["open_tickets"] == json!(1)
        })
        .await?;
    assert_eq!(state["metrics"]["lifetime_spend_minor"], json!(35_000));
    assert_eq!(state["tier"], json!("silver"));
    assert_eq!(state["metrics"]["bad_experiences"], json!(1), "{state}");

    // Nothing went to the dead letters.
    let letters = env.reader(&topics.dead_letter)?.read_to_end(WAIT).await?;
    assert!(letters.is_empty(), "{letters:?}");
    let text = app.get_text("/metrics").await?;
    assert_eq!(
        metric_sum(
            &text,
            "kizuna_events_consumed_total",
            &[("outcome", "applied")]
        ),
        4.0,
        "{text}"
    );

    app.stop().await?;
    env.cleanup().await
}

async fn unknown_ids_and_other_schemas_go_to_the_dead_letters_with_a_reason(
    broker: Broker,
) -> anyhow::Result<()> {
    let env = env_with_registry(broker).await?;
    let topics = env.settings.kafka.topics.clone();
    let id = register_inputs(&topics.purchases).await?;
    // A shop's own package, with a message of the same name.
    let other_package = register(
        &format!("{}-shop-value", topics.purchases),
        "syntax = \"proto3\";\npackage shop.v1;\nmessage Purchase {\n  string event_id = 1;\n}\n",
        Some("PROTOBUF"),
    )
    .await?;
    let avro = register(
        &format!("{}-avro-value", topics.purchases),
        r#"{"type": "record", "name": "Purchase", "fields": [{"name": "id", "type": "string"}]}"#,
        None,
    )
    .await?;
    let unknown = 2_000_000_000u32;

    let app = env.start().await?;
    let producer = env.producer()?;
    let as_cust_w = FramedSender {
        producer: &producer,
        customer: "cust-w",
    };
    let body = purchase("evt-w1", "cust-w", "ord-w1", 1_000).encode_to_vec();
    let cases: Vec<(Vec<u8>, &str, String)> = vec![
        (
            framed(unknown, &[1], &body),
            "unknown_schema_id",
            format!("schema id {unknown} is not registered"),
        ),
        (
            // inputs.proto, but the message at [3] is a SurveyResponse.
            framed(id, &[3], &body),
            "wrong_schema",
            "is kizuna.v1.SurveyResponse, expected kizuna.v1.Purchase".into(),
        ),
        (
            framed(other_package, &[0], &body),
            "wrong_schema",
            "is shop.v1.Purchase, expected kizuna.v1.Purchase".into(),
        ),
        (framed(avro, &[0], &body), "wrong_schema", "AVRO".into()),
        (
            // Truncated inside the schema id.
            vec![0, 0, 0],
            "unparseable",
            "registry frame: truncated in the schema id".into(),
        ),
    ];
    for (payload, _, _) in &cases {
        producer
            .send(&topics.purchases, Some("cust-w"), payload, &[])
            .await?;
    }
    // Consumption goes on: a good framed purchase behind the bad ones is applied.
    let good = purchase("evt-w2", "cust-w", "ord-w2", 1_500);
    as_cust_w.send(&topics.purchases, (id, &[1]), &good).await?;
    let state = app
        .wait_for_customer("cust-w", "the good purchase behind the bad ones", |s| {
            s["metrics"]["orders"] == json!(1.0)
        })
        .await?;
    assert_eq!(state["metrics"]["lifetime_spend_minor"], json!(1_500));

    let letters = env
        .reader(&topics.dead_letter)?
        .collect_until(WAIT, |got| got.len() >= cases.len())
        .await?;
    assert_eq!(letters.len(), cases.len(), "{letters:?}");
    for (payload, reason, detail) in &cases {
        let letter = letters
            .iter()
            .find(|l| &l.payload == payload)
            .with_context(|| format!("no dead letter for the {reason} case"))?;
        assert_eq!(letter.header("kizuna-dlq-reason"), Some(*reason));
        let got = letter.header("kizuna-dlq-detail").unwrap_or_default();
        assert!(got.contains(detail.as_str()), "{reason}: {got}");
        assert_eq!(letter.key.as_deref(), Some("cust-w"));
    }

    let text = app.get_text("/metrics").await?;
    let lookups = |outcome| {
        metric_sum(
            &text,
            "kizuna_schema_registry_lookups_total",
            &[("outcome", outcome)],
        )
    };
    assert_eq!(
        lookups("found"),
        3.0,
        "three schemas, each fetched once: {text}"
    );
    assert!(lookups("not_found") >= 1.0, "{text}");
    let p = topics.purchases.as_str();
    for (reason, n) in [("unknown_schema_id", 1.0), ("wrong_schema", 3.0)] {
        assert_eq!(
            metric_sum(
                &text,
                "kizuna_dead_letters_total",
                &[("reason", reason), ("topic", p)]
            ),
            n,
            "{reason}: {text}"
        );
    }

    app.stop().await?;
    env.cleanup().await
}

async fn without_a_registry_a_framed_message_is_dead_lettered_saying_so(
    broker: Broker,
) -> anyhow::Result<()> {
    let env = TestEnv::on(broker).await?;
    assert!(env.settings.registry.url.is_none());
    let topics = env.settings.kafka.topics.clone();
    let app = env.start().await?;
    let producer = env.producer()?;
    let body = purchase("evt-n1", "cust-n", "ord-n1", 1_000).encode_to_vec();
    let payload = framed(1, &[1], &body);
    producer
        .send(&topics.purchases, Some("cust-n"), &payload, &[])
        .await?;
    let letters = env
        .reader(&topics.dead_letter)?
        .collect_until(WAIT, |got| !got.is_empty())
        .await?;
    assert_eq!(letters[0].payload, payload);
    assert_eq!(
        letters[0].header("kizuna-dlq-reason"),
        Some("registry_not_configured")
    );
    let detail = letters[0].header("kizuna-dlq-detail").unwrap_or_default();
    assert!(detail.contains("registry.url"), "{detail}");
    app.stop().await?;
    env.cleanup().await
}

/// A TCP path to the registry that can be opened later: the registry is real, only the way
/// to it is missing at first.
async fn open_path_to_registry(listener: tokio::net::TcpListener) {
    let target = registry_url();
    let authority = target
        .split("://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("127.0.0.1:8081")
        .to_owned();
    while let Ok((mut inbound, _)) = listener.accept().await {
        let authority = authority.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(&authority).await {
                tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                    .await
                    .ok();
            }
        });
    }
}

async fn an_unreachable_registry_holds_the_batch_and_dead_letters_nothing(
    broker: Broker,
) -> anyhow::Result<()> {
    let mut env = TestEnv::on(broker).await?;
    let topics = env.settings.kafka.topics.clone();
    let id = register_inputs(&topics.purchases).await?;
    // The engine's registry URL points at a port where nothing listens yet.
    let port = kizuna_e2e::process::free_port()?;
    let path = registry_url();
    let api_path = path
        .split("://")
        .nth(1)
        .and_then(|r| r.split_once('/'))
        .map(|(_, p)| p.to_owned())
        .unwrap_or_default();
    env.settings.registry.url = Some(format!("http://127.0.0.1:{port}/{api_path}"));
    env.settings.registry.attempts = 2;
    env.settings.registry.request_timeout_ms = 500;
    let app = env.start().await?;
    let producer = env.producer()?;
    let as_cust_u = FramedSender {
        producer: &producer,
        customer: "cust-u",
    };
    let body = purchase("evt-u1", "cust-u", "ord-u1", 4_000);
    as_cust_u.send(&topics.purchases, (id, &[1]), &body).await?;

    // The batch fails and is retried (transient), again and again; nothing is applied or
    // dead-lettered meanwhile, and readiness says ingest is failing.
    wait_for("two failed attempts of the batch", WAIT, || async {
        let text = app.get_text("/metrics").await?;
        let failures = metric_sum(&text, "kizuna_batch_failures_total", &[]);
        Ok((failures >= 2.0).then_some(()))
    })
    .await?;
    let (status, _) = app.get("/v1/customers/cust-u").await?;
    assert_eq!(status, 404);
    let text = app.get_text("/metrics").await?;
    assert!(
        metric_sum(
            &text,
            "kizuna_schema_registry_lookups_total",
            &[("outcome", "unavailable")]
        ) >= 1.0,
        "{text}"
    );
    let (ready, body) = app.get("/readyz").await?;
    assert_eq!(ready, 503, "{body}");
    assert!(
        env.reader(&topics.dead_letter)?
            .read_to_end(WAIT)
            .await?
            .is_empty()
    );

    // The way to the registry opens: the same message is applied, still no dead letter.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let proxy = tokio::spawn(open_path_to_registry(listener));
    let state = app
        .wait_for_customer("cust-u", "the purchase once the registry answers", |s| {
            s["metrics"]["orders"] == json!(1.0)
        })
        .await?;
    assert_eq!(state["metrics"]["lifetime_spend_minor"], json!(4_000));
    assert!(
        env.reader(&topics.dead_letter)?
            .read_to_end(WAIT)
            .await?
            .is_empty()
    );
    app.stop().await?;
    proxy.abort();
    env.cleanup().await
}
