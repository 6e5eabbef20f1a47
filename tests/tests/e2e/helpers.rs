//! What the end-to-end scenarios share: one engine on a fresh environment with a feeder of
//! input events, reading outputs back, and the `kizuna` command line.

use std::time::Duration;

use kizuna::config::Topics;
use kizuna_e2e::{Broker, Received, TestApp, TestEnv};
use serde_json::Value;

use crate::inputs::Feed;

pub const WAIT: Duration = Duration::from_secs(60);

/// One engine running in-process on a fresh environment, and a feeder of its input topics.
#[derive(Debug)]
pub struct Scene {
    pub env: TestEnv,
    pub app: TestApp,
    pub feed: Feed,
}

impl Scene {
    /// The engine on a fresh environment on `broker`, with the test defaults.
    pub async fn start(broker: Broker) -> anyhow::Result<Self> {
        Self::start_in(TestEnv::on(broker).await?).await
    }

    /// The engine on `env`, whose settings the test may have changed.
    pub async fn start_in(env: TestEnv) -> anyhow::Result<Self> {
        let app = env.start().await?;
        let feed = Feed::new(&env)?;
        Ok(Self { env, app, feed })
    }

    pub fn topics(&self) -> &Topics {
        &self.feed.topics
    }

    /// Waits for the first message on `topic` whose JSON payload has `field` equal to `value`.
    pub async fn first_output(
        &self,
        topic: &str,
        field: &str,
        value: &Value,
    ) -> anyhow::Result<Received> {
        let matches = |m: &Received| m.json().is_ok_and(|v| &v[field] == value);
        let got = self
            .env
            .reader(topic)?
            .collect_until(WAIT, |got| got.iter().any(matches))
            .await?;
        got.into_iter()
            .find(matches)
            .ok_or_else(|| anyhow::anyhow!("no {field} = {value} on {topic}"))
    }

    /// Stops the engine gracefully, then drops the environment.
    pub async fn finish(self) -> anyhow::Result<()> {
        self.app.stop().await?;
        self.env.cleanup().await
    }
}

/// Runs the `kizuna` binary (`cargo build --bin kizuna` first) with `args`, configured like
/// `env` through `KIZUNA_*` variables only, `stdin` on its standard input; returns whether it
/// succeeded, with its stdout and stderr.
pub fn kizuna_cli(
    env: &TestEnv,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> anyhow::Result<(bool, String, String)> {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let mut cmd = Command::new(kizuna_e2e::process::engine_binary()?);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("KIZUNA_") {
            cmd.env_remove(&key);
        }
    }
    cmd.args(args)
        .env_remove("RUST_LOG")
        .envs(kizuna_e2e::process::engine_env(&env.settings, 0))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.unwrap_or_default())?;
    }
    let out = child.wait_with_output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}
