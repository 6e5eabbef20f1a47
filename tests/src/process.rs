//! The real `kizuna` binary as a child process, for tests that kill, stop and restart it.
//!
//! The binary is the one `cargo build --bin kizuna` put next to the test executable
//! (`$CARGO_TARGET_DIR/debug/kizuna`), or `KIZUNA_TEST_ENGINE_BIN`. It is configured only
//! through `KIZUNA_*` environment variables built from a [`Settings`], listens on a port picked
//! here, and writes its log to a file of its own, whose tail is shown when something fails.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use kizuna::config::Settings;
use kizuna::ingest::clock::Clock;
use secrecy::ExposeSecret;

use crate::wait_for;

/// Path of the engine binary: `KIZUNA_TEST_ENGINE_BIN`, else `kizuna` in the directory above
/// the test executable's `deps/`.
pub fn engine_binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("KIZUNA_TEST_ENGINE_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("KIZUNA_TEST_ENGINE_BIN={} is not a file", path.display());
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().context("locating the test executable")?;
    // target/debug/deps/guarantees-… → target/debug/kizuna
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test executable has no target/<profile>/deps parent")?;
    let path = profile_dir.join("kizuna");
    if !path.is_file() {
        bail!(
            "the engine binary {} is missing: build it first with `cargo build --bin kizuna` \
             (same CARGO_TARGET_DIR and profile as the tests), or set KIZUNA_TEST_ENGINE_BIN",
            path.display()
        );
    }
    Ok(path)
}

/// A free TCP port on 127.0.0.1 (bound, then released for the engine to take).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The `KIZUNA_*` variables that configure an engine like `settings`, listening on `port`.
pub fn engine_env(settings: &Settings, port: u16) -> Vec<(String, String)> {
    let k = &settings.kafka;
    let t = &k.topics;
    let i = &settings.ingest;
    let clock = match settings.clock {
        Clock::Wall => "wall",
        Clock::EventTime => "event-time",
    };
    let vars: Vec<(&str, String)> = vec![
        ("KIZUNA_KAFKA__BROKERS", k.brokers.clone()),
        ("KIZUNA_KAFKA__GROUP_ID", k.group_id.clone()),
        ("KIZUNA_KAFKA__CLIENT_ID", k.client_id.clone()),
        (
            "KIZUNA_KAFKA__SESSION_TIMEOUT_MS",
            k.session_timeout_ms.to_string(),
        ),
        ("KIZUNA_KAFKA__PARTITIONS", k.partitions.to_string()),
        ("KIZUNA_KAFKA__TOPICS__PURCHASES", t.purchases.clone()),
        (
            "KIZUNA_KAFKA__TOPICS__SUPPORT_TICKETS",
            t.support_tickets.clone(),
        ),
        ("KIZUNA_KAFKA__TOPICS__SURVEYS", t.surveys.clone()),
        ("KIZUNA_KAFKA__TOPICS__TIER_CHANGED", t.tier_changed.clone()),
        ("KIZUNA_KAFKA__TOPICS__CHURN_RISK", t.churn_risk.clone()),
        (
            "KIZUNA_KAFKA__TOPICS__SEGMENT_CHANGED",
            t.segment_changed.clone(),
        ),
        ("KIZUNA_KAFKA__TOPICS__DEAD_LETTER", t.dead_letter.clone()),
        (
            "KIZUNA_DATABASE__URL",
            settings.database.url.expose_secret().to_owned(),
        ),
        (
            "KIZUNA_DATABASE__MAX_CONNECTIONS",
            settings.database.max_connections.to_string(),
        ),
        (
            "KIZUNA_INGEST__BATCH_MAX_EVENTS",
            i.batch_max_events.to_string(),
        ),
        (
            "KIZUNA_INGEST__BATCH_LINGER_MS",
            i.batch_linger_ms.to_string(),
        ),
        (
            "KIZUNA_INGEST__MAX_MESSAGE_BYTES",
            i.max_message_bytes.to_string(),
        ),
        ("KIZUNA_INGEST__MAX_ID_LEN", i.max_id_len.to_string()),
        ("KIZUNA_INGEST__WRITERS", i.writers.to_string()),
        ("KIZUNA_INGEST__MAX_TEXT_LEN", i.max_text_len.to_string()),
        (
            "KIZUNA_INGEST__MAX_LINE_ITEMS",
            i.max_line_items.to_string(),
        ),
        (
            "KIZUNA_INGEST__MAX_AMOUNT_MINOR",
            i.max_amount_minor.to_string(),
        ),
        (
            "KIZUNA_INGEST__MAX_FUTURE_SKEW_SECS",
            i.max_future_skew_secs.to_string(),
        ),
        (
            "KIZUNA_RELAY__BATCH_SIZE",
            settings.relay.batch_size.to_string(),
        ),
        (
            "KIZUNA_RELAY__POLL_INTERVAL_MS",
            settings.relay.poll_interval_ms.to_string(),
        ),
        (
            "KIZUNA_SWEEP__INTERVAL_MS",
            settings.sweep.interval_ms.to_string(),
        ),
        (
            "KIZUNA_SWEEP__BATCH_SIZE",
            settings.sweep.batch_size.to_string(),
        ),
        (
            "KIZUNA_METRICS__REFRESH_SECS",
            settings.metrics.refresh_secs.to_string(),
        ),
        (
            "KIZUNA_METRICS__MODEL_REFRESH_SECS",
            settings.metrics.model_refresh_secs.to_string(),
        ),
        ("KIZUNA_HTTP__BIND", format!("127.0.0.1:{port}")),
        ("KIZUNA_LOG__FORMAT", "pretty".to_owned()),
        ("KIZUNA_LOG__LEVEL", settings.log.level.clone()),
        ("KIZUNA_CLOCK", clock.to_owned()),
    ];
    let mut vars = vars;
    if let Some(ms) = i.revoke_drain_ms {
        vars.push(("KIZUNA_INGEST__REVOKE_DRAIN_MS", ms.to_string()));
    }
    vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// One running (or exited) `kizuna run` process.
#[derive(Debug)]
pub struct EngineProcess {
    pub name: String,
    pub port: u16,
    pub log_path: PathBuf,
    child: Child,
    exited: Option<ExitStatus>,
    http: reqwest::Client,
}

impl EngineProcess {
    /// Starts `kizuna run` configured like `settings`; its log goes to `log_dir/<name>.log`.
    pub fn spawn(name: &str, settings: &Settings, log_dir: &Path) -> anyhow::Result<Self> {
        let binary = engine_binary()?;
        std::fs::create_dir_all(log_dir)
            .with_context(|| format!("creating {}", log_dir.display()))?;
        let log_path = log_dir.join(format!("{name}.log"));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let port = free_port()?;
        let mut command = Command::new(&binary);
        command.arg("run");
        // Only the variables set here configure the engine, whatever the caller's environment.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("KIZUNA_") {
                command.env_remove(&key);
            }
        }
        command
            .env_remove("RUST_LOG")
            .envs(engine_env(settings, port))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self {
            name: name.to_owned(),
            port,
            log_path,
            child,
            exited: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The exit status, if the process has exited.
    pub fn try_exit_status(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait()?;
        }
        Ok(self.exited)
    }

    /// Fails if the process has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.try_exit_status()? {
            bail!(
                "engine {} exited unexpectedly ({status}); log tail:\n{}",
                self.name,
                self.log_tail(40)
            );
        }
        Ok(())
    }

    /// `GET /readyz`: the HTTP status, or None when the server does not answer.
    pub async fn readyz(&self) -> Option<u16> {
        match self.http.get(self.url("/readyz")).send().await {
            Ok(resp) => Some(resp.status().as_u16()),
            Err(_) => None,
        }
    }

    /// Waits until `/readyz` answers 200; fails early if the process exits.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.ensure_running()?;
            if self.readyz().await == Some(200) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "engine {} not ready after {timeout:?}; log tail:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let resp = self.http.get(self.url("/metrics")).send().await?;
        Ok(resp.error_for_status()?.text().await?)
    }

    /// SIGKILL, then reap. No chance to finish anything.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if self.try_exit_status()?.is_some() {
            bail!(
                "engine {} had already exited before the kill; log tail:\n{}",
                self.name,
                self.log_tail(40)
            );
        }
        self.child.kill().context("SIGKILL")?;
        self.exited = Some(self.child.wait()?);
        Ok(())
    }

    /// SIGTERM, then waits up to `timeout` for the process to exit and returns its status.
    pub async fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        // Only signal a child that has not been reaped: its pid cannot have been reused.
        if let Some(status) = self.try_exit_status()? {
            bail!(
                "engine {} had already exited ({status}) before SIGTERM; log tail:\n{}",
                self.name,
                self.log_tail(40)
            );
        }
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("running kill -TERM")?;
        if !status.success() {
            bail!("kill -TERM {} failed: {status}", self.child.id());
        }
        let exited = wait_for(
            &format!("engine {} to exit after SIGTERM", self.name),
            timeout,
            || {
                let s = self.child.try_wait();
                async move { Ok(s?) }
            },
        )
        .await;
        match exited {
            Ok(status) => {
                self.exited = Some(status);
                Ok(status)
            }
            Err(e) => {
                self.child.kill().ok();
                self.exited = self.child.wait().ok();
                Err(e.context(format!("log tail:\n{}", self.log_tail(40))))
            }
        }
    }

    /// The last `lines` lines of the process's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        // A failed test must not leave engines running.
        if self.exited.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

/// The last `lines` lines of a text file (at most the last 64 KiB are read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let read = || -> std::io::Result<String> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(no log at {}: {e})", path.display()),
    }
}

/// Sums the samples of a Prometheus counter whose labels include every `label="value"` of
/// `filter`.
pub fn metric_sum(text: &str, name: &str, filter: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let labels = match series.split_once('{') {
                Some((n, rest)) if n == name => rest.trim_end_matches('}'),
                None if series == name => "",
                _ => return None,
            };
            let ok = filter
                .iter()
                .all(|(k, v)| labels.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
            if ok { value.parse::<f64>().ok() } else { None }
        })
        .sum()
}

/// The values of label `label` of a counter, with the sum of their samples.
pub fn metric_by_label(text: &str, name: &str, label: &str) -> Vec<(String, f64)> {
    let mut out: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = l.rsplit_once(' ') else {
            continue;
        };
        let Some((n, rest)) = series.split_once('{') else {
            continue;
        };
        if n != name {
            continue;
        }
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        for kv in rest.trim_end_matches('}').split(',') {
            if let Some(val) = kv.strip_prefix(&format!("{label}=\"")) {
                *out.entry(val.trim_end_matches('"').to_owned()).or_default() += v;
            }
        }
    }
    out.into_iter().collect()
}

/// Runs a `kizuna` command (`recompute`, `fit-model`, …) configured like `settings`, to its
/// end; returns whether it succeeded, with its stdout and stderr.
pub fn run_command(settings: &Settings, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let binary = engine_binary()?;
    let mut command = Command::new(&binary);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("KIZUNA_") {
            command.env_remove(&key);
        }
    }
    let out = command
        .args(args)
        .env_remove("RUST_LOG")
        .envs(engine_env(settings, 0))
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} {}", binary.display(), args.join(" ")))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}
