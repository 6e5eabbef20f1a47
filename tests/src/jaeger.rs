//! The local OTLP receiver of the trace tests: Jaeger (v2, in-memory), which
//! `deploy/local/jaeger.sh` builds once from the Go module proxy and starts on loopback ports.
//!
//! [`Jaeger::start`] runs the script (idempotent: a running Jaeger is reused) and reads the
//! addresses it prints; [`Jaeger::trace`] reads one trace back through Jaeger's query API.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// The addresses `jaeger.sh start` prints.
#[derive(Debug, Clone)]
pub struct Jaeger {
    /// The OTLP/HTTP endpoint (`telemetry.otlp_endpoint`), e.g. `http://127.0.0.1:4318`.
    pub otlp_http: String,
    /// The query API's base URL, e.g. `http://127.0.0.1:16686`.
    pub query: String,
}

/// Started once per test process: tests running in parallel share it.
static STARTED: std::sync::Mutex<Option<Jaeger>> = std::sync::Mutex::new(None);

/// One span of a trace, as Jaeger's query API gives it.
#[derive(Debug, Clone)]
pub struct Span {
    pub span_id: String,
    pub operation: String,
    pub service: String,
    /// The span ids of its `CHILD_OF` references (its parent), in this trace.
    pub parents: Vec<String>,
    pub tags: HashMap<String, Value>,
}

impl Jaeger {
    /// Starts Jaeger (building it on the first run, which takes minutes) or finds it running.
    pub async fn start() -> anyhow::Result<Self> {
        tokio::task::spawn_blocking(Self::start_blocking)
            .await
            .context("starting Jaeger panicked")?
    }

    fn start_blocking() -> anyhow::Result<Self> {
        let mut started = STARTED
            .lock()
            .map_err(|_| anyhow::anyhow!("a test panicked while starting Jaeger"))?;
        if let Some(j) = started.as_ref() {
            return Ok(j.clone());
        }
        let printed = crate::stack_script("jaeger.sh", "start")?;
        let get = |key: &str| {
            printed
                .get(key)
                .cloned()
                .with_context(|| format!("jaeger.sh start printed no {key}"))
        };
        let jaeger = Self {
            otlp_http: get("KIZUNA_JAEGER_OTLP_HTTP")?,
            query: get("KIZUNA_JAEGER_QUERY")?,
        };
        *started = Some(jaeger.clone());
        Ok(jaeger)
    }

    /// The spans Jaeger holds of trace `trace_id` (32 hex digits); empty while it has none.
    pub async fn trace(&self, trace_id: &str) -> anyhow::Result<Vec<Span>> {
        let response = reqwest::Client::new()
            .get(format!("{}/api/traces/{trace_id}", self.query))
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            bail!("Jaeger answered {status}: {body}");
        }
        let mut spans = Vec::new();
        for trace in body["data"].as_array().into_iter().flatten() {
            let processes = &trace["processes"];
            for s in trace["spans"].as_array().into_iter().flatten() {
                let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                let process = s["processID"].as_str().unwrap_or_default();
                spans.push(Span {
                    span_id: text(&s["spanID"]),
                    operation: text(&s["operationName"]),
                    service: text(&processes[process]["serviceName"]),
                    parents: s["references"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|r| r["refType"] == "CHILD_OF")
                        .map(|r| text(&r["spanID"]))
                        .collect(),
                    tags: s["tags"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|t| (text(&t["key"]), t["value"].clone()))
                        .collect(),
                });
            }
        }
        Ok(spans)
    }
}
