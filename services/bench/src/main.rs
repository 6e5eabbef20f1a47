//! `kizuna-bench`: Kizuna's benchmarks, run from one command.
//!
//! Against the real broker and the real PostgreSQL, with the real engine binary as a child
//! process: sustained end-to-end throughput, the naive one-event-per-transaction baseline, the
//! database ceiling (the engine's writes as raw batched upserts), end-to-end latency at fixed
//! offered rates, and memory over a long run. In-process, without Kafka or PostgreSQL: the
//! churn-risk quality against simulated ground truth.

mod churn;
mod console;
mod engine;
mod env;
mod gateway;
mod produce;
mod report;
mod scenarios;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, ValueEnum};

use crate::env::Stack;
use crate::report::{Row, Target};
use crate::scenarios::Ctx;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum Scenario {
    /// throughput, ceiling, naive, latency (the default)
    Quick,
    /// Pre-loaded backlog drained by the engine: events/s.
    Throughput,
    /// The engine's writes as raw batched upserts, no Kafka, no logic: events/s.
    Ceiling,
    /// The engine with one event per transaction: events/s.
    Naive,
    /// End-to-end latency at fixed offered rates: p50, p99, p99.9.
    Latency,
    /// RSS over a long run at a fixed offered rate (not in quick).
    Memory,
    /// Churn-risk quality against simulated ground truth (no Kafka, no PostgreSQL).
    Churn,
    /// The webhook gateway: signed Shopify orders over HTTP, each answered after the broker's
    /// acknowledgement: requests/s, p50/p99; against the same producer without HTTP (not in quick).
    Gateway,
    /// The marketer console at 1,000,000 customers: p50/p99 render time per page (not in quick).
    Console,
    /// quick, memory, churn, gateway and console.
    All,
    /// Remove databases and topics left by earlier runs (--keep, or a run killed by force).
    Clean,
}

#[derive(Debug, Parser)]
#[command(
    name = "kizuna-bench",
    version,
    about = "Kizuna's benchmarks: throughput, latency, ceiling, naive baseline, memory; churn-risk quality",
    long_about = "Kizuna's benchmarks.\n\n\
        Engine scenarios run against the real broker and PostgreSQL (deploy/local/up.sh), with \
        the real engine binary as a child process configured by KIZUNA_* variables, each on a \
        fresh database, fresh topics and a fresh consumer group, all removed at the end. \
        Results are ratios measured in the same run, because other work on the machine makes \
        absolute numbers noisy.\n\n\
        Build both binaries in release mode first:\n  \
        cargo build --release -p kizuna-loyalty-engine -p kizuna-bench"
)]
struct Args {
    /// Scenarios to run.
    #[arg(value_enum, default_values_t = [Scenario::Quick])]
    scenarios: Vec<Scenario>,
    /// The engine binary. Default: `kizuna` next to this executable.
    #[arg(long)]
    kizuna: Option<PathBuf>,
    #[arg(long, env = "KIZUNA_BENCH_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// A database URL whose role may create databases.
    #[arg(
        long,
        env = "KIZUNA_BENCH_DATABASE_URL",
        default_value = "postgres://kizuna:kizuna@127.0.0.1:5432/kizuna"
    )]
    database_url: String,
    /// Partitions of each bench topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Events of the throughput scenario (and of the ceiling).
    #[arg(long, default_value_t = 300_000)]
    events: u64,
    /// Customers the events are spread over.
    #[arg(long, default_value_t = 100_000)]
    customers: u32,
    /// Days before now the pre-loaded events are spread over (a backlog of recent traffic;
    /// longer spans make many customers silent, so more churn-risk outputs).
    #[arg(long, default_value_t = 2)]
    history_days: i64,
    /// Events of the naive baseline.
    #[arg(long, default_value_t = 20_000)]
    naive_events: u64,
    /// Output events per input event written by the ceiling. Default: the share the engine
    /// produced in the throughput run of the same invocation.
    #[arg(long)]
    ceiling_output_share: Option<f64>,
    /// Events per transaction of the ceiling.
    #[arg(long, default_value_t = 5_000)]
    ceiling_batch: usize,
    /// Offered rates of the latency scenario, events/s; `half` is 50% of the measured maximum
    /// (the throughput scenario's rate, or --max-rate).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,half")]
    latency_rates: Vec<String>,
    /// Seconds each latency rate is offered and measured.
    #[arg(long, default_value_t = 30)]
    latency_seconds: u64,
    /// Seconds each latency rate is offered before the measurement starts, so the engine is in
    /// the steady state of that rate (batch sizes, database connections) when the clock starts.
    #[arg(long, default_value_t = 5)]
    latency_warm_up: u64,
    /// Share of latency events that are markers (guaranteed to cause an output).
    #[arg(long, default_value_t = 0.2)]
    marker_share: f64,
    /// The engine's maximum rate, when the throughput scenario is not run.
    #[arg(long)]
    max_rate: Option<f64>,
    /// Minutes of the memory scenario.
    #[arg(long, default_value_t = 10.0)]
    memory_minutes: f64,
    /// Offered rate of the memory scenario, events/s.
    #[arg(long, default_value_t = 10_000.0)]
    memory_rate: f64,
    /// Customers of the memory scenario: a population where 10 minutes of peak traffic gives
    /// each customer a handful of events, as on a real platform (100,000 customers would each
    /// get 60 in 10 minutes, and their states would grow all the run).
    #[arg(long, default_value_t = 1_000_000)]
    memory_customers: u32,
    /// Give up draining a backlog after this many seconds.
    #[arg(long, default_value_t = 600)]
    drain_timeout: u64,
    /// Extra engine settings, e.g. `KIZUNA_INGEST__BATCH_LINGER_MS=5` (repeatable).
    #[arg(long = "engine-env", value_name = "KEY=VALUE", value_parser = parse_kv)]
    engine_env: Vec<(String, String)>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Keep the bench databases and topics.
    #[arg(long)]
    keep: bool,
    /// Where engine logs and each latency run's per-marker CSV (send time, latency) go. Default:
    /// a fresh directory under /tmp.
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// churn: simulated customers.
    #[arg(long, default_value_t = 4_000)]
    churn_customers: u32,
    /// churn: days of simulated history.
    #[arg(long, default_value_t = 730)]
    churn_history_days: i64,
    /// churn: the observation (and calibration) time is this many days before the end.
    #[arg(long, default_value_t = 90)]
    churn_holdout_days: i64,
    /// churn: end of the simulated history (fixed, so runs are reproducible).
    #[arg(long, default_value = "2026-01-01T00:00:00Z")]
    churn_end: DateTime<Utc>,
    /// churn: days between sweeps in the replay.
    #[arg(long, default_value_t = 7)]
    churn_sweep_days: i64,
    /// gateway: concurrent HTTP clients (and concurrent producer calls of the baseline).
    #[arg(long, default_value_t = 32)]
    gateway_clients: usize,
    /// gateway: seconds measured (after the warm-up), for the gateway and for the baseline.
    #[arg(long, default_value_t = 20)]
    gateway_seconds: u64,
    /// gateway: seconds of load before each measurement starts.
    #[arg(long, default_value_t = 3)]
    gateway_warm_up: u64,
    /// console: customers in the database.
    #[arg(long, default_value_t = 1_000_000)]
    console_customers: u32,
    /// console: simulated customers the population is copied from.
    #[arg(long, default_value_t = 2_000)]
    console_templates: u32,
    /// console: requests per page (after three that warm up).
    #[arg(long, default_value_t = 100)]
    console_requests: usize,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    if !k.starts_with("KIZUNA_") {
        return Err(format!("{k:?} is not a KIZUNA_… variable"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

fn wanted(args: &Args, s: Scenario) -> bool {
    args.scenarios.iter().any(|x| match x {
        Scenario::All => s != Scenario::Clean,
        Scenario::Quick => matches!(
            s,
            Scenario::Throughput | Scenario::Ceiling | Scenario::Naive | Scenario::Latency
        ),
        other => *other == s,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!("kizuna-bench {}", env!("CARGO_PKG_VERSION"));
    for (k, v) in env::machine_facts() {
        println!("  {k:<13} {v}");
    }

    if wanted(&args, Scenario::Clean) {
        let stack = Stack::new(&args.brokers, &args.database_url, args.partitions, false);
        let (dbs, topics) = stack.remove_leftovers().await?;
        println!("removed {dbs} bench databases and {topics} bench topics");
    }
    let engine_needed = [
        Scenario::Throughput,
        Scenario::Naive,
        Scenario::Latency,
        Scenario::Memory,
        Scenario::Ceiling,
        Scenario::Console,
    ]
    .into_iter()
    .any(|s| wanted(&args, s));
    let mut failed = None;
    if engine_needed {
        let stack = Stack::new(
            &args.brokers,
            &args.database_url,
            args.partitions,
            args.keep,
        );
        {
            let stack = stack.clone();
            tokio::spawn(async move {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(t) => t,
                        Err(_) => return,
                    };
                let stopped = tokio::select! {
                    r = tokio::signal::ctrl_c() => r.is_ok(),
                    r = term.recv() => r.is_some(),
                };
                if stopped {
                    eprintln!("kizuna-bench: interrupted; cleaning up…");
                    stack.cleanup_all().await;
                    std::process::exit(130);
                }
            });
        }
        let result = engine_scenarios(&args, &stack).await;
        stack.cleanup_all().await;
        if let Err(e) = result {
            eprintln!("kizuna-bench: {e:#}");
            failed = Some(e);
        }
    }
    if wanted(&args, Scenario::Gateway) {
        println!();
        let stack = Stack::new(
            &args.brokers,
            &args.database_url,
            args.partitions,
            args.keep,
        );
        let opts = gateway::GatewayOptions {
            clients: args.gateway_clients.max(1),
            duration: Duration::from_secs(args.gateway_seconds.max(1)),
            warm_up: Duration::from_secs(args.gateway_warm_up),
        };
        let result = gateway::run(&stack, opts).await;
        stack.cleanup_all().await;
        match result {
            Ok(run) => print_gateway(&run, opts),
            Err(e) => {
                eprintln!("kizuna-bench: gateway: {e:#}");
                failed = Some(e);
            }
        }
    }
    if wanted(&args, Scenario::Churn) {
        println!();
        let opts = churn::ChurnOptions {
            customers: args.churn_customers,
            seed: args.seed,
            history_days: args.churn_history_days,
            holdout_days: args.churn_holdout_days,
            end: args.churn_end,
            sweep_days: args.churn_sweep_days,
            late_grace_days: 28,
        };
        let report = tokio::task::spawn_blocking(move || churn::run(&opts)).await??;
        churn::print(&report);
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn engine_scenarios(args: &Args, stack: &Stack) -> anyhow::Result<()> {
    let kizuna = engine::locate(args.kizuna.as_deref())?;
    let built = std::fs::metadata(&kizuna)
        .and_then(|m| m.modified())
        .map(|t| DateTime::<Utc>::from(t).to_rfc3339())
        .unwrap_or_default();
    println!("  {:<13} {} (built {built})", "engine", kizuna.display());
    if kizuna.components().any(|c| c.as_os_str() == "debug") {
        println!("  WARNING: the engine is a debug build; build with --release for real figures");
    }
    let pg: String = {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&args.database_url)
            .await
            .context("connecting to PostgreSQL; is the stack up (deploy/local/up.sh)?")?;
        sqlx::query_scalar("SHOW server_version")
            .fetch_one(&mut c)
            .await?
    };
    println!(
        "  {:<13} PostgreSQL {pg}; broker {}{}",
        "stack",
        args.brokers,
        local_broker_kind().map_or(String::new(), |k| format!(
            " ({k}, started by deploy/local)"
        ))
    );
    let log_dir = match &args.log_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!(
            "kizuna-bench-{}",
            uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .get(..8)
                .unwrap_or("x")
        )),
    };
    std::fs::create_dir_all(&log_dir)?;
    println!("  {:<13} {}", "logs, CSVs", log_dir.display());
    println!();
    let ctx = Ctx {
        stack: stack.clone(),
        kizuna,
        log_dir,
        seed: args.seed,
        customers: args.customers,
        history_days: args.history_days,
        marker_share: args.marker_share,
        drain_timeout: Duration::from_secs(args.drain_timeout),
        engine_env: args.engine_env.clone(),
        latency_warm_up: Duration::from_secs(args.latency_warm_up),
    };

    let mut rows: Vec<Row> = Vec::new();
    let mut engine_rate = None;
    let mut ceiling_rate = None;
    let mut naive_rate = None;
    let mut latencies: Vec<(f64, report::Latency)> = Vec::new();
    let mut breakdowns: Vec<String> = Vec::new();
    let mut samples = None;
    let mut errors = Vec::new();

    if wanted(args, Scenario::Console) {
        let opts = console::ConsoleOptions {
            customers: args.console_customers,
            templates: args.console_templates.max(1),
            requests: args.console_requests.max(1),
        };
        match console::run(&ctx, stack, opts).await {
            Ok(run) => console::print(&run, opts),
            Err(e) => errors.push(format!("console: {e:#}")),
        }
        println!();
    }
    if wanted(args, Scenario::Throughput) {
        match scenarios::drain(&ctx, "throughput", args.events, &[]).await {
            Ok((d, env)) => {
                if wanted(args, Scenario::Ceiling) {
                    match scenarios::sample(&env, args.events).await {
                        Ok(s) => samples = Some(s),
                        Err(e) => errors.push(format!("sampling the throughput run: {e:#}")),
                    }
                }
                stack.drop_env(&env).await;
                rows.push(Row {
                    scenario: "throughput (engine, backlog)".into(),
                    events: d.steady_events,
                    seconds: d.steady_seconds,
                    rate: d.rate,
                    latency: None,
                    note: d.note(),
                });
                if d.complete {
                    engine_rate = Some(d.rate);
                } else {
                    errors.push("throughput: the backlog was not drained in time".into());
                    engine_rate = Some(d.rate);
                }
            }
            Err(e) => errors.push(format!("throughput: {e:#}")),
        }
    }
    if wanted(args, Scenario::Ceiling) {
        let s = match samples.take() {
            Some(s) => Some(s),
            None => {
                // No throughput run to sample: drain a small backlog to get real rows.
                eprintln!("kizuna-bench: ceiling: sampling a small engine run for realistic rows…");
                match scenarios::drain(&ctx, "sample", 20_000, &[]).await {
                    Ok((_, env)) => {
                        let s = scenarios::sample(&env, 20_000).await;
                        stack.drop_env(&env).await;
                        match s {
                            Ok(s) => Some(s),
                            Err(e) => {
                                errors.push(format!("ceiling samples: {e:#}"));
                                None
                            }
                        }
                    }
                    Err(e) => {
                        errors.push(format!("ceiling samples: {e:#}"));
                        None
                    }
                }
            }
        };
        if let Some(mut s) = s {
            if let Some(share) = args.ceiling_output_share {
                s.output_share = share.max(0.0);
            }
            match scenarios::ceiling(&ctx, args.events, args.ceiling_batch, &s, args.partitions)
                .await
            {
                Ok(c) => {
                    rows.push(Row {
                        scenario: "ceiling (raw batched upsert)".into(),
                        events: c.events,
                        seconds: c.seconds,
                        rate: c.rate,
                        latency: None,
                        note: format!(
                            "{} txs of {} ev; {} customer rows (avg state {} B), {} outbox rows ({:.1}%)",
                            c.transactions,
                            args.ceiling_batch,
                            c.customer_rows,
                            c.state_bytes,
                            c.outbox_rows,
                            s.output_share * 100.0
                        ),
                    });
                    ceiling_rate = Some(c.rate);
                }
                Err(e) => errors.push(format!("ceiling: {e:#}")),
            }
        }
    }
    if wanted(args, Scenario::Naive) {
        let one = [("KIZUNA_INGEST__BATCH_MAX_EVENTS".to_owned(), "1".to_owned())];
        match scenarios::drain(&ctx, "naive", args.naive_events, &one).await {
            Ok((d, env)) => {
                stack.drop_env(&env).await;
                let verified = if d.batches > 0.0 && (d.applied - d.batches).abs() < 0.5 {
                    format!("verified: {:.0} txs for {:.0} events", d.batches, d.applied)
                } else {
                    format!(
                        "NOT one per tx: {:.0} txs for {:.0} events",
                        d.batches, d.applied
                    )
                };
                rows.push(Row {
                    scenario: "naive (engine, 1 event/tx)".into(),
                    events: d.steady_events,
                    seconds: d.steady_seconds,
                    rate: d.rate,
                    latency: None,
                    note: format!("{verified}; {}", d.note()),
                });
                naive_rate = Some(d.rate);
            }
            Err(e) => errors.push(format!("naive: {e:#}")),
        }
    }
    if wanted(args, Scenario::Latency) {
        let max = engine_rate.or(args.max_rate);
        for spec in &args.latency_rates {
            let rate = match spec.trim() {
                "half" => match max {
                    Some(m) => (m / 2.0).max(1.0),
                    None => {
                        errors.push(
                            "latency at 50% of the maximum: no throughput run and no --max-rate"
                                .into(),
                        );
                        continue;
                    }
                },
                other => match other.parse::<f64>() {
                    Ok(r) if r > 0.0 => r,
                    _ => {
                        errors.push(format!("latency: {other:?} is not a rate"));
                        continue;
                    }
                },
            };
            match scenarios::latency(&ctx, rate, Duration::from_secs(args.latency_seconds)).await {
                Ok(l) => {
                    let label = if spec.trim() == "half" {
                        format!("latency @ {rate:.0}/s (50% of max)")
                    } else {
                        format!("latency @ {rate:.0}/s")
                    };
                    rows.push(Row {
                        scenario: label,
                        events: l.sent,
                        seconds: l.seconds,
                        rate: l.sent as f64 / l.seconds.max(1e-9),
                        latency: Some(l.latency),
                        note: format!(
                            "markers {}/{} matched, max {}; {}",
                            l.latency.matched,
                            l.latency.markers,
                            l.latency
                                .max
                                .map_or("-".into(), |m| format!("{m:.0} ms")),
                            match l.drained {
                                Some(d) => format!(
                                    "all applied and published {:.1} s after the last send",
                                    d.as_secs_f64()
                                ),
                                None => format!(
                                    "{} of {} applied, outputs still pending 60 s after the last send",
                                    l.applied, l.sent
                                ),
                            }
                        ),
                    });
                    latencies.push((rate, l.latency));
                    if let Some(b) = l.breakdown {
                        breakdowns.push(format!("latency @ {rate:.0}/s: {b}"));
                    }
                }
                Err(e) => errors.push(format!("latency at {rate:.0}/s: {e:#}")),
            }
        }
    }
    let mut memory = None;
    if wanted(args, Scenario::Memory) {
        match scenarios::memory(
            &ctx,
            args.memory_rate,
            args.memory_minutes,
            args.memory_customers,
        )
        .await
        {
            Ok(m) => {
                rows.push(Row {
                    scenario: format!(
                        "memory @ {:.0}/s, {}k customers",
                        m.rate,
                        args.memory_customers / 1000
                    ),
                    events: m.sent,
                    seconds: m.minutes * 60.0,
                    rate: m.sent as f64 / (m.minutes * 60.0),
                    latency: None,
                    note: format!(
                        "peak RSS first minute {:.1} MiB, last minute {:.1} MiB (x{:.2}); VmHWM {:.1} MiB; {} of {} applied",
                        m.first_minute_peak as f64 / 1024.0,
                        m.last_minute_peak as f64 / 1024.0,
                        m.last_minute_peak as f64 / m.first_minute_peak.max(1) as f64,
                        m.hwm as f64 / 1024.0,
                        m.applied,
                        m.sent
                    ),
                });
                memory = Some(m);
            }
            Err(e) => errors.push(format!("memory: {e:#}")),
        }
    }

    println!();
    report::print_table(&rows);
    if !breakdowns.is_empty() {
        println!();
        println!("where the time went (the engine's metrics at the end of each latency run):");
        for b in &breakdowns {
            println!("  {b}");
        }
    }
    println!();
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let vs_ceiling = ratio(engine_rate, ceiling_rate);
    let vs_naive = ratio(engine_rate, naive_rate);
    println!(
        "ratios: engine/ceiling = {}   engine/naive = {}",
        vs_ceiling.map_or("-".into(), |r| format!("{r:.3}")),
        vs_naive.map_or("-".into(), |r| format!("{r:.2}"))
    );
    println!();
    let p99_at = |want: f64| {
        latencies
            .iter()
            .find(|(r, _)| (*r - want).abs() < 0.5)
            .map(|(_, l)| l.p99)
    };
    let latency_target = |want: f64, limit: f64| {
        let what = format!("p99 < {limit:.0} ms at {want:.0} events/s");
        match p99_at(want) {
            Some(Some(p)) => Target {
                what,
                measured: format!("{p:.1} ms"),
                pass: Some(p < limit),
            },
            Some(None) => Target {
                what,
                measured: "outputs late".into(),
                pass: Some(false),
            },
            None => Target {
                what,
                measured: "-".into(),
                pass: None,
            },
        }
    };
    let targets = vec![
        Target {
            what: "sustained throughput >= 30000 events/s".into(),
            measured: engine_rate.map_or("-".into(), |r| format!("{r:.0}/s")),
            pass: engine_rate.map(|r| r >= 30_000.0),
        },
        Target {
            what: "engine/ceiling >= 0.5".into(),
            measured: vs_ceiling.map_or("-".into(), |r| format!("{r:.3}")),
            pass: vs_ceiling.map(|r| r >= 0.5),
        },
        Target {
            what: "engine/naive >= 8".into(),
            measured: vs_naive.map_or("-".into(), |r| format!("{r:.2}")),
            pass: vs_naive.map(|r| r >= 8.0),
        },
        latency_target(1_000.0, 50.0),
        latency_target(10_000.0, 250.0),
    ];
    report::print_targets(&targets);
    if let Some(m) = memory {
        println!();
        println!("memory: seconds, VmRSS MiB, events applied");
        for (t, rss, applied) in m.series.iter().step_by(6) {
            println!("  {t:>6.0} {:>8.1} {applied:>10}", *rss as f64 / 1024.0);
        }
    }
    if !errors.is_empty() {
        println!();
        for e in &errors {
            println!("ERROR: {e}");
        }
        anyhow::bail!("{} scenario(s) failed", errors.len());
    }
    Ok(())
}

fn print_gateway(run: &gateway::GatewayRun, opts: gateway::GatewayOptions) {
    let row = |name: &str, m: &gateway::Measure, note: String| Row {
        scenario: name.into(),
        events: m.requests,
        seconds: m.seconds,
        rate: m.rate(),
        latency: Some(m.latency),
        note,
    };
    report::print_table(&[
        row(
            "gateway (HTTP, signed Shopify)",
            &run.gateway,
            format!(
                "{} clients; 200 only after acks=all; {} failed; body {} B",
                opts.clients, run.gateway.failures, run.body_bytes
            ),
        ),
        row(
            "baseline (same producer, no HTTP)",
            &run.baseline,
            format!(
                "{} concurrent calls; {} failed; event {} B",
                opts.clients, run.baseline.failures, run.event_bytes
            ),
        ),
    ]);
    let ratio = run.gateway.rate() / run.baseline.rate().max(1e-9);
    let p99 = match (run.gateway.latency.p99, run.baseline.latency.p99) {
        (Some(g), Some(b)) if b > 0.0 => format!("{:.2}", g / b),
        _ => "-".into(),
    };
    println!();
    println!("ratios: gateway/baseline requests/s = {ratio:.3}   p99 gateway/baseline = {p99}");
}

/// Which broker deploy/local/up.sh last started (`kafka` or `tansu`), if it did.
fn local_broker_kind() -> Option<String> {
    let dir = std::env::var("KIZUNA_STATE_DIR").unwrap_or_else(|_| "/var/lib/kizuna-local".into());
    let kind = std::fs::read_to_string(std::path::Path::new(&dir).join("broker")).ok()?;
    let kind = kind.trim();
    (!kind.is_empty()).then(|| kind.to_owned())
}
