//! A test's run: its timeouts, seed, logs and engine settings, a clean reference run over the
//! same input, cleanup, and [`FaultRun`]: plan → fault → catch up → compare with the oracle and
//! with the reference run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::ensure;
use kizuna::config::Settings;

use super::observe::{
    Row, count, customers, diff_runs, ensure_no_diff, input_ends, wait_caught_up,
};
use super::oracle::diff_expected;
use super::outputs::{Published, check_outputs};
use super::rng::seed;
use super::workload::Workload;
use crate::process::EngineProcess;
use crate::{Broker, TestEnv};

/// How long an engine has to answer `/readyz` after it starts.
pub const READY: Duration = Duration::from_secs(90);
/// How long a run has to consume and publish everything once the input is complete.
pub const CATCH_UP: Duration = Duration::from_secs(300);
/// Reading an output topic to its end.
pub const READ: Duration = Duration::from_secs(120);

/// A test's start: its seed, a fresh environment with the settings every engine of the suite
/// uses ([`engine_settings`]), and the directory for its engines' logs.
#[derive(Debug)]
pub struct Begun {
    pub seed: u64,
    pub env: TestEnv,
    pub logs: PathBuf,
}

/// Starts the test `tag` on `broker`: `KIZUNA_TEST_SEED` or `default_seed`, a fresh environment,
/// and a log line saying where the engines' logs go.
pub async fn begin(broker: Broker, tag: &str, default_seed: u64) -> anyhow::Result<Begun> {
    let seed = seed(default_seed);
    let mut env = TestEnv::on(broker).await?;
    env.settings = engine_settings(&env);
    let logs = log_dir(&env, tag);
    eprintln!(
        "[{tag}] on {broker}, seed {seed}, engine logs in {}",
        logs.display()
    );
    Ok(Begun { seed, env, logs })
}

/// Where a test's engine logs go: a directory of their own under the system's temporary one.
pub fn log_dir(env: &TestEnv, test: &str) -> PathBuf {
    std::env::temp_dir()
        .join("kizuna-guarantees")
        .join(format!("{test}-{}", env.id))
}

/// A clean reference run: one engine over the same input topics, from the beginning, with a
/// database, group and output topics of its own, never disturbed.
#[derive(Debug)]
pub struct Reference {
    pub env: TestEnv,
    pub engine: EngineProcess,
}

impl Reference {
    pub async fn start(
        env: &TestEnv,
        tag: &str,
        logs: &std::path::Path,
        configure: impl FnOnce(&mut Settings),
    ) -> anyhow::Result<Self> {
        let mut reference = env.sibling(tag).await?;
        configure(&mut reference.settings);
        let mut engine = EngineProcess::spawn(tag, &reference.settings, logs)?;
        engine.wait_ready(READY).await?;
        Ok(Self {
            env: reference,
            engine,
        })
    }

    /// Waits until the reference has consumed everything the input topics hold, stops it
    /// (SIGTERM, exit 0), checks its outputs and returns its customers.
    pub async fn finish(
        mut self,
        input: &Settings,
    ) -> anyhow::Result<(TestEnv, BTreeMap<String, Row>, Published)> {
        let ends = input_ends(input).await?;
        let pool = self.env.pool().await?;
        wait_caught_up(
            &pool,
            &self.env.settings.kafka.group_id,
            &ends,
            &mut [&mut self.engine],
            CATCH_UP,
        )
        .await?;
        let rows = customers(&pool).await?;
        pool.close().await;
        let status = self.engine.terminate(Duration::from_secs(60)).await?;
        ensure!(
            status.success(),
            "the reference engine exited with {status}"
        );
        let published = check_outputs(&self.env, &rows).await?;
        Ok((self.env, rows, published))
    }
}

/// Drops the test's database (retried while an autovacuum worker holds it), then its topics.
pub async fn cleanup(env: TestEnv) -> anyhow::Result<()> {
    env.cleanup().await
}

/// Test settings shared by every engine of a test.
pub fn engine_settings(env: &TestEnv) -> Settings {
    let mut s = env.settings.clone();
    s.kafka.session_timeout_ms = 6_000;
    s.ingest.batch_linger_ms = 10;
    s.relay.poll_interval_ms = 200;
    s.sweep.interval_ms = 500;
    s
}

/// What a run left behind once its engines consumed everything.
#[derive(Debug)]
pub struct Settled {
    /// The stored customers.
    pub rows: BTreeMap<String, Row>,
    /// Events in the ledger.
    pub ledger: i64,
    /// Each engine's `/metrics`, scraped once it had caught up, before it stopped.
    pub metrics: Vec<String>,
    /// How long catching up took, from the call.
    pub caught_up_in: Duration,
}

/// Waits until `engines` have consumed everything the input topics hold now and emptied the
/// outbox, reads the stored customers and the ledger's size, scrapes each engine's metrics, then
/// stops each engine (SIGTERM) and checks that it exited with 0.
pub async fn settle(env: &TestEnv, engines: &mut [&mut EngineProcess]) -> anyhow::Result<Settled> {
    let ends = input_ends(&env.settings).await?;
    let pool = env.pool().await?;
    let caught_up_in = wait_caught_up(
        &pool,
        &env.settings.kafka.group_id,
        &ends,
        engines,
        CATCH_UP,
    )
    .await?;
    let rows = customers(&pool).await?;
    let ledger = count(&pool, "SELECT count(*) FROM event_ledger").await?;
    pool.close().await;
    let mut metrics = Vec::with_capacity(engines.len());
    for e in engines.iter() {
        metrics.push(e.metrics().await?);
    }
    for e in engines.iter_mut() {
        let status = e.terminate(Duration::from_secs(60)).await?;
        ensure!(
            status.success(),
            "engine {} exited with {status}; log tail:\n{}",
            e.name,
            e.log_tail(30)
        );
    }
    Ok(Settled {
        rows,
        ledger,
        metrics,
        caught_up_in,
    })
}

/// Runs a clean reference over the same input topics (an engine started now, reading from the
/// beginning, with `configure` applied to its settings) and checks that `rows` hold its
/// states (`what` names the comparison in a failure). Returns the reference's environment
/// (clean it up before `env`, whose cleanup deletes the shared input topics) and what it
/// published.
pub async fn against_reference(
    env: &TestEnv,
    logs: &std::path::Path,
    tag: &str,
    configure: impl FnOnce(&mut Settings),
    rows: &BTreeMap<String, Row>,
    what: &str,
) -> anyhow::Result<(TestEnv, Published)> {
    let reference = Reference::start(env, tag, logs, configure).await?;
    let (reference, reference_rows, published) = reference.finish(&env.settings).await?;
    ensure_no_diff(what, &diff_runs(rows, &reference_rows, false))?;
    Ok((reference, published))
}

/// What every run must end with, and what most runs end with: each of the workload's events
/// in the ledger once (`ledger`), the stored customers (`rows`) as the oracle expects, every
/// output published once and in order, and the states of a clean reference run over the same
/// input. Returns the reference's environment (clean it up before `env`) and what `env`'s
/// engines published.
pub async fn ensure_complete(
    env: &TestEnv,
    logs: &std::path::Path,
    rows: &BTreeMap<String, Row>,
    ledger: i64,
    work: &Workload,
) -> anyhow::Result<(TestEnv, Published)> {
    let n = work.events.len();
    ensure!(
        usize::try_from(ledger).is_ok_and(|l| l == n),
        "{ledger} events in the ledger, {n} distinct events sent"
    );
    ensure_no_diff(
        "states against the expected figures",
        &diff_expected(rows, &work.expect),
    )?;
    let published = check_outputs(env, rows).await?;
    let (reference, _) = against_reference(
        env,
        logs,
        "clean",
        |_| {},
        rows,
        "states against the clean run",
    )
    .await?;
    Ok((reference, published))
}
