//! Latency at fixed offered rates: markers produced live, timed to their outputs' arrival.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use chrono::Utc;
use kizuna_testkit::Metrics;

use super::{Ctx, start_engine};
use crate::cost::{Cost, Meter};
use crate::engine::Engine;
use crate::env::BenchEnv;
use crate::produce::{self, Arrival};
use crate::report::Latency;
use crate::workload::{Dating, Workload};

/// Latency at one offered rate.
#[derive(Debug, Clone)]
pub struct LatencyRun {
    pub sent: u64,
    pub seconds: f64,
    pub latency: Latency,
    pub applied: i64,
    /// When every event was applied and every output published, after producing ended; None
    /// if that took longer than the wait.
    pub drained: Option<Duration>,
    /// Where the time went, from the engine's own metrics at the end of the run.
    pub breakdown: Option<String>,
    /// What each offered event cost (the warm-up at the rate and the measured part, until all
    /// was applied and published): CPU by process, WAL.
    pub cost: Option<Cost>,
}

/// The engine's view of a latency run: the broker's delivery (message timestamp → receipt), the
/// ingest half (event time → commit), the relay half
/// (outbox row → broker acknowledgement), batch sizes and durations, and the mean time per
/// batch stage.
fn breakdown(m: &Metrics) -> String {
    let ms = |name: &str, q: f64| {
        m.quantile(name, &[], q)
            .map_or("-".into(), |v| format!("{:.0}", v * 1000.0))
    };
    let batches = m.sum("kizuna_batch_duration_seconds_count", &[]);
    let mean = |sum: f64| if batches > 0.0 { sum / batches } else { 0.0 };
    let stages = kizuna::metrics::BATCH_STAGES
        .iter()
        .map(|s| {
            format!(
                "{s} {:.1}",
                mean(m.sum("kizuna_batch_stage_seconds_sum", &[("stage", s)])) * 1000.0
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "message → receipt p50 {} / p99 {} ms; event → commit p50 {} / p99 {} ms; \
         outbox row → ack p50 {} / p99 {} ms; \
         {batches:.0} batches of {:.0} events on average, p50 {} / p99 {} ms each; \
         mean ms per batch: {stages}",
        ms("kizuna_event_receive_lag_seconds", 0.5),
        ms("kizuna_event_receive_lag_seconds", 0.99),
        ms("kizuna_event_processing_lag_seconds", 0.5),
        ms("kizuna_event_processing_lag_seconds", 0.99),
        ms("kizuna_outbox_publish_latency_seconds", 0.5),
        ms("kizuna_outbox_publish_latency_seconds", 0.99),
        mean(m.sum("kizuna_batch_events_sum", &[])),
        ms("kizuna_batch_duration_seconds", 0.5),
        ms("kizuna_batch_duration_seconds", 0.99),
    )
}

/// How long the latency scenario waits for the engine to catch up after producing ends.
const DRAIN_WAIT: Duration = Duration::from_secs(60);

/// Starts the engine on fresh topics, produces live events at `rate` for `duration` with a
/// share of markers, and measures each marker's produce → output-arrival time.
pub async fn latency(ctx: &Ctx, rate: f64, duration: Duration) -> anyhow::Result<LatencyRun> {
    let name = format!("latency-{rate:.0}");
    let env = ctx.stack.env(&name, true, Some(&ctx.kizuna)).await?;
    let result = latency_in(ctx, &env, &name, rate, duration).await;
    ctx.stack.drop_env(&env).await;
    result
}

async fn latency_in(
    ctx: &Ctx,
    env: &BenchEnv,
    name: &str,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<LatencyRun> {
    let mut engine = start_engine(ctx, env, name).await?;
    let stop_reader = Arc::new(AtomicBool::new(false));
    let reader = produce::read_outputs(env, stop_reader.clone())?;
    // Warm-up: markers until their outputs come back, so the group has joined and every
    // partition is assigned before the clock starts.
    eprintln!("kizuna-bench: {name}: engine ready; warming up…");
    let warm = warm_up(env, &mut engine).await;
    if let Err(e) = warm {
        stop_reader.store(true, Ordering::Relaxed);
        let _ = reader.join();
        return Err(e);
    }
    let warm_up = ctx.latency_warm_up;
    eprintln!(
        "kizuna-bench: {name}: offering {rate:.0} events/s for {warm_up:?}, then measuring for {duration:?}…"
    );
    let meter = Meter::new(engine.pid(), &env.database, &env.brokers);
    let pool = env.pool().await?;
    let before = meter.snapshot(&pool).await;
    let paced = {
        let env = env.clone();
        let mut workload = Workload::new(
            ctx.seed.wrapping_add(rate as u64),
            &env.id,
            ctx.customers,
            ctx.marker_share,
            Dating::Live,
        );
        let stop = Arc::new(AtomicBool::new(false));
        tokio::task::spawn_blocking(move || {
            produce::paced(&env, &mut workload, rate, warm_up, duration, &stop)
        })
        .await??
    };
    // Wait until every event is applied and the outbox is empty (the relay published every
    // output), up to 60 s after producing ends; then give the reader a moment to receive.
    let ended = Instant::now();
    let deadline = ended + DRAIN_WAIT;
    // Every message on the input topics: the warm-up's, the producer's first and the paced.
    let sent = i64::try_from(WARM_UP_EVENTS + paced.unmeasured + paced.sent)?;
    let mut applied = 0;
    let mut drained = None;
    let mut after = None;
    while Instant::now() < deadline {
        engine.check_alive()?;
        applied = env.applied(&pool).await?;
        // Not count(*): it reads every dead row too, and competes with the engine's last work.
        let pending: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM outbox)")
            .fetch_one(&pool)
            .await?;
        if applied >= sent && !pending {
            drained = Some(ended.elapsed());
            after = Some(meter.snapshot(&pool).await);
            tokio::time::sleep(Duration::from_secs(1)).await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.close().await;
    stop_reader.store(true, Ordering::Relaxed);
    let arrivals = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the output reader panicked"))??;
    let breakdown = engine.metrics().await.ok().map(|m| breakdown(&m));
    engine.stop(Duration::from_secs(10)).await;
    let first = first_arrivals(&arrivals);
    let latency = match_markers(&paced.markers, &first);
    let series = ctx.log_dir.join(format!("{name}-{}.csv", env.id));
    if let Err(e) = write_marker_series(&series, &paced.markers, &first) {
        eprintln!(
            "kizuna-bench: {name}: could not write {}: {e:#}",
            series.display()
        );
    }
    Ok(LatencyRun {
        sent: paced.sent,
        seconds: paced.elapsed.as_secs_f64(),
        latency,
        // Of the paced events, as `sent` counts them.
        applied: applied - i64::try_from(WARM_UP_EVENTS + paced.unmeasured)?,
        drained,
        breakdown,
        cost: after.map(|a| Cost::between(&before, &a, paced.unmeasured + paced.sent)),
    })
}

/// Every marker's send time (Unix ms, and ms after the first) and latency (ms, empty if its
/// output never came) as CSV, to see when in a run the slow ones happened.
fn write_marker_series(
    path: &std::path::Path,
    markers: &HashMap<String, Instant>,
    first: &HashMap<&str, Instant>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let Some(start) = markers.values().min().copied() else {
        return Ok(());
    };
    let mut rows: Vec<(f64, Option<f64>)> = markers
        .iter()
        .map(|(id, sent)| {
            let at = sent.saturating_duration_since(start).as_secs_f64() * 1000.0;
            let latency = first
                .get(id.as_str())
                .map(|got| got.saturating_duration_since(*sent).as_secs_f64() * 1000.0);
            (at, latency)
        })
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Wall-clock time of the first send, to line the series up with other logs.
    let start_unix_ms = (Utc::now()
        - chrono::Duration::from_std(start.elapsed()).unwrap_or_default())
    .timestamp_millis() as f64;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "sent_unix_ms,sent_ms,latency_ms")?;
    for (at, latency) in rows {
        let unix = start_unix_ms + at;
        match latency {
            Some(l) => writeln!(out, "{unix:.0},{at:.1},{l:.1}")?,
            None => writeln!(out, "{unix:.0},{at:.1},")?,
        }
    }
    out.flush()?;
    Ok(())
}

/// When the first output caused by each event arrived.
fn first_arrivals(arrivals: &[Arrival]) -> HashMap<&str, Instant> {
    let mut first: HashMap<&str, Instant> = HashMap::new();
    for a in arrivals {
        first.entry(a.caused_by.as_str()).or_insert(a.at);
    }
    first
}

fn match_markers(markers: &HashMap<String, Instant>, first: &HashMap<&str, Instant>) -> Latency {
    let samples: Vec<f64> = markers
        .iter()
        .filter_map(|(id, sent)| {
            first
                .get(id.as_str())
                .map(|at| at.saturating_duration_since(*sent).as_secs_f64() * 1000.0)
        })
        .collect();
    Latency::of(samples, markers.len())
}

/// Events of the warm-up before a latency run.
const WARM_UP_EVENTS: u64 = 60;

/// Sends a few markers and waits until they are applied (the group has joined).
pub(super) async fn warm_up(env: &BenchEnv, engine: &mut Engine) -> anyhow::Result<()> {
    let pool = env.pool().await?;
    let env2 = env.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = Workload::new(1, &format!("{}-warm", env2.id), 1, 1.0, Dating::Live);
        produce::preload(&env2, &mut w, WARM_UP_EVENTS)
    })
    .await??;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        engine.check_alive()?;
        if env.applied(&pool).await? >= i64::try_from(WARM_UP_EVENTS)? {
            break;
        }
        if Instant::now() > deadline {
            bail!("warm-up events were not applied within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.close().await;
    // Let the relay publish the warm-up outputs before the measured run.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}
