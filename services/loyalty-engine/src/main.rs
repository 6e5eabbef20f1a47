//! `kizuna`: the loyalty engine and its operator commands.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::io::{BufRead, BufReader};

use chrono::{DateTime, Utc};
use kizuna::commands;
use kizuna::config::{Clock, Settings};
use kizuna::engine::batch::Processor;
use kizuna::inputs::validate::Limits;
use kizuna::startup::Application;
use kizuna::{kafka, store, telemetry};

/// jemalloc: less time in the allocator on the hot path than glibc's malloc, and less
/// fragmentation over a long run (memory stays flat).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "kizuna",
    version,
    about = "Kizuna, a real-time customer-loyalty engine"
)]
struct Cli {
    /// Configuration file (TOML), layered over the defaults and under KIZUNA_* variables.
    #[arg(long, short, env = "KIZUNA_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Which "now" to evaluate at: wall (production) or event-time (backfills, simulations:
    /// the largest event time seen). Overrides `clock` in the configuration.
    #[arg(long, global = true, value_enum)]
    clock: Option<Clock>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the engine (the default).
    Run,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage Kafka topics.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Print the effective configuration, secrets redacted.
    Config,
    /// Check the tier programme file and print it.
    CheckProgramme,
    /// Fit the churn model (BG/NBD, Pareto/NBD and MBG/NBD, one chosen by a time-split
    /// holdout; Gamma-Gamma) over all customers and store it as a new version with the evidence;
    /// refuses to store a fit that did not converge.
    FitModel {
        /// Fit as of this time (RFC 3339); default: the engine's clock.
        #[arg(long)]
        as_of: Option<DateTime<Utc>>,
        /// auto (fit all three, choose by holdout), or force one: bgnbd, pareto-nbd, mbgnbd.
        #[arg(long, default_value = "auto", value_parser = clap::builder::PossibleValuesParser::new(
            std::iter::once("auto").chain(kizuna::domain::model::ModelKind::ALL.map(|k| k.as_str()))
        ))]
        model: String,
        /// Holdout of the time split, in days (0: no split, the log-likelihood decides).
        #[arg(long, default_value_t = commands::fit_model::DEFAULT_HOLDOUT_DAYS)]
        holdout_days: u32,
    },
    /// Ingest InputEvent JSON lines (a file, or - for stdin) through the same pipeline.
    Backfill {
        /// The file, or - for standard input.
        file: String,
        /// Name of this source for resuming (default: the file name).
        #[arg(long)]
        source: Option<String>,
        /// Events per transaction.
        #[arg(long, default_value_t = 5000)]
        batch: usize,
        /// Update states only; publish no output events.
        #[arg(long)]
        no_outputs: bool,
        /// What "older than ledger.retention_days" is judged against: the newest event time of
        /// the input (backfill: old history loads with the default retention) or the wall
        /// clock, as the engine does.
        #[arg(long, value_enum, default_value_t)]
        retention_clock: commands::backfill::RetentionClock,
    },
    /// Write one CSV row of scores per customer to stdout.
    ExportScores {
        /// Score as of this time (RFC 3339); default: the engine's clock.
        #[arg(long)]
        as_of: Option<DateTime<Utc>>,
        /// Horizon of expected purchases and CLV (default: the programme's churn.horizon_days).
        #[arg(long)]
        horizon_days: Option<u32>,
    },
    /// Rebuild every customer from the event ledger under the current programme.
    Recompute {
        /// Customers per transaction.
        #[arg(long, default_value_t = 500)]
        batch: i64,
    },
    /// Erase one customer: every row about them, with a CustomerErased receipt on the privacy
    /// topic (README, "Privacy and security"). Prints the receipt as JSON.
    Erase {
        /// The customer id.
        customer_id: String,
    },
    /// Read a bearer token on stdin and print its SHA-256 as an `http.tokens` entry; the
    /// engine stores only the hash. E.g. `openssl rand -hex 32 | tee token | kizuna hash-token
    /// --name desk --role viewer`.
    HashToken {
        /// The token's name (a-z, 0-9, _ and -): what the audit records.
        #[arg(long, default_value = "desk")]
        name: String,
        /// The token's role.
        #[arg(long, value_enum, default_value_t = kizuna::config::access::Role::Viewer)]
        role: kizuna::config::access::Role,
    },
    /// Follow the output topics and print each event as one line.
    Watch {
        /// Start from the oldest retained event instead of now.
        #[arg(long)]
        from_beginning: bool,
        /// Also show the dead-letter topic.
        #[arg(long)]
        dead_letters: bool,
        /// Write this file once positioned (for scripts).
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create the input, output and dead-letter topics that do not exist yet; with
    /// `outputs.format = "confluent-protobuf"`, register the output schemas
    /// (`<topic>-value`, PROTOBUF) in the Schema Registry.
    Create,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    kizuna::startup::exit_code("kizuna", run(Cli::parse()).await)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Needs no configuration (nor a database): it only reads stdin.
    if let Some(Command::HashToken { name, role }) = &cli.command {
        return hash_token(name, *role);
    }
    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Some(clock) = cli.clock {
        settings.clock = clock;
    }
    let traces = telemetry::init_with_traces(
        settings.log.format,
        &settings.log.level,
        std::io::stderr,
        &settings.telemetry,
    )?;
    let result = command(cli.command.unwrap_or(Command::Run), settings).await;
    // The last spans are sent before the process exits.
    traces.shutdown().await;
    result
}

async fn command(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::HashToken { name, role } => hash_token(&name, role),
        Command::Run => {
            let app = Application::build(settings).await?;
            kizuna::startup::stop_on_shutdown_signal(app.stop_token());
            app.run_until_stopped().await
        }
        Command::Migrate => {
            let pool = store::pool(settings.database_url(), 2)?;
            store::migrate(&pool).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Topics {
            command: TopicsCommand::Create,
        } => {
            let created = kafka::create_topics(&settings.kafka).await?;
            if created.is_empty() {
                eprintln!("all topics exist");
            } else {
                eprintln!("created topics: {}", created.join(", "));
            }
            for (subject, id) in commands::schemas::register_outputs(&settings).await? {
                eprintln!("registered kizuna.v1 outputs.proto as {subject} (schema id {id})");
            }
            Ok(())
        }
        Command::Config => {
            print!("{}", settings.redacted_toml()?);
            Ok(())
        }
        Command::FitModel {
            as_of,
            model,
            holdout_days,
        } => {
            let model = match model.as_str() {
                "auto" => None,
                name => Some(name.parse::<kizuna::domain::model::ModelKind>()?),
            };
            let core = commands::open(&settings).await?;
            let as_of = core.clock.as_of(&core.pool, as_of).await?;
            let options = commands::fit_model::FitModelOptions {
                model,
                holdout_days,
            };
            let outcome =
                commands::fit_model::run(&core.pool, &core.programme, as_of, options).await?;
            eprintln!(
                "{}\nstored as model version {}",
                outcome.report, outcome.version
            );
            Ok(())
        }
        Command::Backfill {
            file,
            source,
            batch,
            no_outputs,
            retention_clock,
        } => {
            let options = commands::backfill::BackfillOptions {
                source: source.unwrap_or_default(),
                batch: batch.max(1),
                partitions: settings.kafka.partitions,
                retention_clock,
                newest: None,
            };
            backfill(&settings, &file, options, !no_outputs).await
        }
        Command::ExportScores {
            as_of,
            horizon_days,
        } => {
            let core = commands::open(&settings).await?;
            let model = core.model.get();
            if model.is_none() {
                eprintln!(
                    "no churn model fitted yet (kizuna fit-model): p_alive, expected_purchases and clv stay empty"
                );
            }
            let as_of = core.clock.as_of(&core.pool, as_of).await?;
            let stdout = std::io::stdout().lock();
            let rows = commands::export_scores::run(
                &core.pool,
                &core.programme,
                model.as_deref(),
                as_of,
                horizon_days,
                stdout,
            )
            .await?;
            eprintln!("exported {rows} customers as of {as_of}");
            Ok(())
        }
        Command::Recompute { batch } => {
            let core = commands::open(&settings).await?;
            let report = commands::recompute::run(&core, batch).await?;
            eprintln!(
                "recomputed {} customers: {} tier changes, {} with different points, {} output events queued (the running engine publishes them)",
                report.customers, report.changed_tiers, report.changed_points, report.outputs
            );
            Ok(())
        }
        Command::Erase { customer_id } => {
            let id =
                kizuna::domain::ids::CustomerId::parse(&customer_id, settings.ingest.max_id_len)
                    .map_err(|e| anyhow::anyhow!("not a customer id: {e}"))?;
            let core = commands::open(&settings).await?;
            let receipt =
                kizuna::engine::erasure::erase(&core, id.as_str(), chrono::Utc::now()).await?;
            let Some(receipt) = receipt else {
                anyhow::bail!(
                    "no customer {customer_id} is known, nor was one erased: nothing done"
                );
            };
            // The receipt as published (the protobuf JSON mapping).
            println!("{}", serde_json::to_string_pretty(&receipt.to_proto())?);
            eprintln!(
                "erased: {} ledger events, {} output log entries, {} outbox messages, {} other rows; {} records of other customers kept under a pseudonym; the receipt is queued for {}",
                receipt.deleted.ledger_events,
                receipt.deleted.output_log_entries,
                receipt.outbox_messages,
                receipt.deleted.other_rows,
                receipt.pseudonymised,
                core.topics.privacy
            );
            Ok(())
        }
        Command::Watch {
            from_beginning,
            dead_letters,
            ready_file,
        } => {
            let stop = tokio_util::sync::CancellationToken::new();
            let on_signal = stop.clone();
            tokio::spawn(async move {
                kizuna::startup::shutdown_signal().await;
                on_signal.cancel();
            });
            let options = kizuna::watch::WatchOptions {
                from_beginning,
                dead_letters,
                ready_file,
            };
            kizuna::watch::watch(&settings.kafka, options, stop).await
        }
        Command::CheckProgramme => {
            let programme = settings.load_programme()?;
            print!(
                "{}",
                toml::to_string_pretty(&programme).context("printing the programme")?
            );
            Ok(())
        }
    }
}

async fn backfill(
    settings: &Settings,
    file: &str,
    mut options: commands::backfill::BackfillOptions,
    publish: bool,
) -> anyhow::Result<()> {
    let core = commands::open(settings).await?;
    let limits = Limits::new(settings, &core.programme);
    let processor = Processor { core, publish };
    let (reader, total, name): (Box<dyn BufRead>, Option<u64>, String) = if file == "-" {
        (
            Box::new(BufReader::new(std::io::stdin())),
            None,
            "stdin".to_owned(),
        )
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("opening {file}"))?;
        let total = f.metadata().ok().map(|m| m.len());
        let name = std::path::Path::new(file)
            .file_name()
            .map_or_else(|| file.to_owned(), |n| n.to_string_lossy().into_owned());
        if options.retention_clock == commands::backfill::RetentionClock::Backfill
            && limits.max_age.is_some()
        {
            // A first read: the backfill's clock is the newest event time of the whole file.
            let first = std::fs::File::open(file).with_context(|| format!("opening {file}"))?;
            options.newest = commands::backfill::newest_event_time(&limits, BufReader::new(first))?;
        }
        (Box::new(BufReader::new(f)), total, name)
    };
    if options.source.is_empty() {
        options.source = name;
    }
    let started = std::time::Instant::now();
    let report = commands::backfill::run(&processor, &limits, reader, total, &options).await?;
    let elapsed = started.elapsed().as_secs_f64();
    for (line, rejection) in report.bad.iter().take(50) {
        let detail: String = rejection.detail.chars().take(240).collect();
        eprintln!("line {line}: {}: {detail}", rejection.reason);
    }
    if report.bad.len() > 50 {
        eprintln!("… and {} more bad lines", report.bad.len() - 50);
    }
    eprintln!(
        "backfill {}: {} lines, {} events applied, {} duplicates, {} already applied by an earlier run, {} bad lines skipped, {} output events",
        options.source,
        report.lines,
        report.applied,
        report.duplicates,
        report.already_done,
        report.bad.len(),
        report.outputs
    );
    let stages: Vec<String> = processor
        .core
        .metrics
        .stage_totals()
        .into_iter()
        .map(|(stage, secs)| format!("{stage} {secs:.2}s"))
        .collect();
    eprintln!(
        "{:.0} events/s over {elapsed:.1}s; time by stage: {}",
        report.applied as f64 / elapsed.max(1e-9),
        stages.join(", ")
    );
    Ok(())
}

/// `kizuna hash-token`: the token on stdin (its first line) as an `http.tokens` table.
fn hash_token(name: &str, role: kizuna::config::access::Role) -> anyhow::Result<()> {
    use kizuna::config::access::valid_token_name;
    if !valid_token_name(name) {
        anyhow::bail!("a token name is 1 to 64 of a-z, 0-9, _ and -");
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the token on stdin")?;
    let token = line.trim_end_matches(['\n', '\r']);
    if token.chars().count() < 16 {
        anyhow::bail!(
            "give a token of at least 16 characters on stdin (e.g. openssl rand -hex 32)"
        );
    }
    println!(
        "[http.tokens.{name}]\nrole = \"{}\"\nsha256 = \"{}\"",
        role.as_str(),
        kizuna::http::auth::hash_token(token)
    );
    Ok(())
}
