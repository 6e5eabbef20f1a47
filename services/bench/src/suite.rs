//! The engine scenarios of one invocation, run in order, then the table, the ratios and the
//! targets; and the gateway's table.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::cli::{Args, Scenario, wanted};
use crate::cost::Cost;
use crate::env::Stack;
use crate::report::{self, Row, Target};
use crate::scenarios::{self, Ctx};
use crate::{console, engine, fit_command, gateway};

pub async fn engine_scenarios(args: &Args, stack: &Stack) -> anyhow::Result<()> {
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
    let mut points_summary: Option<String> = None;

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
    if wanted(args, Scenario::FitCommand) {
        let customers = u32::try_from(args.fit_customers).unwrap_or(u32::MAX);
        match fit_command::run(&ctx, stack, customers, args.console_templates.max(1)).await {
            Ok(run) => fit_command::print(&run),
            Err(e) => errors.push(format!("fit-command: {e:#}")),
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
                            "{} txs of {} ev; {} customer rows (avg state {} B), {} outbox messages ({:.1}%)",
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
    let mut physical_rate = None;
    if wanted(args, Scenario::Ceiling) {
        match scenarios::physical(&ctx, args.events, args.ceiling_batch, args.physical_writers)
            .await
        {
            Ok(p) => {
                rows.push(Row {
                    scenario: "physical ceiling (2 narrow rows)".into(),
                    events: p.events,
                    seconds: p.seconds,
                    rate: p.rate,
                    latency: None,
                    note: format!(
                        "{} writers, {} txs of up to {} ev; {} customer rows; PostgreSQL per event: CPU {}, WAL {}",
                        p.writers,
                        p.transactions,
                        args.ceiling_batch,
                        p.customer_rows,
                        p.cost
                            .postgres_us
                            .map_or("-".into(), |v| format!("{v:.1} µs")),
                        p.cost
                            .wal_bytes
                            .map_or("-".into(), |v| format!("{:.2} kB", v / 1000.0)),
                    ),
                });
                physical_rate = Some(p.rate);
            }
            Err(e) => errors.push(format!("physical ceiling: {e:#}")),
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
    if wanted(args, Scenario::Points) {
        match points(&ctx, stack, args).await {
            Ok(([off, on], mut more)) => {
                rows.push(off.row("throughput, points off", args.events));
                rows.push(on.row("throughput, points on", args.events));
                let (a, b) = (off.mean(), on.mean());
                if a > 0.0 && b > 0.0 {
                    points_summary = Some(format!(
                        "points: with/without = {:.3} (mean of {} interleaved pairs); cost per event = {:.1} µs",
                        b / a,
                        on.rates.len(),
                        (1.0 / b - 1.0 / a) * 1e6
                    ));
                }
                if let (Some(without), Some(with)) = (Cost::mean(&off.costs), Cost::mean(&on.costs))
                    && let Some(summary) = points_summary.as_mut()
                {
                    summary.push_str(&format!(
                        "\n  without points {}\n  with points    {}\n  points add     {}",
                        without.note(),
                        with.note(),
                        with.added_to(&without)
                    ));
                }
                errors.append(&mut more);
            }
            Err(e) => errors.push(format!("points: {e:#}")),
        }
    }
    let mut zipf_summary: Option<String> = None;
    if wanted(args, Scenario::Zipf) {
        let ([uniform, skewed], mut more) = zipf(&ctx, stack, args).await;
        errors.append(&mut more);
        for (label, drains) in [
            ("uniform customers".to_owned(), &uniform),
            (format!("zipf customers, s = {}", args.zipf_s), &skewed),
        ] {
            if !drains.rates.is_empty() {
                rows.push(drains.row(&format!("throughput, {label}"), args.events));
            }
        }
        let (a, b) = (uniform.mean(), skewed.mean());
        if a > 0.0 && b > 0.0 {
            let (top, top_percent) = crate::workload::zipf_shares(args.customers, args.zipf_s);
            zipf_summary = Some(format!(
                "zipf: skewed/uniform = {:.3} (mean of {} interleaved pairs; issue 19 asks >= 0.8); \
                 the most active customer sends {:.1}% of the events, the most active 1% of customers {:.0}%",
                b / a,
                skewed.rates.len().min(uniform.rates.len()),
                top * 100.0,
                top_percent * 100.0
            ));
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
                        let cost = l.cost.map_or(String::new(), |c| format!("; {}", c.note()));
                        breakdowns.push(format!("latency @ {rate:.0}/s: {b}{cost}"));
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
    let vs_physical = ratio(engine_rate, physical_rate);
    println!(
        "ratios: engine/ceiling = {}   engine/physical ceiling = {}   engine/naive = {}",
        vs_ceiling.map_or("-".into(), |r| format!("{r:.3}")),
        vs_physical.map_or("-".into(), |r| format!("{r:.3}")),
        vs_naive.map_or("-".into(), |r| format!("{r:.2}"))
    );
    if let Some(z) = &zipf_summary {
        println!("{z}");
    }
    if let Some(p) = &points_summary {
        println!("{p}");
    }
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

pub fn print_gateway(run: &gateway::GatewayRun, opts: gateway::GatewayOptions) {
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

/// A `[points]` section added to the built-in programme, for the points scenario: every rule
/// that costs work per event is on (category and tier multipliers, first-order and survey
/// bonuses, pending, rolling expiry).
const POINTS_SECTION: &str = r#"
[points]
cost_per_point_minor = 1
[points.earn]
per_currency_unit = 1.0
currency_unit_minor = 100
rounding = "down"
pending_days = 14
first_order_bonus = 500
survey_bonus = 50
referral_bonus = 1000
[points.earn.category_multipliers]
daily_goods = 2.0
[points.earn.tier_multipliers]
gold = 1.5
[points.expiry]
mode = "rolling"
months = 12
warn_days = 30
"#;

/// The drains of one side of an interleaved comparison: their rates and their costs.
#[derive(Debug, Default)]
struct Drains {
    rates: Vec<f64>,
    costs: Vec<Cost>,
}

impl Drains {
    fn mean(&self) -> f64 {
        self.rates.iter().sum::<f64>() / self.rates.len().max(1) as f64
    }

    /// A table row: the mean rate, and each drain's in the note.
    fn row(&self, scenario: &str, events: u64) -> Row {
        Row {
            scenario: scenario.to_owned(),
            events,
            seconds: 0.0,
            rate: self.mean(),
            latency: None,
            note: format!(
                "{} drains: {}",
                self.rates.len(),
                self.rates
                    .iter()
                    .map(|r| format!("{r:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// One side of an interleaved comparison: its label, extra engine settings and, for a skewed
/// mix, the Zipf exponent of its customers.
struct Side<'a> {
    label: &'a str,
    extra: &'a [(String, String)],
    zipf: Option<f64>,
}

/// Drains `events` events for each of the two sides in turn, `rounds` times. Returns each
/// side's drains and the errors of single drains.
async fn interleaved(
    ctx: &Ctx,
    stack: &Stack,
    scenario: &str,
    rounds: u32,
    events: u64,
    sides: [Side<'_>; 2],
) -> ([Drains; 2], Vec<String>) {
    let mut out = [Drains::default(), Drains::default()];
    let mut errors = Vec::new();
    for round in 1..=rounds.max(1) {
        for (side, drains) in sides.iter().zip(out.iter_mut()) {
            let label = side.label;
            eprintln!("kizuna-bench: {scenario}: round {round}, {label}…");
            match scenarios::drain_mix(ctx, label, events, side.extra, side.zipf).await {
                Ok((d, env)) => {
                    stack.drop_env(&env).await;
                    if !d.complete {
                        errors.push(format!(
                            "{scenario}: {label}: the backlog was not drained in time"
                        ));
                    }
                    eprintln!(
                        "kizuna-bench: {scenario}: {label}: {:.0} events/s; {}",
                        d.rate,
                        d.note()
                    );
                    drains.rates.push(d.rate);
                    drains.costs.extend(d.cost);
                }
                Err(e) => errors.push(format!("{scenario}: {label}: {e:#}")),
            }
        }
    }
    (out, errors)
}

/// Drains the same number of events with uniform and with Zipf-distributed customers,
/// `zipf_rounds` times, interleaved.
async fn zipf(ctx: &Ctx, stack: &Stack, args: &Args) -> ([Drains; 2], Vec<String>) {
    let sides = [
        Side {
            label: "uniform",
            extra: &[],
            zipf: None,
        },
        Side {
            label: "zipf",
            extra: &[],
            zipf: Some(args.zipf_s),
        },
    ];
    interleaved(ctx, stack, "zipf", args.zipf_rounds, args.events, sides).await
}

/// Drains the same backlog without and with points, `points_rounds` times, interleaved.
async fn points(
    ctx: &Ctx,
    stack: &Stack,
    args: &Args,
) -> anyhow::Result<([Drains; 2], Vec<String>)> {
    let programme = format!(
        "{}{POINTS_SECTION}",
        include_str!("../../loyalty-engine/config/programme.toml")
    );
    kizuna::domain::programme::Programme::parse(&programme)
        .map_err(|e| anyhow::anyhow!("the points programme is invalid: {e}"))?;
    let file =
        std::env::temp_dir().join(format!("kizuna-bench-points-{}.toml", std::process::id()));
    std::fs::write(&file, &programme)?;
    let with = [(
        "KIZUNA_PROGRAMME_FILE".to_owned(),
        file.display().to_string(),
    )];
    let sides = [
        Side {
            label: "points-off",
            extra: &[],
            zipf: None,
        },
        Side {
            label: "points-on",
            extra: &with,
            zipf: None,
        },
    ];
    let runs = interleaved(ctx, stack, "points", args.points_rounds, args.events, sides).await;
    std::fs::remove_file(&file).ok();
    Ok(runs)
}
