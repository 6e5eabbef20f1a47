//! `kizuna-sim`: simulates a shop's customers and produces their purchase, support-ticket and
//! survey events to Kafka (keyed by customer id, protobuf JSON mapping), or writes them as
//! `kizuna.v1.InputEvent` JSON lines for `kizuna backfill`.

use std::fs::File;
use std::io::{BufWriter, Write};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Parser;
use kizuna_simulator::calendar::{DAY, rfc3339};
use kizuna_simulator::persona::Mix;
use kizuna_simulator::run::{self, RunOptions, Summary};
use kizuna_simulator::sink::{JsonlSink, KafkaSink, Sink, Topics};
use kizuna_simulator::truth;
use kizuna_simulator::world::{World, WorldConfig};

/// Events per second sent to Kafka when `--rate` is not given.
const DEFAULT_KAFKA_RATE: f64 = 50.0;

#[derive(Debug, Parser)]
#[command(
    name = "kizuna-sim",
    version,
    about = "Simulate a shop's customers and produce their events to Kafka, or write them as JSON lines",
    long_about = "Simulate a shop's customers and produce their events to Kafka, or write them as JSON lines.\n\n\
        Each customer follows a persona (truly_loyal, high_value_not_loyal, price_driven, \
        programme_driven, angel, hostage, rebel, quiet_churner) over --history-days of history \
        ending at --end. Events come out in time order, with their real occurredAt times."
)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KIZUNA_KAFKA__BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Number of simulated customers.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    customers: u32,
    /// Stop after this many events (the earliest ones); 0 sends the whole history.
    #[arg(long, default_value_t = 0)]
    events: u64,
    /// Events per second; 0 means as fast as possible. Default: 50 to Kafka, 0 with --output.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// Seed for the random generator (same seed, same customers and events).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Part of every event, order and ticket id; a new random one per run unless given, so
    /// separate runs never collide in Kizuna's event-id deduplication.
    #[arg(long)]
    run_id: Option<String>,
    /// Prefix of the customer ids.
    #[arg(long, default_value = "cust-")]
    customer_prefix: String,
    /// Days of history simulated, ending at --end.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(i64).range(1..=36_500))]
    history_days: i64,
    /// End of the simulated history (RFC 3339); default: now.
    #[arg(long, value_parser = parse_end)]
    end: Option<DateTime<Utc>>,
    /// Persona weights replacing the default mix, e.g. `hostage=1,truly_loyal=2`.
    #[arg(long, value_name = "NAME=WEIGHT,...")]
    personas: Option<Mix>,
    /// Write `kizuna.v1.InputEvent` JSON lines to FILE (`-`: stdout) instead of Kafka.
    #[arg(long, value_name = "FILE")]
    output: Option<String>,
    /// Write the ground truth CSV `customer_id,persona,churned_at` to FILE (`-`: stdout) at
    /// the end: every customer seen in the stream, `churned_at` empty for those still active.
    #[arg(long, value_name = "FILE")]
    ground_truth: Option<String>,
    #[arg(
        long,
        env = "KIZUNA_KAFKA__TOPICS__PURCHASES",
        default_value = "purchases"
    )]
    purchases_topic: String,
    #[arg(
        long,
        env = "KIZUNA_KAFKA__TOPICS__SUPPORT_TICKETS",
        default_value = "support-tickets"
    )]
    tickets_topic: String,
    #[arg(long, env = "KIZUNA_KAFKA__TOPICS__SURVEYS", default_value = "surveys")]
    surveys_topic: String,
    /// Put before each topic name, as the engine's `kafka.topic_prefix` does (the demo gives
    /// every run its own topics this way).
    #[arg(long, env = "KIZUNA_KAFKA__TOPIC_PREFIX", default_value = "")]
    topic_prefix: String,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a number of events per second >= 0")),
    }
}

fn parse_end(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))
}

fn report(summary: &Summary, world: &World, customers: u32, events_cap: u64) {
    eprintln!(
        "kizuna-sim: {} events ({} purchases, {} refunds, {} ticket updates, {} survey answers) \
         for {customers} customers in {:.2}s ({:.0} events/s)",
        summary.events,
        summary.purchases,
        summary.refunds,
        summary.ticket_updates,
        summary.survey_answers,
        summary.elapsed.as_secs_f64(),
        summary.events_per_second(),
    );
    let span = match (summary.first_at, summary.last_at) {
        (Some(a), Some(b)) => format!("{} .. {}", rfc3339(a), rfc3339(b)),
        _ => "no events".to_owned(),
    };
    if summary.complete {
        eprintln!(
            "kizuna-sim: the whole history {} .. {} was sent (events {span})",
            rfc3339(world.start()),
            rfc3339(world.end())
        );
    } else {
        eprintln!(
            "kizuna-sim: stopped at --events {events_cap}, before the end of the history \
             (events {span}; the history ends {}); raise --events or use 0 for all of it",
            rfc3339(world.end())
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.output.is_some() && args.output == args.ground_truth {
        bail!("--output and --ground-truth must not be the same file");
    }
    let now = Utc::now();
    let end = args.end.unwrap_or(now).timestamp();
    if end > now.timestamp() + 3_600 {
        eprintln!(
            "kizuna-sim: warning: --end is in the future; the engine refuses events dated \
             more than its allowed clock skew ahead of now"
        );
    }
    let run_id = args
        .run_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..8].to_owned());
    let config = WorldConfig {
        seed: args.seed,
        customers: args.customers,
        customer_prefix: args.customer_prefix.clone(),
        run: run_id,
        start: end - args.history_days * DAY,
        end,
        mix: args.personas.clone().unwrap_or_default(),
    };
    // Open the ground-truth file first, so a bad path fails before any event is sent.
    let truth_out: Option<Box<dyn Write>> = match args.ground_truth.as_deref() {
        None => None,
        Some("-") => Some(Box::new(std::io::stdout())),
        Some(p) => Some(Box::new(
            File::create(p).with_context(|| format!("creating {p}"))?,
        )),
    };
    let (mut sink, rate) = match &args.output {
        Some(path) => (
            Sink::Jsonl(JsonlSink::create(path)?),
            args.rate.unwrap_or(0.0),
        ),
        None => {
            let topics = Topics {
                purchases: format!("{}{}", args.topic_prefix, args.purchases_topic),
                tickets: format!("{}{}", args.topic_prefix, args.tickets_topic),
                surveys: format!("{}{}", args.topic_prefix, args.surveys_topic),
            };
            let sink = Sink::Kafka(KafkaSink::new(&args.brokers, topics)?);
            (sink, args.rate.unwrap_or(DEFAULT_KAFKA_RATE))
        }
    };
    eprintln!(
        "kizuna-sim: run {}, seed {}, {} customers ({}), history {} .. {}",
        config.run,
        config.seed,
        config.customers,
        config.mix,
        rfc3339(config.start),
        rfc3339(config.end),
    );
    let mut world = World::new(&config);
    let options = RunOptions {
        max_events: args.events,
        rate,
        progress: true,
    };
    let summary = run::run(&mut world, &mut sink, options).await?;
    if let (Some(out), Some(path)) = (truth_out, &args.ground_truth) {
        let rows = world.truth(summary.as_of(&world));
        let mut out = BufWriter::new(out);
        truth::write_csv(&rows, &mut out)
            .and_then(|()| out.flush())
            .with_context(|| format!("writing {path}"))?;
    }
    report(&summary, &world, args.customers, args.events);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_cli_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn flags_parse() {
        let args = Args::try_parse_from([
            "kizuna-sim",
            "--output",
            "-",
            "--personas",
            "hostage=1,truly_loyal=2",
            "--end",
            "2026-01-01T00:00:00+09:00",
            "--rate",
            "0",
        ])
        .expect("args");
        assert_eq!(args.output.as_deref(), Some("-"));
        assert_eq!(args.rate, Some(0.0));
        assert_eq!(args.history_days, 365);
        assert_eq!(
            args.end.map(|e| e.timestamp()),
            Some(1_767_193_200),
            "2025-12-31T15:00:00Z"
        );
        assert!(Args::try_parse_from(["kizuna-sim", "--personas", "vip=1"]).is_err());
        assert!(Args::try_parse_from(["kizuna-sim", "--rate", "-1"]).is_err());
        assert!(Args::try_parse_from(["kizuna-sim", "--customers", "0"]).is_err());
        assert!(Args::try_parse_from(["kizuna-sim", "--end", "yesterday"]).is_err());
    }
}
