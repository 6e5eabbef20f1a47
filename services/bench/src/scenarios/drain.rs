//! A pre-loaded backlog drained by the engine: the throughput scenario and the naive baseline.

use std::time::{Duration, Instant};

use chrono::Utc;

use super::Ctx;
use crate::cost::{Cost, Meter};
use crate::engine::Engine;
use crate::env::BenchEnv;
use crate::produce;

/// What a drain of a pre-loaded backlog measured.
#[derive(Debug, Clone)]
pub struct Drain {
    pub events: u64,
    /// From the first commit seen to the last event applied.
    pub steady_seconds: f64,
    pub steady_events: u64,
    pub rate: f64,
    /// From the engine's spawn to the last event applied (start-up and group join included).
    pub from_spawn_seconds: f64,
    pub produce_seconds: f64,
    pub batches: f64,
    pub batch_seconds_sum: f64,
    pub applied: f64,
    pub dead_lettered: f64,
    /// Output events written to the outbox, all kinds (points included).
    pub outputs: f64,
    /// Seconds spent in each batch stage, summed over the batches (`BATCH_STAGES` order).
    pub stage_seconds: Vec<(&'static str, f64)>,
    /// What the steady part cost per event (CPU by process, WAL).
    pub cost: Option<Cost>,
    pub complete: bool,
}

impl Drain {
    pub fn note(&self) -> String {
        let avg_batch = if self.batches > 0.0 {
            self.applied / self.batches
        } else {
            0.0
        };
        let avg_commit = if self.batches > 0.0 {
            self.batch_seconds_sum / self.batches * 1000.0
        } else {
            0.0
        };
        let mut note = format!(
            "{:.0} txs, avg {avg_batch:.0} ev/tx, {avg_commit:.1} ms/tx; {:.1} s from spawn; preload {:.1} s; outputs {:.1}%",
            self.batches,
            self.from_spawn_seconds,
            self.produce_seconds,
            self.outputs * 100.0 / self.events.max(1) as f64
        );
        if self.batches > 0.0 {
            let stages: Vec<String> = self
                .stage_seconds
                .iter()
                .map(|(s, sum)| format!("{s} {:.1}", sum / self.batches * 1000.0))
                .collect();
            note.push_str(&format!("; ms per tx: {}", stages.join(", ")));
        }
        if let Some(c) = &self.cost {
            note.push_str(&format!("; {}", c.note()));
        }
        if self.dead_lettered > 0.0 {
            note.push_str(&format!("; {} DEAD-LETTERED", self.dead_lettered));
        }
        if !self.complete {
            note.push_str("; INCOMPLETE (drain timeout)");
        }
        note
    }
}

/// Pre-loads `n` events, starts the engine and measures how fast it drains them. Returns the
/// environment (still existing) so the caller can sample it.
pub async fn drain(
    ctx: &Ctx,
    name: &str,
    n: u64,
    extra_env: &[(String, String)],
) -> anyhow::Result<(Drain, BenchEnv)> {
    drain_mix(ctx, name, n, extra_env, None).await
}

/// [`drain`], with customers drawn by a Zipf law of exponent `zipf` when given (a few very
/// active customers) instead of uniformly.
pub async fn drain_mix(
    ctx: &Ctx,
    name: &str,
    n: u64,
    extra_env: &[(String, String)],
    zipf: Option<f64>,
) -> anyhow::Result<(Drain, BenchEnv)> {
    let env = ctx.stack.env(name, true, Some(&ctx.kizuna)).await?;
    eprintln!(
        "kizuna-bench: {name}: pre-loading {n} events into {}…",
        env.topics.purchases
    );
    let produce_seconds = {
        let env = env.clone();
        let mut workload = ctx.backlog(&env.id, Utc::now());
        if let Some(s) = zipf {
            workload = workload.with_zipf(s)?;
        }
        tokio::task::spawn_blocking(move || produce::preload(&env, &mut workload, n))
            .await??
            .as_secs_f64()
    };
    let pool = env.pool().await?;
    let mut vars = ctx.engine_env.clone();
    vars.extend_from_slice(extra_env);
    let mut engine = Engine::spawn(&ctx.kizuna, &ctx.stack, &env, &vars, &ctx.log_dir, name)?;
    eprintln!(
        "kizuna-bench: {name}: engine pid {} started (log {}), draining…",
        engine.pid(),
        engine.log().display()
    );
    let target = i64::try_from(n)?;
    let meter = Meter::new(engine.pid(), &env.database, &env.brokers);
    let mut first: Option<(Instant, i64)> = None;
    let mut first_snapshot = None;
    let mut last_print = Instant::now();
    let mut done: Option<Instant> = None;
    let mut applied = 0;
    while engine.spawned().elapsed() < ctx.drain_timeout {
        engine.check_alive()?;
        applied = env.applied(&pool).await?;
        let now = Instant::now();
        if applied > 0 && first.is_none() {
            first = Some((now, applied));
            first_snapshot = Some(meter.snapshot(&pool).await);
        }
        if applied >= target {
            done = Some(now);
            break;
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            last_print = now;
            let rate = first
                .map(|(t, a)| (applied - a) as f64 / t.elapsed().as_secs_f64().max(1e-3))
                .unwrap_or(0.0);
            eprintln!("kizuna-bench: {name}: {applied}/{n} applied ({rate:.0} events/s)");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let end = done.unwrap_or_else(Instant::now);
    let last_snapshot = meter.snapshot(&pool).await;
    let metrics = engine.metrics().await.unwrap_or_default();
    let from_spawn_seconds = (end - engine.spawned()).as_secs_f64();
    engine.stop(Duration::from_secs(10)).await;
    pool.close().await;
    let (steady_seconds, steady_events) = match first {
        Some((t, a)) => (
            (end - t).as_secs_f64(),
            u64::try_from(applied - a).unwrap_or(0),
        ),
        None => (0.0, 0),
    };
    let drain = Drain {
        events: n,
        steady_seconds,
        steady_events,
        rate: steady_events as f64 / steady_seconds.max(1e-9),
        from_spawn_seconds,
        produce_seconds,
        batches: metrics.sum("kizuna_batch_events_count", &[]),
        batch_seconds_sum: metrics.sum("kizuna_batch_duration_seconds_sum", &[]),
        applied: metrics.sum("kizuna_events_consumed_total", &[("outcome", "applied")]),
        dead_lettered: metrics.sum(
            "kizuna_events_consumed_total",
            &[("outcome", "dead_lettered")],
        ),
        outputs: metrics.sum("kizuna_outputs_total", &[]),
        stage_seconds: kizuna::metrics::BATCH_STAGES
            .iter()
            .map(|s| {
                (
                    *s,
                    metrics.sum("kizuna_batch_stage_seconds_sum", &[("stage", s)]),
                )
            })
            .collect(),
        cost: first_snapshot.map(|s| Cost::between(&s, &last_snapshot, steady_events)),
        complete: done.is_some(),
    };
    Ok((drain, env))
}
