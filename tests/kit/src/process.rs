//! The real `kizuna` binary as a child process, for tests that kill, stop and restart it and
//! for the bench's engine scenarios.
//!
//! The binary is the one `cargo build --bin kizuna` put next to the test executable
//! (`$CARGO_TARGET_DIR/debug/kizuna`), or `KIZUNA_TEST_ENGINE_BIN`, or any path given to
//! [`EngineProcess::launch`]. It is configured only through `KIZUNA_*` environment variables
//! built from a [`Settings`] (inherited `KIZUNA_*` and `RUST_LOG` are removed), listens on a
//! port picked here, and writes its log to a file of its own, whose tail is shown when
//! something fails.
//!
//! `KIZUNA_TEST_LOG=1` (or `TEST_LOG=1`) also streams every engine's log to the test's stderr as
//! it is written, each line prefixed with the engine's name (`[engine-1] …`); run the test with
//! `--nocapture` to see the test's own lines between them.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kizuna::config::Settings;

use crate::metrics::Metrics;
pub use crate::metrics::{metric_by_label, metric_sum};
use crate::wait_for;

/// Whether engine logs also go to the test's stderr: `KIZUNA_TEST_LOG` or `TEST_LOG` set to
/// anything but empty or `0`.
pub fn show_engine_logs() -> bool {
    ["KIZUNA_TEST_LOG", "TEST_LOG"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|x| !x.is_empty() && x != "0"))
}

/// Copies `from` line by line into `log` and onto the test's stderr with `[name] ` in front,
/// on a thread of its own that ends when the child closes its end of the pipe. Written with
/// `std::io::stderr()` directly, so the test harness's output capture does not hold it back.
fn tee_lines(from: impl Read + Send + 'static, mut log: File, name: &str) {
    let name = name.to_owned();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(from);
        let mut line = Vec::new();
        while lines.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            // A log that cannot be written must not stop the engine: errors are ignored here,
            // as the file sink ignores a full disk.
            log.write_all(&line).ok();
            let mut err = std::io::stderr().lock();
            err.write_all(format!("[{name}] ").as_bytes()).ok();
            err.write_all(&line).ok();
            line.clear();
        }
    });
}

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

/// The `KIZUNA_*` variables that configure an engine like `settings`, listening on `port`,
/// logging in the readable format.
pub fn engine_env(settings: &Settings, port: u16) -> Vec<(String, String)> {
    let mut vars = settings
        .to_env()
        .unwrap_or_else(|e| panic!("test settings must be expressible as variables: {e:#}"));
    set_vars(
        &mut vars,
        &[
            ("KIZUNA_HTTP__BIND".to_owned(), format!("127.0.0.1:{port}")),
            ("KIZUNA_LOG__FORMAT".to_owned(), "pretty".to_owned()),
        ],
    );
    vars
}

/// Sets (or replaces) each of `extra` in `vars`.
fn set_vars(vars: &mut Vec<(String, String)>, extra: &[(String, String)]) {
    for (key, value) in extra {
        vars.retain(|(k, _)| k != key);
        vars.push((key.clone(), value.clone()));
    }
}

/// A `kizuna` command whose environment holds only `vars` of the `KIZUNA_*` kind, and no
/// `RUST_LOG`, whatever the caller's environment.
fn command(binary: &Path, vars: Vec<(String, String)>) -> Command {
    let mut command = Command::new(binary);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("KIZUNA_") {
            command.env_remove(&key);
        }
    }
    command
        .env_remove("RUST_LOG")
        .envs(vars)
        .stdin(Stdio::null());
    command
}

/// Sends SIGTERM (or SIGKILL when `hard`) to `pid` through `kill(1)`: the workspace forbids
/// unsafe code, so no direct syscall. Only for processes that have not been reaped (a reaped
/// pid may be someone else's).
pub fn signal(pid: u32, hard: bool) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args([if hard { "-KILL" } else { "-TERM" }, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill {pid} failed: {status}");
    }
    Ok(())
}

/// How to start an engine: [`EngineProcess::launch`].
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    /// The `kizuna` binary.
    pub binary: &'a Path,
    pub name: &'a str,
    pub settings: &'a Settings,
    /// Further `KIZUNA_*` variables, set last (they win over the settings').
    pub extra_env: &'a [(String, String)],
    /// The log file (appended to).
    pub log_path: PathBuf,
}

/// One running (or exited) `kizuna run` process.
#[derive(Debug)]
pub struct EngineProcess {
    pub name: String,
    pub port: u16,
    pub log_path: PathBuf,
    /// When it was spawned.
    pub started: Instant,
    child: Child,
    exited: Option<ExitStatus>,
    http: reqwest::Client,
}

impl EngineProcess {
    /// Starts `kizuna run` (the binary of [`engine_binary`]) configured like `settings`; its log
    /// goes to `log_dir/<name>.log`.
    pub fn spawn(name: &str, settings: &Settings, log_dir: &Path) -> anyhow::Result<Self> {
        let binary = engine_binary()?;
        Self::launch(Launch {
            binary: &binary,
            name,
            settings,
            extra_env: &[],
            log_path: log_dir.join(format!("{name}.log")),
        })
    }

    /// Starts `kizuna run` as `launch` says.
    pub fn launch(launch: Launch<'_>) -> anyhow::Result<Self> {
        let log_path = launch.log_path;
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let port = free_port()?;
        let mut vars = engine_env(launch.settings, port);
        set_vars(&mut vars, launch.extra_env);
        let mut command = command(launch.binary, vars);
        command.arg("run");
        let show = show_engine_logs();
        if show {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        } else {
            command.stdout(log.try_clone()?).stderr(log.try_clone()?);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", launch.binary.display()))?;
        if show {
            if let Some(out) = child.stdout.take() {
                tee_lines(out, log.try_clone()?, launch.name);
            }
            if let Some(err) = child.stderr.take() {
                tee_lines(err, log, launch.name);
            }
        }
        Ok(Self {
            name: launch.name.to_owned(),
            port,
            log_path,
            started: Instant::now(),
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

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
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
                "engine {} exited unexpectedly ({status}); log tail ({}):\n{}",
                self.name,
                self.log_path.display(),
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

    /// Waits until `/readyz` answers 200; fails early if the process exits. Returns the time
    /// since the spawn.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.ensure_running()?;
            if self.readyz().await == Some(200) {
                return Ok(self.started.elapsed());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "engine {} not ready after {timeout:?}; log tail ({}):\n{}",
                    self.name,
                    self.log_path.display(),
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let resp = self.http.get(self.url("/metrics")).send().await?;
        Ok(resp.error_for_status()?.text().await?)
    }

    /// `/metrics`, parsed.
    pub async fn scrape(&self) -> anyhow::Result<Metrics> {
        Ok(Metrics {
            text: self.metrics().await?,
        })
    }

    /// (VmRSS, VmHWM) in KiB, from /proc/PID/status.
    pub fn rss_kib(&self) -> anyhow::Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok((field("VmRSS:"), field("VmHWM:")))
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
    /// If it does not exit in time, it is killed and this fails.
    pub async fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        // Only signal a child that has not been reaped: its pid cannot have been reused.
        if let Some(status) = self.try_exit_status()? {
            bail!(
                "engine {} had already exited ({status}) before SIGTERM; log tail:\n{}",
                self.name,
                self.log_tail(40)
            );
        }
        signal(self.child.id(), false)?;
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

    /// Stops the engine whatever its state: SIGTERM and up to `grace` to exit, then SIGKILL.
    /// Nothing to do if it has already exited.
    pub async fn stop(&mut self, grace: Duration) {
        if matches!(self.try_exit_status(), Ok(None)) {
            self.terminate(grace).await.ok();
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

/// Runs a `kizuna` command (`recompute`, `fit-model`, …) of [`engine_binary`] configured like
/// `settings`, to its end; returns whether it succeeded, with its stdout and stderr.
pub fn run_command(settings: &Settings, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    run_command_of(&engine_binary()?, settings, args)
}

/// [`run_command`] with another binary.
pub fn run_command_of(
    binary: &Path,
    settings: &Settings,
    args: &[&str],
) -> anyhow::Result<(bool, String, String)> {
    let out = command(binary, engine_env(settings, 0))
        .args(args)
        .output()
        .with_context(|| format!("running {} {}", binary.display(), args.join(" ")))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_variables_replace_the_settings_ones() -> anyhow::Result<()> {
        let settings = Settings::load(None)?;
        let mut vars = engine_env(&settings, 4242);
        assert!(vars.contains(&("KIZUNA_HTTP__BIND".into(), "127.0.0.1:4242".into())));
        set_vars(&mut vars, &[("KIZUNA_LOG__FORMAT".into(), "json".into())]);
        let formats: Vec<&str> = vars
            .iter()
            .filter(|(k, _)| k == "KIZUNA_LOG__FORMAT")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(formats, ["json"]);
        Ok(())
    }

    #[test]
    fn the_tail_of_a_log() -> anyhow::Result<()> {
        let path = std::env::temp_dir().join(format!("kizuna-testkit-{}.log", crate::fresh_id(8)));
        std::fs::write(&path, "a\nb\nc\n")?;
        assert_eq!(log_tail(&path, 2), "b\nc");
        std::fs::remove_file(&path)?;
        assert!(log_tail(&path, 2).starts_with("(no log at"));
        Ok(())
    }
}
