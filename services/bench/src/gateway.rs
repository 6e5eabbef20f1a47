//! The gateway scenario: N concurrent HTTP clients post signed Shopify orders to the webhook
//! gateway for a fixed time; every 200 was answered only after the broker acknowledged the
//! order's event (idempotent producer, acks=all). The baseline, measured in the same run: the
//! same producer, with the same settings, producing the same events directly (no HTTP, no
//! signature, no mapping), one acknowledged event per call, with the same concurrency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use kizuna::inputs::decode::WireEvent;
use kizuna_gateway::api::Source;
use kizuna_gateway::mapping::{Mapped, Mapping, shopify};
use kizuna_gateway::produce::{Outgoing, Producer};
use kizuna_gateway::signature::sign_shopify;
use kizuna_gateway::startup::Gateway;
use secrecy::SecretString;
use serde_json::Value;

use crate::env::{BenchEnv, Stack};
use crate::report::Latency;

/// Shopify's documented orders/create sample: every posted order is this one, with its own
/// order id, customer and date.
const SAMPLE_ORDER: &str = include_str!("../../../tests/fixtures/shopify/orders-create.json");
const PROGRAMME: &str = include_str!("../../loyalty-engine/config/programme.toml");
const SECRET: &str = "kizuna-bench-secret";
/// Distinct orders (and customers) posted in turn.
const ORDERS: usize = 2_000;

#[derive(Debug, Clone, Copy)]
pub struct GatewayOptions {
    pub clients: usize,
    pub duration: Duration,
    pub warm_up: Duration,
}

/// One side of the comparison.
#[derive(Debug, Clone)]
pub struct Measure {
    pub requests: u64,
    pub seconds: f64,
    pub failures: u64,
    pub latency: Latency,
}

impl Measure {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds.max(1e-9)
    }
}

#[derive(Debug, Clone)]
pub struct GatewayRun {
    pub gateway: Measure,
    pub baseline: Measure,
    pub body_bytes: usize,
    pub event_bytes: usize,
}

pub async fn run(stack: &Stack, opts: GatewayOptions) -> anyhow::Result<GatewayRun> {
    let env = stack.env("gateway", true, None).await?;
    let result = run_in(&env, opts).await;
    stack.drop_env(&env).await;
    result
}

/// A signed order: its body and its X-Shopify-Hmac-Sha256.
type SignedOrder = (Vec<u8>, String);

/// The signed orders and the events the gateway makes of them.
fn orders(mapping: &Mapping) -> anyhow::Result<(Vec<SignedOrder>, Vec<Outgoing>)> {
    let base: Value = serde_json::from_str(SAMPLE_ORDER)?;
    let now = chrono::Utc::now().to_rfc3339();
    let mut signed = Vec::with_capacity(ORDERS);
    let mut events = Vec::with_capacity(ORDERS);
    for i in 0..ORDERS {
        let mut order = base.clone();
        order["id"] = Value::from(9_000_000_000u64 + i as u64);
        order["customer"]["id"] = Value::from(7_000_000u64 + i as u64);
        order["processed_at"] = Value::from(now.clone());
        order["created_at"] = Value::from(now.clone());
        let body = serde_json::to_vec(&order)?;
        let signature = sign_shopify(SECRET.as_bytes(), &body);
        let Mapped::Events(mut drafts) =
            shopify::map(Some("orders/paid"), &order, &mapping.shopify)
                .map_err(|e| anyhow::anyhow!("the bench order does not map: {e}"))?
        else {
            anyhow::bail!("the bench order maps to nothing");
        };
        let mut draft = drafts.remove(0);
        draft.assign_event_id(format!("bench-{i}"));
        let WireEvent::Purchase(p) = &draft.event else {
            anyhow::bail!("not a purchase");
        };
        events.push(Outgoing {
            kind: draft.kind(),
            event_id: draft.event_id().to_owned(),
            key: draft.customer_id().to_owned(),
            payload: serde_json::to_vec(p)?,
        });
        signed.push((body, signature));
    }
    Ok((signed, events))
}

async fn run_in(env: &BenchEnv, opts: GatewayOptions) -> anyhow::Result<GatewayRun> {
    let dir = std::env::temp_dir().join(format!("kizuna-bench-gateway-{}", env.id));
    std::fs::create_dir_all(&dir)?;
    let programme = dir.join("programme.toml");
    std::fs::write(
        &programme,
        PROGRAMME.replacen("currency = \"JPY\"", "currency = \"USD\"", 1),
    )?;
    let mut engine = kizuna::config::Settings::load(None)?;
    engine.kafka.brokers = env.brokers.clone();
    engine.kafka.topics = env.topics.clone();
    engine.programme_file = Some(programme);
    let mut settings = kizuna_gateway::config::Settings::defaults()?;
    settings.http.bind = "127.0.0.1:0".parse()?;
    settings.rate_limit.per_second = 0;
    settings.sources.shopify.secret = Some(SecretString::from(SECRET));
    let mapping = Mapping::built_in()?;
    let (signed, events) = orders(&mapping)?;
    let body_bytes = signed.iter().map(|(b, _)| b.len()).sum::<usize>() / signed.len().max(1);
    let event_bytes = events.iter().map(|e| e.payload.len()).sum::<usize>() / events.len().max(1);

    let gateway = Gateway::build(settings.clone(), engine.clone()).await?;
    let url = format!("http://127.0.0.1:{}/webhooks/shopify", gateway.port());
    let stop = gateway.stop_token();
    let handle = tokio::spawn(gateway.run_until_stopped());
    eprintln!(
        "kizuna-bench: gateway: {} clients for {:.0} s (+{:.0} s warm-up), signed orders of {body_bytes} B",
        opts.clients,
        opts.duration.as_secs_f64(),
        opts.warm_up.as_secs_f64()
    );
    let gateway_measure = http_clients(&url, Arc::new(signed), opts).await;
    stop.cancel();
    handle.await.context("the gateway task panicked")??;
    let gateway_measure = gateway_measure?;

    eprintln!("kizuna-bench: gateway: baseline, the same producer without HTTP…");
    let producer = Producer::new(&engine.kafka, &settings.kafka)?;
    let baseline = direct_producers(producer, Arc::new(events), opts).await?;
    Ok(GatewayRun {
        gateway: gateway_measure,
        baseline,
        body_bytes,
        event_bytes,
    })
}

/// What one client measured: latencies (ms) of successes inside the window, failures.
type ClientResult = (Vec<f64>, u64);

fn merge(results: Vec<ClientResult>, seconds: f64) -> Measure {
    let mut samples = Vec::new();
    let mut failures = 0;
    for (s, f) in results {
        samples.extend(s);
        failures += f;
    }
    let requests = samples.len() as u64;
    Measure {
        requests,
        seconds,
        failures,
        latency: Latency::of(samples, requests as usize),
    }
}

/// Runs `opts.clients` closed-loop clients: client `c` makes its `k`-th call (k = 0, 1, …)
/// with `call(c, k)`, which says whether it succeeded, until the end. Only calls sent after
/// the warm-up and answered before the end are measured.
async fn closed_loop<F, Fut>(opts: GatewayOptions, call: F) -> anyhow::Result<Measure>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let start = Instant::now();
    let measure_from = start + opts.warm_up;
    let end = measure_from + opts.duration;
    let mut tasks = Vec::new();
    for c in 0..opts.clients {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0u64;
            let mut k = 0;
            while Instant::now() < end {
                let sent = Instant::now();
                let ok = call(c, k).await;
                k += 1;
                if sent >= measure_from && Instant::now() <= end {
                    if ok {
                        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                    } else {
                        failures += 1;
                    }
                }
            }
            (latencies, failures)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.context("a client task panicked")?);
    }
    Ok(merge(results, opts.duration.as_secs_f64()))
}

async fn http_clients(
    url: &str,
    orders: Arc<Vec<SignedOrder>>,
    opts: GatewayOptions,
) -> anyhow::Result<Measure> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.clients)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = url.to_owned();
    closed_loop(opts, move |c, k| {
        let (client, url, orders) = (client.clone(), url.clone(), orders.clone());
        async move {
            let (body, signature) = &orders[(c + k * opts.clients) % orders.len()];
            let result = client
                .post(&url)
                .header("content-type", "application/json")
                .header("X-Shopify-Topic", "orders/paid")
                .header("X-Shopify-Hmac-Sha256", signature.as_str())
                .header("X-Shopify-Webhook-Id", format!("bench-{c}-{}", k + 1))
                .body(body.clone())
                .send()
                .await;
            match result {
                Ok(r) => {
                    let status = r.status().as_u16();
                    r.bytes().await.is_ok() && status == 200
                }
                Err(_) => false,
            }
        }
    })
    .await
}

async fn direct_producers(
    producer: Producer,
    events: Arc<Vec<Outgoing>>,
    opts: GatewayOptions,
) -> anyhow::Result<Measure> {
    let measure = {
        let producer = producer.clone();
        closed_loop(opts, move |c, k| {
            let (producer, events) = (producer.clone(), events.clone());
            async move {
                let event = &events[(c + k * opts.clients) % events.len()];
                producer
                    .send_all(Source::Shopify, std::slice::from_ref(event))
                    .await
                    .is_ok()
            }
        })
        .await
    };
    producer.flush(Duration::from_secs(30));
    measure
}
