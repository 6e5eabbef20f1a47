//! RSS over a long run at a fixed offered rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::latency::warm_up;
use super::{Ctx, start_engine};
use crate::env::BenchEnv;
use crate::produce;
use crate::workload::{Dating, Workload};

/// What the memory run measured.
#[derive(Debug, Clone)]
pub struct Memory {
    pub minutes: f64,
    pub rate: f64,
    pub sent: u64,
    pub applied: i64,
    /// Peak VmRSS (KiB) in the first and the last minute.
    pub first_minute_peak: u64,
    pub last_minute_peak: u64,
    pub hwm: u64,
    /// (seconds since start, VmRSS KiB, applied)
    pub series: Vec<(f64, u64, i64)>,
}

/// Offers `rate` events/s for `minutes`, sampling the engine's RSS every 5 s.
pub async fn memory(ctx: &Ctx, rate: f64, minutes: f64, customers: u32) -> anyhow::Result<Memory> {
    let env = ctx.stack.env("memory", true, Some(&ctx.kizuna)).await?;
    let result = memory_in(ctx, &env, rate, minutes, customers).await;
    ctx.stack.drop_env(&env).await;
    result
}

async fn memory_in(
    ctx: &Ctx,
    env: &BenchEnv,
    rate: f64,
    minutes: f64,
    customers: u32,
) -> anyhow::Result<Memory> {
    let mut engine = start_engine(ctx, env, "memory").await?;
    warm_up(env, &mut engine).await?;
    let duration = Duration::from_secs_f64(minutes * 60.0);
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let env = env.clone();
        let stop = stop.clone();
        let mut workload =
            Workload::new(ctx.seed, &env.id, customers, ctx.marker_share, Dating::Live);
        tokio::task::spawn_blocking(move || {
            produce::paced(&env, &mut workload, rate, Duration::ZERO, duration, &stop)
        })
    };
    let pool = env.pool().await?;
    let started = Instant::now();
    let mut series = Vec::new();
    let mut last_print = Instant::now();
    while !producer.is_finished() {
        if let Err(e) = engine.check_alive() {
            stop.store(true, Ordering::Relaxed);
            return Err(e);
        }
        let (rss, _) = engine.rss_kib()?;
        let applied = env.applied(&pool).await.unwrap_or(-1);
        let t = started.elapsed().as_secs_f64();
        series.push((t, rss, applied));
        if last_print.elapsed() > Duration::from_secs(60) {
            last_print = Instant::now();
            eprintln!(
                "kizuna-bench: memory: {t:.0} s, RSS {:.1} MiB, {applied} applied",
                rss as f64 / 1024.0
            );
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let paced = producer.await??;
    let (rss, hwm) = engine.rss_kib()?;
    let applied = env.applied(&pool).await?;
    let t = started.elapsed().as_secs_f64();
    series.push((t, rss, applied));
    pool.close().await;
    engine.stop(Duration::from_secs(10)).await;
    let peak = |from: f64, to: f64| {
        series
            .iter()
            .filter(|(s, _, _)| *s >= from && *s <= to)
            .map(|(_, r, _)| *r)
            .max()
            .unwrap_or(0)
    };
    Ok(Memory {
        minutes,
        rate,
        sent: paced.sent,
        applied,
        first_minute_peak: peak(0.0, 60.0),
        last_minute_peak: peak(t - 60.0, t),
        hwm,
        series,
    })
}
