//! Traces through the outbox (README, "Traces"): a producer's `traceparent` on an input is
//! continued by the engine, stored with the outbox message and set on the output it caused, so a
//! subscriber's trace joins the producer's. With OTLP export on, the engine's spans (receive,
//! batch, commit, relay, publish, and one per HTTP request) land in that same trace in a real
//! Jaeger (`deploy/local/jaeger.sh`, started here if it is not running); with it off, the
//! output carries the producer's `traceparent` as it came.

use std::collections::HashSet;
use std::time::Duration;

use kizuna_e2e::jaeger::{Jaeger, Span};
use kizuna_e2e::process::{EngineProcess, Launch, engine_binary};
use kizuna_e2e::{Broker, Received, TestEnv, wait_for};

use crate::helpers::{Scene, WAIT};
use crate::inputs::purchase;

kizuna_e2e::on_each_broker! {
    a_producers_trace_runs_through_the_engine_to_the_output,
    an_unreachable_receiver_is_logged_and_changes_nothing_else,
    without_export_the_output_carries_the_producers_traceparent,
}

/// The engine's spans that the trace of one traced purchase must hold.
const ENGINE_SPANS: [&str; 5] = [
    "kizuna.receive",
    "kizuna.batch",
    "kizuna.commit",
    "kizuna.relay",
    "kizuna.publish",
];

/// A fresh trace id (32 hex digits) and producer span id (16), as a producer's tracer makes them.
fn producer_context() -> (String, String) {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    (trace, span)
}

/// Two purchases by `customer` that together lift them to silver (30,000 JPY in two orders):
/// the first without a `traceparent`, the second (which causes the tier change) with
/// `traceparent` if given, as a traced producer sends it.
async fn buy_to_silver(
    env: &TestEnv,
    customer: &str,
    traceparent: Option<&str>,
) -> anyhow::Result<()> {
    let producer = env.producer()?;
    for (i, tp) in [None, traceparent].into_iter().enumerate() {
        let event = purchase(
            &format!("evt-{customer}-{i}"),
            customer,
            &format!("ord-{i}"),
            15_000,
        );
        let mut headers: Vec<(&str, &[u8])> = vec![("content-type", b"application/json")];
        if let Some(tp) = tp {
            headers.push(("traceparent", tp.as_bytes()));
        }
        producer
            .send(
                &env.settings.kafka.topics.purchases,
                Some(customer),
                &serde_json::to_vec(&event)?,
                &headers,
            )
            .await?;
    }
    Ok(())
}

/// The tier change of `customer` (caused by their second purchase).
async fn tier_change(env: &TestEnv, customer: &str) -> anyhow::Result<Received> {
    let topic = &env.settings.kafka.topics.tier_changed;
    let of_customer = |m: &Received| {
        m.key.as_deref() == Some(customer) && m.header("ce_type") == Some("kizuna.v1.TierChanged")
    };
    let got = env
        .reader(topic)?
        .collect_until(WAIT, |got| got.iter().any(of_customer))
        .await?;
    got.into_iter()
        .find(of_customer)
        .ok_or_else(|| anyhow::anyhow!("no tier change of {customer} on {topic}"))
}

/// `traceparent`'s trace id and parent span id.
fn parts(traceparent: &str) -> (&str, &str) {
    let mut fields = traceparent.split('-');
    let (_, trace, span) = (fields.next(), fields.next(), fields.next());
    (trace.unwrap_or_default(), span.unwrap_or_default())
}

fn by_operation<'a>(spans: &'a [Span], operation: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.operation == operation).collect()
}

async fn a_producers_trace_runs_through_the_engine_to_the_output(
    broker: Broker,
) -> anyhow::Result<()> {
    let jaeger = Jaeger::start().await?;
    let env = TestEnv::on(broker).await?;
    let service = format!("kizuna-test-{}", env.id);
    let mut engine = exporting_engine(&env, &jaeger.otlp_http, &service).await?;

    let (trace, producer_span) = producer_context();
    let customer = format!("cust-trace-{}", env.id);
    let traceparent = format!("00-{trace}-{producer_span}-01");
    buy_to_silver(&env, &customer, Some(&traceparent)).await?;

    // The output carries the producer's trace, its parent the engine's publish span.
    let out = tier_change(&env, &customer).await?;
    let carried = out
        .header("traceparent")
        .ok_or_else(|| anyhow::anyhow!("the output carries no traceparent: {out:?}"))?
        .to_owned();
    let (out_trace, out_parent) = parts(&carried);
    assert_eq!(
        out_trace, trace,
        "the output continues the producer's trace"
    );
    assert_ne!(
        out_parent, producer_span,
        "the output's parent is the engine's publish span, not the producer's"
    );
    assert!(carried.ends_with("-01"), "sampled: {carried}");

    // A customer read with a traceparent of the same trace (another span of the producer).
    let (_, reader_span) = producer_context();
    let answer = reqwest::Client::new()
        .get(engine.url(&format!("/v1/customers/{customer}")))
        .header("traceparent", format!("00-{trace}-{reader_span}-01"))
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    assert!(
        answer.status().as_u16() < 500,
        "GET /v1/customers answered {}",
        answer.status()
    );

    // Jaeger holds the engine's spans in the producer's trace.
    let wanted: HashSet<&str> = ENGINE_SPANS
        .into_iter()
        .chain(["GET /v1/customers/{id}"])
        .collect();
    let spans = wait_for(
        &format!("Jaeger to hold the engine's spans of trace {trace}"),
        WAIT,
        || {
            let jaeger = jaeger.clone();
            let (trace, wanted) = (trace.clone(), wanted.clone());
            async move {
                let spans = jaeger.trace(&trace).await?;
                let seen: HashSet<&str> = spans.iter().map(|s| s.operation.as_str()).collect();
                Ok(wanted.is_subset(&seen).then_some(spans))
            }
        },
    )
    .await
    .map_err(|e| e.context(format!("engine log tail:\n{}", engine.log_tail(30))))?;

    for s in &spans {
        assert_eq!(s.service, service, "{s:?}");
    }
    let receive = by_operation(&spans, "kizuna.receive");
    assert_eq!(receive.len(), 1, "{spans:#?}");
    assert_eq!(
        receive[0].parents,
        [producer_span.as_str()],
        "receive is a child of the producer's span"
    );
    let batch = by_operation(&spans, "kizuna.batch");
    assert_eq!(batch.len(), 1, "{spans:#?}");
    assert_eq!(batch[0].parents, [receive[0].span_id.clone()]);
    let commit = by_operation(&spans, "kizuna.commit");
    assert!(
        commit
            .iter()
            .any(|c| c.parents == [batch[0].span_id.clone()]),
        "the batch's commit is its child: {spans:#?}"
    );
    let relay = by_operation(&spans, "kizuna.relay");
    assert!(
        relay
            .iter()
            .all(|r| r.parents == [receive[0].span_id.clone()]),
        "{spans:#?}"
    );
    let publish = by_operation(&spans, "kizuna.publish");
    assert!(
        publish
            .iter()
            .all(|p| p.parents == [receive[0].span_id.clone()]),
        "{spans:#?}"
    );
    assert!(
        publish.iter().any(|p| p.span_id == out_parent),
        "the output's traceparent names a publish span of the trace ({out_parent}): {spans:#?}"
    );
    let http = by_operation(&spans, "GET /v1/customers/{id}");
    assert_eq!(http.len(), 1, "{spans:#?}");
    assert_eq!(http[0].parents, [reader_span.as_str()]);
    assert_eq!(
        http[0].tags.get("http.route").and_then(|v| v.as_str()),
        Some("/v1/customers/{id}"),
        "{:?}",
        http[0]
    );

    let status = engine.terminate(Duration::from_secs(30)).await?;
    assert!(status.success(), "the engine stopped cleanly: {status}");
    env.cleanup().await
}

/// The `kizuna` binary on `env`, exporting traces to `endpoint` as `service`.
async fn exporting_engine(
    env: &TestEnv,
    endpoint: &str,
    service: &str,
) -> anyhow::Result<EngineProcess> {
    let binary = engine_binary()?;
    let extra = [
        (
            "KIZUNA_TELEMETRY__OTLP_ENDPOINT".to_owned(),
            endpoint.to_owned(),
        ),
        (
            "KIZUNA_TELEMETRY__SERVICE_NAME".to_owned(),
            service.to_owned(),
        ),
        // The SDK's batch processor exports every 5 s by default.
        ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "200".to_owned()),
    ];
    let mut engine = EngineProcess::launch(Launch {
        binary: &binary,
        name: "traced",
        settings: &env.settings,
        extra_env: &extra,
        log_path: std::env::temp_dir()
            .join("kizuna-traces")
            .join(&env.id)
            .join("traced.log"),
    })?;
    engine.wait_ready(WAIT).await?;
    Ok(engine)
}

async fn an_unreachable_receiver_is_logged_and_changes_nothing_else(
    broker: Broker,
) -> anyhow::Result<()> {
    let env = TestEnv::on(broker).await?;
    // Nothing listens there.
    let closed = format!("http://127.0.0.1:{}", kizuna_e2e::process::free_port()?);
    let mut engine = exporting_engine(&env, &closed, "kizuna-unreachable").await?;
    let (trace, producer_span) = producer_context();
    buy_to_silver(
        &env,
        "cust-unreachable",
        Some(&format!("00-{trace}-{producer_span}-01")),
    )
    .await?;
    let out = tier_change(&env, "cust-unreachable").await?;
    let carried = out.header("traceparent").unwrap_or_default();
    assert_eq!(parts(carried).0, trace, "{out:?}");
    wait_for("the SDK to log the failed export", WAIT, || {
        let tail = engine.log_tail(200);
        async move {
            Ok(tail
                .contains("BatchSpanProcessor.ExportError")
                .then_some(()))
        }
    })
    .await?;
    let status = engine.terminate(Duration::from_secs(30)).await?;
    assert!(status.success(), "the engine stopped cleanly: {status}");
    env.cleanup().await
}

async fn without_export_the_output_carries_the_producers_traceparent(
    broker: Broker,
) -> anyhow::Result<()> {
    // In-process, without telemetry.otlp_endpoint (the default): no exporter, no spans.
    let s = Scene::start(broker).await?;
    let (trace, producer_span) = producer_context();
    let traceparent = format!("00-{trace}-{producer_span}-01");
    buy_to_silver(&s.env, "cust-traced", Some(&traceparent)).await?;
    // Inputs without one: their output has none.
    buy_to_silver(&s.env, "cust-plain", None).await?;

    let out = tier_change(&s.env, "cust-traced").await?;
    assert_eq!(out.header("traceparent"), Some(traceparent.as_str()));
    let plain = tier_change(&s.env, "cust-plain").await?;
    assert_eq!(plain.header("traceparent"), None, "{plain:?}");
    s.finish().await
}
