//! Schema Registry framing, end to end: the real engine, the real brokers (each test on Apache
//! Kafka and on tansu) and PostgreSQL, and a real registry with the Confluent-compatible API (Apicurio Registry, started by
//! `deploy/local/up.sh` or `deploy/local/registry.sh`).
//!
//! `KIZUNA_TEST_REGISTRY_URL` (default `http://127.0.0.1:8081/apis/ccompat/v7`). The output
//! test runs `kizuna topics create`: build the binary first (`cargo build --bin kizuna`).
//!
//! The frames are written and read here by hand, independently of the engine's code: magic
//! byte 0, the schema id (4 bytes, big-endian), the message indexes (zig-zag varints: a count,
//! then the indexes; the single byte 0 for the first message), then the protobuf payload.

use std::time::Duration;

use anyhow::{Context, bail};
use kizuna::config::OutputFormat;
use kizuna_e2e::process::{metric_sum, run_command};
use kizuna_e2e::{Broker, TestEnv, TestProducer, wait_for};
use kizuna_proto::{INPUTS_PROTO, OUTPUTS_PROTO, Timestamp, v1};
use prost::Message;
use serde_json::json;

#[path = "shared/points_kit.rs"]
mod points_kit;

kizuna_e2e::on_each_broker! {
    framed_purchases_and_tickets_update_the_state,
    framed_redemptions_move_points_and_refusals_are_dead_lettered,
    unknown_ids_and_other_schemas_go_to_the_dead_letters_with_a_reason,
    without_a_registry_a_framed_message_is_dead_lettered_saying_so,
    an_unreachable_registry_holds_the_batch_and_dead_letters_nothing,
    outputs_in_registry_framing_decode_through_the_registry,
}

const WAIT: Duration = Duration::from_secs(60);

fn registry_url() -> String {
    std::env::var("KIZUNA_TEST_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".into())
}

/// Registers `schema` (PROTOBUF, or AVRO when `schema_type` is None) under `subject`, as a
/// producer's serializer would; returns its id.
async fn register(subject: &str, schema: &str, schema_type: Option<&str>) -> anyhow::Result<u32> {
    let mut body = json!({ "schema": schema });
    if let Some(t) = schema_type {
        body["schemaType"] = json!(t);
    }
    let resp = reqwest::Client::new()
        .post(format!("{}/subjects/{subject}/versions", registry_url()))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(body.to_string())
        .send()
        .await
        .with_context(|| {
            format!(
                "is the registry up at {}? (deploy/local/registry.sh)",
                registry_url()
            )
        })?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("registering {subject}: {status} {text}");
    }
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let id = v["id"].as_u64().context("an id")?;
    Ok(u32::try_from(id)?)
}

/// Registers inputs.proto under `<topic>-value`, as a Confluent protobuf serializer producing
/// to `topic` does; returns its id.
async fn register_inputs(topic: &str) -> anyhow::Result<u32> {
    register(&format!("{topic}-value"), INPUTS_PROTO, Some("PROTOBUF")).await
}

/// Produces messages keyed by one customer in registry framing, as a Confluent serializer does.
struct FramedSender<'a> {
    producer: &'a TestProducer,
    customer: &'a str,
}

impl FramedSender<'_> {
    /// Sends `message` to `topic` framed with schema `schema_id` and message `indexes`.
    async fn send(
        &self,
        topic: &str,
        (schema_id, indexes): (u32, &[i32]),
        message: &impl Message,
    ) -> anyhow::Result<()> {
        let payload = framed(schema_id, indexes, &message.encode_to_vec());
        let key = Some(self.customer);
        self.producer.send(topic, key, &payload, &[]).await
    }
}

/// `GET /schemas/ids/{id}`: the registered schema text.
async fn schema_text(id: u32) -> anyhow::Result<String> {
    let v: serde_json::Value = reqwest::get(format!("{}/schemas/ids/{id}", registry_url()))
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(v["schema"].as_str().context("schema text")?.to_owned())
}

fn zigzag(v: i32, out: &mut Vec<u8>) {
    let mut n = ((v << 1) ^ (v >> 31)) as u32;
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn framed(schema_id: u32, indexes: &[i32], body: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&schema_id.to_be_bytes());
    if indexes == [0] {
        out.push(0);
    } else {
        zigzag(indexes.len() as i32, &mut out);
        for i in indexes {
            zigzag(*i, &mut out);
        }
    }
    out.extend_from_slice(body);
    out
}

/// Schema id, message indexes and body of a framed message.
fn unframe(bytes: &[u8]) -> anyhow::Result<(u32, Vec<i32>, &[u8])> {
    if bytes.first() != Some(&0) || bytes.len() < 6 {
        bail!(
            "not in registry framing: {:?}",
            &bytes[..bytes.len().min(8)]
        );
    }
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let mut at = 5;
    let mut read = || -> anyhow::Result<i32> {
        let (mut v, mut shift) = (0u32, 0);
        loop {
            let b = *bytes.get(at).context("truncated varint")?;
            at += 1;
            v |= u32::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(((v >> 1) as i32) ^ -((v & 1) as i32));
            }
            shift += 7;
        }
    };
    let count = read()?;
    let indexes = if count == 0 {
        vec![0]
    } else {
        (0..count).map(|_| read()).collect::<anyhow::Result<_>>()?
    };
    Ok((id, indexes, &bytes[at..]))
}

/// The index of top-level message `name` in `.proto` text: its rank among the top-level
/// `message` declarations.
fn top_level_index(proto: &str, name: &str) -> Option<i32> {
    proto
        .lines()
        .filter_map(|l| l.strip_prefix("message "))
        .map(|rest| rest.split_whitespace().next().unwrap_or_default())
        .position(|n| n == name)
        .map(|i| i as i32)
}

fn now_ts() -> Option<Timestamp> {
    let now = chrono::Utc::now();
    Some(Timestamp {
        seconds: now.timestamp(),
        nanos: 0,
    })
}

fn purchase(event_id: &str, customer: &str, order: &str, amount_minor: i64) -> v1::Purchase {
    v1::Purchase {
        event_id: event_id.into(),
        customer_id: customer.into(),
        occurred_at: now_ts(),
        order_id: order.into(),
        kind: v1::PurchaseKind::Purchase as i32,
        amount_minor,
        currency: "JPY".into(),
        line_items: vec![v1::LineItem {
            sku: "tea-01".into(),
            category: "daily_goods".into(),
            quantity: 1,
            unit_price_minor: amount_minor,
        }],
        channel: "web".into(),
        ..Default::default()
    }
}

fn open_ticket(event_id: &str, customer: &str, ticket: &str) -> v1::SupportTicket {
    v1::SupportTicket {
        event_id: event_id.into(),
        customer_id: customer.into(),
        occurred_at: now_ts(),
        ticket_id: ticket.into(),
        status: v1::TicketStatus::Opened as i32,
        priority: v1::TicketPriority::High as i32,
        channel: "chat".into(),
        category: "delivery".into(),
        escalated: true,
        ..Default::default()
    }
}

/// A test environment whose engine reads registry-framed input with the real registry.
async fn env_with_registry(broker: Broker) -> anyhow::Result<TestEnv> {
    let mut env = TestEnv::on(broker).await?;
    env.settings.registry.url = Some(registry_url());
    Ok(env)
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

/// Points redeemed at a till that produces through a Confluent protobuf serializer:
/// `kizuna.v1.Redemption` is message 5 of inputs.proto (appended after InputEvent).
async fn framed_redemptions_move_points_and_refusals_are_dead_lettered(
    broker: Broker,
) -> anyhow::Result<()> {
    let mut env = env_with_registry(broker).await?;
    points_kit::add_points(&mut env)?;
    let topics = env.settings.kafka.topics.clone();
    let purchases_id = register_inputs(&topics.purchases).await?;
    let redemptions_id = register_inputs(&topics.redemptions).await?;
    let redemption_at = [top_level_index(INPUTS_PROTO, "Redemption").context("Redemption")?];
    assert_eq!(redemption_at, [5], "appended: the earlier indexes stay");

    let app = env.start().await?;
    let producer = env.producer()?;
    let till = FramedSender {
        producer: &producer,
        customer: "cust-t",
    };
    // 50,000 JPY: 500 points.
    till.send(
        &topics.purchases,
        (purchases_id, &[1]),
        &purchase("evt-t1", "cust-t", "ord-t1", 50_000),
    )
    .await?;
    points_kit::wait_points(&env, "cust-t", 500, |_| true, WAIT).await?;
    let coffee = v1::Redemption {
        event_id: "evt-t2".into(),
        customer_id: "cust-t".into(),
        occurred_at: now_ts(),
        redemption_id: "till-7/0042".into(),
        kind: v1::RedemptionKind::Redeem as i32,
        points: 300,
        reward: "coffee".into(),
    };
    till.send(
        &topics.redemptions,
        (redemptions_id, &redemption_at),
        &coffee,
    )
    .await?;
    let after = points_kit::wait_points(&env, "cust-t", 200, |_| true, WAIT).await?;
    assert_eq!(after.changes.as_ref().map(|t| t.redeemed), Some(300));

    // A second coffee does not fit in 200 points (JSON, next to the framed ones).
    let second = points_kit::redemption("evt-t3", "cust-t", "till-7/0043", 300, "coffee");
    producer
        .send_json(&topics.redemptions, "cust-t", &second)
        .await?;
    // The first one given back, framed: 500 again.
    // Later than the JSON one (now_ts() drops the fraction of a second): in one batch, events
    // apply in event-time order.
    let now = chrono::Utc::now();
    let cancel = v1::Redemption {
        event_id: "evt-t4".into(),
        occurred_at: Some(Timestamp {
            seconds: now.timestamp(),
            nanos: i32::try_from(now.timestamp_subsec_nanos())?,
        }),
        kind: v1::RedemptionKind::Cancel as i32,
        points: 0,
        reward: String::new(),
        ..coffee
    };
    till.send(
        &topics.redemptions,
        (redemptions_id, &redemption_at),
        &cancel,
    )
    .await?;
    let back = |p: &v1::PointsChanged| p.changes.as_ref().is_some_and(|t| t.cancelled == 300);
    points_kit::wait_points(&env, "cust-t", 500, back, WAIT).await?;
    // And its cancel resent as JSON under another event id: a duplicate, nothing moves.
    producer
        .send_json(
            &topics.redemptions,
            "cust-t",
            &points_kit::cancel("evt-t5", "cust-t", "till-7/0042"),
        )
        .await?;

    let letters = env
        .reader(&topics.dead_letter)?
        .collect_until(WAIT, |got| !got.is_empty())
        .await?;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        letters[0].header("kizuna-dlq-reason"),
        Some("insufficient_points")
    );
    let text = wait_for("the resent cancel counted", WAIT, || async {
        let text = app.get_text("/metrics").await?;
        let duplicates = metric_sum(
            &text,
            "kizuna_events_consumed_total",
            &[
                ("topic", topics.redemptions.as_str()),
                ("outcome", "duplicate"),
            ],
        );
        Ok((duplicates == 1.0).then_some(text))
    })
    .await?;
    assert_eq!(
        metric_sum(
            &text,
            "kizuna_events_consumed_total",
            &[
                ("topic", topics.redemptions.as_str()),
                ("outcome", "applied")
            ]
        ),
        2.0,
        "{text}"
    );
    let changes = points_kit::points_changed(
        &env.reader(&topics.points)?.read_to_end(WAIT).await?,
        "cust-t",
    );
    assert_eq!(
        changes.last().map(|p| p.available),
        Some(500),
        "the resent cancel gave nothing back twice"
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

async fn outputs_in_registry_framing_decode_through_the_registry(
    broker: Broker,
) -> anyhow::Result<()> {
    let mut env = env_with_registry(broker).await?;
    env.settings.outputs.format = OutputFormat::ConfluentProtobuf;
    let topics = env.settings.kafka.topics.clone();

    // `kizuna topics create` registers outputs.proto under each output topic's subject.
    let (ok, _, stderr) = run_command(&env.settings, &["topics", "create"])?;
    assert!(ok, "kizuna topics create failed: {stderr}");
    let subject = format!("{}-value", topics.tier_changed);
    assert!(
        stderr.contains(&format!("registered kizuna.v1 outputs.proto as {subject}")),
        "{stderr}"
    );
    let latest: serde_json::Value = reqwest::get(format!(
        "{}/subjects/{subject}/versions/latest",
        registry_url()
    ))
    .await?
    .error_for_status()?
    .json()
    .await?;
    let registered_id = latest["id"].as_u64().context("id")? as u32;
    assert_eq!(latest["schemaType"], json!("PROTOBUF"), "{latest}");

    let app = env.start().await?;
    let producer = env.producer()?;
    for (event, order, amount) in [("evt-o1", "ord-o1", 20_000), ("evt-o2", "ord-o2", 15_000)] {
        let body = serde_json::to_value(purchase(event, "cust-o", order, amount))?;
        producer
            .send_json(&topics.purchases, "cust-o", &body)
            .await?;
    }
    app.wait_for_customer("cust-o", "silver", |s| s["tier"] == json!("silver"))
        .await?;

    let out = env
        .reader(&topics.tier_changed)?
        .collect_until(WAIT, |got| !got.is_empty())
        .await?;
    let msg = &out[0];
    assert_eq!(msg.header("ce_type"), Some("kizuna.v1.TierChanged"));
    assert_eq!(msg.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(msg.key.as_deref(), Some("cust-o"));
    // A subscriber decodes it through the registry: the id names outputs.proto, the indexes
    // its TierChanged message.
    let (id, indexes, body) = unframe(&msg.payload)?;
    assert_eq!(id, registered_id);
    let schema = schema_text(id).await?;
    assert!(schema.contains("package kizuna.v1;"), "{schema}");
    assert_eq!(schema, OUTPUTS_PROTO);
    assert_eq!(
        indexes,
        vec![top_level_index(&schema, "TierChanged").context("TierChanged")?]
    );
    let event = v1::TierChanged::decode(body)?;
    assert_eq!(event.customer_id, "cust-o");
    assert_eq!(
        (event.previous_tier.as_str(), event.new_tier.as_str()),
        ("member", "silver")
    );
    assert_eq!(event.kind(), v1::TierChangeKind::Upgrade);
    assert_eq!(event.caused_by, "evt-o2");
    assert_eq!(event.metrics.map(|m| m.lifetime_spend_minor), Some(35_000));

    // A promoter's answer makes the customer an angel (promoter, spend under the threshold):
    // a SegmentChanged, framed the same way with its own message index.
    producer
        .send_json(
            &topics.surveys,
            "cust-o",
            &json!({"eventId": "evt-o3", "customerId": "cust-o",
                    "occurredAt": chrono::Utc::now().to_rfc3339(), "surveyId": "nps-1",
                    "kind": "SURVEY_KIND_NPS", "score": 9}),
        )
        .await?;
    app.wait_for_customer("cust-o", "angel", |s| s["segment"] == json!("angel"))
        .await?;
    let segments = env
        .reader(&topics.segment_changed)?
        .collect_until(WAIT, |got| !got.is_empty())
        .await?;
    let (seg_id, seg_indexes, seg_body) = unframe(&segments[0].payload)?;
    assert_eq!(schema_text(seg_id).await?, OUTPUTS_PROTO);
    assert_eq!(
        seg_indexes,
        vec![top_level_index(OUTPUTS_PROTO, "SegmentChanged").context("SegmentChanged")?]
    );
    let seg = v1::SegmentChanged::decode(seg_body)?;
    assert_eq!(seg.customer_id, "cust-o");
    assert_eq!(seg.new_segment(), v1::Segment::Angel);
    assert_eq!(seg.caused_by, "evt-o3");
    assert_eq!(
        segments[0].header("ce_type"),
        Some("kizuna.v1.SegmentChanged")
    );

    // Registering again is harmless: the same ids.
    let (ok, _, again) = run_command(&env.settings, &["topics", "create"])?;
    assert!(ok, "{again}");
    assert!(
        again.contains(&format!("{subject} (schema id {registered_id})")),
        "{again}"
    );

    app.stop().await?;
    env.cleanup().await
}
