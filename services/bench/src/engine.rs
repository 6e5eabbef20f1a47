//! The real engine binary as a child process (`kizuna run`), configured purely by environment
//! variables, with its readiness probe, its metrics and its memory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::env::{BenchEnv, Stack};

/// Sends SIGTERM (or SIGKILL when `hard`) to a process through `kill(1)`: the workspace
/// forbids unsafe code, so no direct syscall.
pub fn kill_pid(pid: u32, hard: bool) {
    let signal = if hard { "-KILL" } else { "-TERM" };
    let _ = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

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

/// Applies the engine binary's own migrations to `database_url` (`kizuna migrate`), so the
/// schema is exactly the one that binary expects.
pub fn migrate(bin: &Path, database_url: &str) -> anyhow::Result<()> {
    let mut cmd = Command::new(bin);
    cmd.arg("migrate");
    for (k, _) in std::env::vars() {
        if k.starts_with("KIZUNA_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .env("KIZUNA_DATABASE__URL", database_url)
        .env("KIZUNA_LOG__LEVEL", "warn")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} migrate", bin.display()))?;
    if !out.status.success() {
        bail!(
            "{} migrate failed ({}): {}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A running engine.
#[derive(Debug)]
pub struct Engine {
    child: Child,
    pub pid: u32,
    pub port: u16,
    pub spawned: Instant,
    pub log: PathBuf,
    http: reqwest::Client,
    stack: Stack,
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Engine {
    /// Starts `kizuna run` against `env`. `extra` are further `KIZUNA_…` variables (e.g.
    /// `KIZUNA_INGEST__BATCH_MAX_EVENTS=1`); inherited `KIZUNA_…` variables are removed so the
    /// run does not depend on the caller's shell.
    pub fn spawn(
        bin: &Path,
        stack: &Stack,
        env: &BenchEnv,
        extra: &[(String, String)],
        log_dir: &Path,
        name: &str,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log = log_dir.join(format!("engine-{name}-{}.log", env.id));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(bin);
        cmd.arg("run");
        for (k, _) in std::env::vars() {
            if k.starts_with("KIZUNA_") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        let t = &env.topics;
        cmd.env("KIZUNA_DATABASE__URL", &env.database_url)
            .env("KIZUNA_KAFKA__BROKERS", &env.brokers)
            .env("KIZUNA_KAFKA__GROUP_ID", &env.group_id)
            .env("KIZUNA_KAFKA__SESSION_TIMEOUT_MS", "6000")
            .env("KIZUNA_KAFKA__TOPICS__PURCHASES", &t.purchases)
            .env("KIZUNA_KAFKA__TOPICS__SUPPORT_TICKETS", &t.support_tickets)
            .env("KIZUNA_KAFKA__TOPICS__SURVEYS", &t.surveys)
            .env("KIZUNA_KAFKA__TOPICS__TIER_CHANGED", &t.tier_changed)
            .env("KIZUNA_KAFKA__TOPICS__CHURN_RISK", &t.churn_risk)
            .env("KIZUNA_KAFKA__TOPICS__SEGMENT_CHANGED", &t.segment_changed)
            .env("KIZUNA_KAFKA__TOPICS__DEAD_LETTER", &t.dead_letter)
            .env("KIZUNA_HTTP__BIND", format!("127.0.0.1:{port}"))
            .env("KIZUNA_LOG__LEVEL", "warn")
            .env("KIZUNA_LOG__FORMAT", "json");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id();
        stack.register_pid(pid);
        Ok(Self {
            child,
            pid,
            port,
            spawned: Instant::now(),
            log,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
            stack: stack.clone(),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Fails with the end of the engine's log if it has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            // Reaped: its pid may be reused by another process, so never signal it again.
            self.stack.forget_pid(self.pid);
            bail!(
                "the engine exited ({status}); last lines of {}:\n{}",
                self.log.display(),
                tail(&self.log, 20)
            );
        }
        Ok(())
    }

    /// Waits for `/readyz` to answer 200.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if let Ok(r) = self.http.get(self.url("/readyz")).send().await
                && r.status().is_success()
            {
                return Ok(self.spawned.elapsed());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the engine was not ready within {timeout:?}; last lines of {}:\n{}",
                    self.log.display(),
                    tail(&self.log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<Metrics> {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await?
            .text()
            .await?;
        Ok(Metrics { text })
    }

    /// (VmRSS, VmHWM) in KiB, from /proc/PID/status.
    pub fn rss_kib(&self) -> anyhow::Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
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

    /// Graceful stop (SIGTERM, then SIGKILL after `grace`).
    pub fn stop(mut self, grace: Duration) {
        // Only signal our own child while it runs: once reaped, its pid may be someone else's.
        if !matches!(self.child.try_wait(), Ok(None)) {
            self.stack.forget_pid(self.pid);
            return;
        }
        kill_pid(self.pid, false);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.stack.forget_pid(self.pid);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stack.forget_pid(self.pid);
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.stack.forget_pid(self.pid);
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A scrape of `/metrics`.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub text: String,
}

impl Metrics {
    /// Every sample as (metric name, label text, value).
    fn samples(&self) -> impl Iterator<Item = (&str, &str, f64)> {
        self.text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
                Some((metric, labels, value.parse::<f64>().ok()?))
            })
    }

    /// Sum of every sample of `name` whose labels contain all of `labels` (`k="v"` pairs).
    pub fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.samples()
            .filter(|(metric, rest, _)| *metric == name && labels.iter().all(|w| rest.contains(w)))
            .map(|(_, _, value)| value)
            .sum()
    }

    /// The `q` quantile of histogram `name` (series with all of `labels`), interpolated within
    /// its bucket as Prometheus' `histogram_quantile` does; None when it has no observations.
    pub fn quantile(&self, name: &str, labels: &[&str], q: f64) -> Option<f64> {
        let bucket = format!("{name}_bucket");
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for (metric, rest, count) in self.samples() {
            if metric != bucket || !labels.iter().all(|want| rest.contains(want)) {
                continue;
            }
            let Some(le) = rest.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else {
                continue;
            };
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                match le.parse() {
                    Ok(v) => v,
                    Err(_) => continue,
                }
            };
            match buckets.iter_mut().find(|(b, _)| *b == le) {
                Some((_, c)) => *c += count,
                None => buckets.push((le, count)),
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for (le, count) in buckets {
            if count >= rank {
                if le.is_infinite() {
                    return Some(lower);
                }
                let width = count - below;
                let share = if width > 0.0 {
                    (rank - below) / width
                } else {
                    1.0
                };
                return Some(lower + (le - lower) * share);
            }
            (lower, below) = (le, count);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_samples_by_name_and_labels() {
        let m = Metrics {
            text: "# HELP x\nkizuna_events_consumed_total{outcome=\"applied\",topic=\"a\"} 3\n\
                   kizuna_events_consumed_total{outcome=\"duplicate\",topic=\"a\"} 1\n\
                   kizuna_events_consumed_total{outcome=\"applied\",topic=\"b\"} 4\n\
                   kizuna_batch_events_count 7\nkizuna_batch_events_sum 12\n"
                .into(),
        };
        assert_eq!(
            m.sum("kizuna_events_consumed_total", &["outcome=\"applied\""]),
            7.0
        );
        assert_eq!(m.sum("kizuna_events_consumed_total", &[]), 8.0);
        assert_eq!(m.sum("kizuna_batch_events_count", &[]), 7.0);
        assert_eq!(m.sum("kizuna_batch_events", &[]), 0.0);
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let m = Metrics {
            text: "h_bucket{stage=\"a\",le=\"0.1\"} 50\nh_bucket{stage=\"a\",le=\"0.2\"} 90\n\
                   h_bucket{stage=\"a\",le=\"+Inf\"} 100\nh_bucket{stage=\"b\",le=\"0.1\"} 0\n\
                   h_bucket{stage=\"b\",le=\"+Inf\"} 0\n"
                .into(),
        };
        let near = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
        assert!(near(m.quantile("h", &["stage=\"a\""], 0.25), 0.05));
        assert!(near(m.quantile("h", &["stage=\"a\""], 0.7), 0.15));
        // Past the last finite bucket: its bound, as histogram_quantile says.
        assert!(near(m.quantile("h", &["stage=\"a\""], 0.99), 0.2));
        assert_eq!(m.quantile("h", &["stage=\"b\""], 0.5), None);
        assert_eq!(m.quantile("missing", &[], 0.5), None);
    }
}
