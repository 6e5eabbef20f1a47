//! The engine scenarios: sustained throughput and the naive baseline (`drain`), the database
//! ceiling without the engine (`ceiling`), latency at fixed offered rates (`latency`), memory
//! over a long run (`memory`).

mod ceiling;
mod drain;
mod latency;
mod memory;
mod physical;

use std::path::PathBuf;
use std::time::Duration;

pub use ceiling::{ceiling, sample};
pub use drain::{drain, drain_mix};
pub use latency::latency;
pub use memory::memory;
pub use physical::physical;

use crate::engine::Engine;
use chrono::{DateTime, Utc};

use crate::env::{BenchEnv, Stack};
use crate::workload::{Dating, Workload};

/// What every scenario needs.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub stack: Stack,
    pub kizuna: PathBuf,
    pub log_dir: PathBuf,
    pub seed: u64,
    pub customers: u32,
    /// Days of history the pre-loaded events are spread over.
    pub history_days: i64,
    pub marker_share: f64,
    pub drain_timeout: Duration,
    /// Extra `KIZUNA_…` variables for every engine started.
    pub engine_env: Vec<(String, String)>,
    /// The offered rate before a latency measurement starts.
    pub latency_warm_up: Duration,
}

impl Ctx {
    /// The workload of a pre-loaded backlog of run `run`: no markers, dated over the
    /// `history_days` before `now`.
    pub fn backlog(&self, run: &str, now: DateTime<Utc>) -> Workload {
        Workload::new(
            self.seed,
            run,
            self.customers,
            0.0,
            Dating::Recent {
                now,
                days: self.history_days,
            },
        )
    }
}

/// Starts the engine on `env` with the scenario's settings and waits until it is ready.
async fn start_engine(ctx: &Ctx, env: &BenchEnv, name: &str) -> anyhow::Result<Engine> {
    let mut engine = Engine::spawn(
        &ctx.kizuna,
        &ctx.stack,
        env,
        &ctx.engine_env,
        &ctx.log_dir,
        name,
    )?;
    engine.wait_ready(Duration::from_secs(60)).await?;
    Ok(engine)
}
