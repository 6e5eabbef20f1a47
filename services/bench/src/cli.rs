//! The command line: which scenarios, and their sizes.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Scenario {
    /// throughput, ceiling, naive, latency (the default)
    Quick,
    /// Pre-loaded backlog drained by the engine: events/s.
    Throughput,
    /// The engine's writes as raw batched upserts, no Kafka, no logic: events/s; and the physical
    /// ceiling: one narrow row per event and per customer, batched, 2 writers.
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
    /// The throughput scenario without and with a `[points]` programme, interleaved: the cost
    /// of points per event (not in quick).
    Points,
    /// The throughput scenario with customers drawn uniformly and by a Zipf law (a few very
    /// active customers), interleaved: the skewed rate against the uniform one (not in quick).
    Zipf,
    /// `kizuna fit-model`'s pooling, three fits and choice over simulated customers (no Kafka,
    /// no PostgreSQL; not in quick): seconds.
    Fit,
    /// `kizuna fit-model` itself over --fit-customers customers stored in PostgreSQL (seeded as
    /// the console scenario seeds them): seconds (not in quick).
    FitCommand,
    /// quick, memory, churn, gateway, console, points, zipf, fit and fit-command.
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
pub struct Args {
    /// Scenarios to run.
    #[arg(value_enum, default_values_t = [Scenario::Quick])]
    pub scenarios: Vec<Scenario>,
    /// The engine binary. Default: `kizuna` next to this executable.
    #[arg(long)]
    pub kizuna: Option<PathBuf>,
    #[arg(long, env = "KIZUNA_BENCH_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// A database URL whose role may create databases.
    #[arg(
        long,
        env = "KIZUNA_BENCH_DATABASE_URL",
        default_value = "postgres://kizuna:kizuna@127.0.0.1:5432/kizuna"
    )]
    pub database_url: String,
    /// Partitions of each bench topic.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// Events of the throughput scenario (and of the ceiling).
    #[arg(long, default_value_t = 300_000)]
    pub events: u64,
    /// Customers the events are spread over.
    #[arg(long, default_value_t = 100_000)]
    pub customers: u32,
    /// Days before now the pre-loaded events are spread over (a backlog of recent traffic;
    /// longer spans make many customers silent, so more churn-risk outputs).
    #[arg(long, default_value_t = 2)]
    pub history_days: i64,
    /// Rounds of the points scenario (each: one drain without points, one with).
    #[arg(long, default_value_t = 2)]
    pub points_rounds: u32,
    /// The Zipf law's exponent of the zipf scenario: customer number k is drawn with a
    /// probability proportional to 1/k^s (1.0: the most active of 100,000 customers sends 8% of
    /// the events).
    #[arg(long, default_value_t = 1.0)]
    pub zipf_s: f64,
    /// Rounds of the zipf scenario (each: one uniform drain, one skewed).
    #[arg(long, default_value_t = 1)]
    pub zipf_rounds: u32,
    /// Events of the naive baseline.
    #[arg(long, default_value_t = 20_000)]
    pub naive_events: u64,
    /// Output events per input event written by the ceiling. Default: the share the engine
    /// produced in the throughput run of the same invocation.
    #[arg(long)]
    pub ceiling_output_share: Option<f64>,
    /// Writers of the physical ceiling (one narrow row per event and per customer, batched).
    #[arg(long, default_value_t = 2)]
    pub physical_writers: usize,
    /// Events per transaction of the ceiling.
    #[arg(long, default_value_t = 5_000)]
    pub ceiling_batch: usize,
    /// Offered rates of the latency scenario, events/s; `half` is 50% of the measured maximum
    /// (the throughput scenario's rate, or --max-rate).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,half")]
    pub latency_rates: Vec<String>,
    /// Seconds each latency rate is offered and measured.
    #[arg(long, default_value_t = 30)]
    pub latency_seconds: u64,
    /// Seconds each latency rate is offered before the measurement starts, so the engine is in
    /// the steady state of that rate (batch sizes, database connections) when the clock starts.
    #[arg(long, default_value_t = 5)]
    pub latency_warm_up: u64,
    /// Share of latency events that are markers (guaranteed to cause an output).
    #[arg(long, default_value_t = 0.2)]
    pub marker_share: f64,
    /// The engine's maximum rate, when the throughput scenario is not run.
    #[arg(long)]
    pub max_rate: Option<f64>,
    /// Minutes of the memory scenario.
    #[arg(long, default_value_t = 10.0)]
    pub memory_minutes: f64,
    /// Offered rate of the memory scenario, events/s.
    #[arg(long, default_value_t = 10_000.0)]
    pub memory_rate: f64,
    /// Customers of the memory scenario: a population where 10 minutes of peak traffic gives
    /// each customer a handful of events, as on a real platform (100,000 customers would each
    /// get 60 in 10 minutes, and their states would grow all the run).
    #[arg(long, default_value_t = 1_000_000)]
    pub memory_customers: u32,
    /// Give up draining a backlog after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub drain_timeout: u64,
    /// Extra engine settings, e.g. `KIZUNA_INGEST__BATCH_LINGER_MS=5` (repeatable).
    #[arg(long = "engine-env", value_name = "KEY=VALUE", value_parser = parse_kv)]
    pub engine_env: Vec<(String, String)>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Keep the bench databases and topics.
    #[arg(long)]
    pub keep: bool,
    /// Where engine logs and each latency run's per-marker CSV (send time, latency) go. Default:
    /// a fresh directory under /tmp.
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// churn: simulated customers.
    #[arg(long, default_value_t = 4_000)]
    pub churn_customers: u32,
    /// Customers of the fit scenario.
    #[arg(long, default_value_t = 1_000_000)]
    pub fit_customers: u64,
    /// churn: days of simulated history.
    #[arg(long, default_value_t = 730)]
    pub churn_history_days: i64,
    /// churn: the observation (and calibration) time is this many days before the end.
    #[arg(long, default_value_t = 90)]
    pub churn_holdout_days: i64,
    /// churn: end of the simulated history (fixed, so runs are reproducible).
    #[arg(long, default_value = "2026-01-01T00:00:00Z")]
    pub churn_end: DateTime<Utc>,
    /// churn: days between sweeps in the replay.
    #[arg(long, default_value_t = 7)]
    pub churn_sweep_days: i64,
    /// gateway: concurrent HTTP clients (and concurrent producer calls of the baseline).
    #[arg(long, default_value_t = 32)]
    pub gateway_clients: usize,
    /// gateway: seconds measured (after the warm-up), for the gateway and for the baseline.
    #[arg(long, default_value_t = 20)]
    pub gateway_seconds: u64,
    /// gateway: seconds of load before each measurement starts.
    #[arg(long, default_value_t = 3)]
    pub gateway_warm_up: u64,
    /// console: customers in the database.
    #[arg(long, default_value_t = 1_000_000)]
    pub console_customers: u32,
    /// console: simulated customers the population is copied from.
    #[arg(long, default_value_t = 2_000)]
    pub console_templates: u32,
    /// console: requests per page (after three that warm up).
    #[arg(long, default_value_t = 100)]
    pub console_requests: usize,
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

pub fn wanted(args: &Args, s: Scenario) -> bool {
    args.scenarios.iter().any(|x| match x {
        Scenario::All => s != Scenario::Clean,
        Scenario::Quick => matches!(
            s,
            Scenario::Throughput | Scenario::Ceiling | Scenario::Naive | Scenario::Latency
        ),
        other => *other == s,
    })
}
