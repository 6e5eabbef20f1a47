//! What the registry tests share: the registry's API, frames written and read by hand, and
//! input messages.

use std::time::Duration;

use anyhow::{Context, bail};
use kizuna_e2e::{Broker, TestEnv, TestProducer};
use kizuna_proto::{INPUTS_PROTO, Timestamp, v1};
use prost::Message;
use serde_json::json;

pub const WAIT: Duration = Duration::from_secs(60);

pub fn registry_url() -> String {
    std::env::var("KIZUNA_TEST_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".into())
}

/// Registers `schema` (PROTOBUF, or AVRO when `schema_type` is None) under `subject`, as a
/// producer's serializer would; returns its id.
pub async fn register(
    subject: &str,
    schema: &str,
    schema_type: Option<&str>,
) -> anyhow::Result<u32> {
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
pub async fn register_inputs(topic: &str) -> anyhow::Result<u32> {
    register(&format!("{topic}-value"), INPUTS_PROTO, Some("PROTOBUF")).await
}

/// Produces messages keyed by one customer in registry framing, as a Confluent serializer does.
pub struct FramedSender<'a> {
    pub producer: &'a TestProducer,
    pub customer: &'a str,
}

impl FramedSender<'_> {
    /// Sends `message` to `topic` framed with schema `schema_id` and message `indexes`.
    pub async fn send(
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
pub async fn schema_text(id: u32) -> anyhow::Result<String> {
    let v: serde_json::Value = reqwest::get(format!("{}/schemas/ids/{id}", registry_url()))
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(v["schema"].as_str().context("schema text")?.to_owned())
}

pub fn zigzag(v: i32, out: &mut Vec<u8>) {
    let mut n = ((v << 1) ^ (v >> 31)) as u32;
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

pub fn framed(schema_id: u32, indexes: &[i32], body: &[u8]) -> Vec<u8> {
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
pub fn unframe(bytes: &[u8]) -> anyhow::Result<(u32, Vec<i32>, &[u8])> {
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
pub fn top_level_index(proto: &str, name: &str) -> Option<i32> {
    proto
        .lines()
        .filter_map(|l| l.strip_prefix("message "))
        .map(|rest| rest.split_whitespace().next().unwrap_or_default())
        .position(|n| n == name)
        .map(|i| i as i32)
}

pub fn now_ts() -> Option<Timestamp> {
    let now = chrono::Utc::now();
    Some(Timestamp {
        seconds: now.timestamp(),
        nanos: 0,
    })
}

pub fn purchase(event_id: &str, customer: &str, order: &str, amount_minor: i64) -> v1::Purchase {
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

pub fn open_ticket(event_id: &str, customer: &str, ticket: &str) -> v1::SupportTicket {
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
pub async fn env_with_registry(broker: Broker) -> anyhow::Result<TestEnv> {
    let mut env = TestEnv::on(broker).await?;
    env.settings.registry.url = Some(registry_url());
    Ok(env)
}
