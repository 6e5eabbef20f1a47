//! A fault run: plan → one engine with the input streaming in → a fault in the middle → the
//! rest of the input → catch up → compare with the oracle and with a clean reference run. The
//! fault itself is the test's: it happens between [`FaultRun::start`] and [`FaultRun::finish`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::ensure;
use tokio::task::JoinHandle;

use super::feeder::{Feeder, stream};
use super::observe::{count, wait_applied};
use super::outputs::Published;
use super::run::{Begun, CATCH_UP, READY, Settled, begin, cleanup, ensure_complete};
use super::workload::{Plan, Workload, generate};
use crate::process::{EngineProcess, metric_sum};
use crate::{Broker, TestEnv};

/// How a fault run's input arrives: `chunk` messages, then a `pause`, until all are sent.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub chunk: usize,
    pub pause: Duration,
}

/// One engine consuming a workload that streams in the background, at the point where the
/// fault is due: `applied_before` events applied.
#[derive(Debug)]
pub struct FaultRun {
    /// The name in the test's log lines (`[tag] …`) and of its log directory.
    pub tag: &'static str,
    pub env: TestEnv,
    pub logs: PathBuf,
    pub work: Workload,
    /// Messages in the stream.
    pub n: usize,
    pub engine: EngineProcess,
    /// Messages acknowledged by the broker so far.
    pub sent: Arc<AtomicUsize>,
    /// Events in the ledger when the run was ready for its fault.
    pub applied_before: i64,
    producing: JoinHandle<anyhow::Result<Vec<(i32, i64)>>>,
}

/// What a fault run ended with, once every comparison passed.
#[derive(Debug)]
pub struct FaultOutcome {
    /// The engine's `/metrics` once it had caught up.
    pub metrics: String,
    pub published: Published,
    pub caught_up_in: Duration,
}

impl FaultRun {
    /// A workload of 10,000 events for 200 customers from `default_seed` (`KIZUNA_TEST_SEED`
    /// overrides it), one engine on `broker`, the input streaming at `pace`; returns once
    /// `warm_up` events are applied.
    pub async fn start(
        broker: Broker,
        tag: &'static str,
        default_seed: u64,
        pace: Pace,
        warm_up: i64,
    ) -> anyhow::Result<Self> {
        let Begun { seed, env, logs } = begin(broker, tag, default_seed).await?;
        let plan = Plan::recent(seed, 10_000);
        let work = generate(&plan);
        eprintln!("[{tag}] {}", work.summary());
        let msgs = Arc::new(work.messages(&plan));
        let n = msgs.len();

        let mut engine = EngineProcess::spawn("engine", &env.settings, &logs)?;
        engine.wait_ready(READY).await?;
        let feeder = Arc::new(Feeder::new(&env.settings)?);
        let sent = Arc::new(AtomicUsize::new(0));
        let producing = stream(feeder, msgs, pace.chunk, pace.pause, sent.clone());
        let pool = env.pool().await?;
        wait_applied(&pool, warm_up, &mut engine, CATCH_UP).await?;
        let applied_before = count(&pool, "SELECT count(*) FROM event_ledger").await?;
        pool.close().await;
        Ok(Self {
            tag,
            env,
            logs,
            work,
            n,
            engine,
            sent,
            applied_before,
            producing,
        })
    }

    /// Messages acknowledged by the broker so far.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::SeqCst)
    }

    /// After the fault: waits for the rest of the input, lets the engine catch up and stops it,
    /// then checks what every fault run must show: the engine ready again, every event in the
    /// ledger once and none consumed twice, the oracle's figures, every output published once
    /// in order, and the states of a clean reference run over the same input.
    pub async fn finish(self) -> anyhow::Result<FaultOutcome> {
        let FaultRun {
            tag,
            env,
            logs,
            work,
            n,
            mut engine,
            producing,
            ..
        } = self;
        let landed = producing.await??;
        ensure!(landed.len() == n, "{} of {n} messages landed", landed.len());
        // Ready again after the fault (it answers /readyz 200 within READY).
        engine.wait_ready(READY).await?;
        let Settled {
            rows,
            ledger,
            mut metrics,
            caught_up_in,
        } = super::run::settle(&env, &mut [&mut engine]).await?;
        let metrics = metrics.pop().unwrap_or_default();
        eprintln!("[{tag}] caught up {caught_up_in:?} after the input was sent");
        let duplicates = metric_sum(
            &metrics,
            "kizuna_events_consumed_total",
            &[("outcome", "duplicate")],
        );
        ensure!(
            duplicates == 0.0,
            "{duplicates} duplicates: something was consumed twice"
        );
        let (reference, published) = ensure_complete(&env, &logs, &rows, ledger, &work).await?;
        cleanup(reference).await?;
        cleanup(env).await?;
        Ok(FaultOutcome {
            metrics,
            published,
            caught_up_in,
        })
    }
}
