//! Kafka messages parsed as CloudEvents (binary content mode) by the CloudEvents Python SDK
//! (`tests/receivers/cloudevents_check.py`, run with the virtualenv of the webhook receiver that
//! deploy/local/prereqs.sh makes; `KIZUNA_TEST_RECEIVER_PYTHON` overrides it). The Rust SDK's
//! Kafka binding needs rdkafka 0.38 and cannot be linked beside our 0.39.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::Received;
use crate::webhooks::receiver_python;

/// What the SDK made of one message.
#[derive(Debug, Clone, Deserialize)]
pub struct Parsed {
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    /// Every attribute, extensions included (`time` in ISO 8601).
    #[serde(default)]
    pub attributes: Map<String, Value>,
}

impl Parsed {
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).and_then(Value::as_str)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Each message as the CloudEvents SDK parses it, in order.
pub async fn parse(messages: &[Received]) -> anyhow::Result<Vec<Parsed>> {
    let input: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "key": m.key.as_deref().map(|k| hex(k.as_bytes())),
                "value": hex(&m.payload),
                "headers": m.raw_headers.iter().map(|(k, v)| json!([k, hex(v)])).collect::<Vec<_>>(),
            })
        })
        .collect();
    let python = receiver_python();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/receivers/cloudevents_check.py"
    );
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!("starting the CloudEvents check with {python}; run deploy/local/prereqs.sh to install its virtualenv")
        })?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(&serde_json::to_vec(&input)?).await?;
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .context("the CloudEvents check did not finish within 60 s")??;
    if !out.status.success() {
        bail!(
            "the CloudEvents check failed ({}; is the cloudevents package installed? run deploy/local/prereqs.sh): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let parsed: Vec<Parsed> = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("output: {}", String::from_utf8_lossy(&out.stdout)))?;
    if parsed.len() != messages.len() {
        bail!("{} answers for {} messages", parsed.len(), messages.len());
    }
    Ok(parsed)
}
