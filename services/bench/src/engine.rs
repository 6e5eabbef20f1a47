//! The real engine binary as a child process (`kizuna run`), configured purely by `KIZUNA_*`
//! variables made from the scenario's settings: `kizuna_testkit::process::EngineProcess`, with
//! its pid registered so a Ctrl-C of the bench kills it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kizuna::config::Settings;
use kizuna_testkit::Metrics;
use kizuna_testkit::process::{EngineProcess, Launch, run_command_of};

use crate::env::{BenchEnv, Stack};

/// Where the engine binary is: `--kizuna`, else `kizuna` next to this executable.
pub fn locate(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        if !p.exists() {
            bail!("--kizuna {} does not exist", p.display());
        }
        return Ok(p.to_owned());
    }
    let me = std::env::current_exe().context("locating kizuna-bench")?;
    let next = me.with_file_name("kizuna");
    if !next.exists() {
        bail!(
            "no engine binary at {}; build it (cargo build --release -p kizuna-loyalty-engine -p kizuna-bench) or pass --kizuna PATH",
            next.display()
        );
    }
    Ok(next)
}

/// Applies the engine binary's own migrations to the database of `settings` (`kizuna
/// migrate`), so the schema is exactly the one that binary expects.
pub fn migrate(bin: &Path, settings: &Settings) -> anyhow::Result<()> {
    let (ok, _, stderr) = run_command_of(bin, settings, &["migrate"])?;
    if !ok {
        bail!("{} migrate failed: {stderr}", bin.display());
    }
    Ok(())
}

/// A running engine.
#[derive(Debug)]
pub struct Engine {
    process: EngineProcess,
    stack: Stack,
}

impl Engine {
    /// Starts `kizuna run` against `env`, logging warnings as JSON to
    /// `log_dir/engine-<name>-<id>.log`. `extra` are further `KIZUNA_…` variables (e.g.
    /// `KIZUNA_INGEST__BATCH_MAX_EVENTS=1`).
    pub fn spawn(
        bin: &Path,
        stack: &Stack,
        env: &BenchEnv,
        extra: &[(String, String)],
        log_dir: &Path,
        name: &str,
    ) -> anyhow::Result<Self> {
        let mut vars = vec![("KIZUNA_LOG__FORMAT".to_owned(), "json".to_owned())];
        vars.extend_from_slice(extra);
        let process = EngineProcess::launch(Launch {
            binary: bin,
            name,
            settings: &env.settings,
            extra_env: &vars,
            log_path: log_dir.join(format!("engine-{name}-{}.log", env.id)),
        })?;
        stack.register_pid(process.pid());
        Ok(Self {
            process,
            stack: stack.clone(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn log(&self) -> &Path {
        &self.process.log_path
    }

    /// When it was spawned.
    pub fn spawned(&self) -> Instant {
        self.process.started
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.process.base_url()
    }

    /// Fails with the end of the engine's log if it has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        let alive = self.process.ensure_running();
        if alive.is_err() {
            // Reaped: its pid may be reused by another process, so never signal it again.
            self.stack.forget_pid(self.pid());
        }
        alive
    }

    /// Waits for `/readyz` to answer 200; returns the time since the spawn.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        self.process.wait_ready(timeout).await
    }

    /// A scrape of `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<Metrics> {
        self.process.scrape().await
    }

    /// (VmRSS, VmHWM) in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<(u64, u64)> {
        self.process.rss_kib()
    }

    /// Graceful stop (SIGTERM, then SIGKILL after `grace`).
    pub async fn stop(mut self, grace: Duration) {
        self.process.stop(grace).await;
        self.stack.forget_pid(self.pid());
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // The process's own drop kills it if it still runs.
        self.stack.forget_pid(self.pid());
    }
}
