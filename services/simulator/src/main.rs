//! `kizuna-sim`: produces realistic purchase, support-ticket and survey events to Kafka, keyed
//! by customer id, in the protobuf JSON mapping.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use clap::Parser;
use kizuna_proto::v1;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

mod model;

#[derive(Debug, Parser)]
#[command(
    name = "kizuna-sim",
    version,
    about = "Produce realistic Kizuna input events to Kafka"
)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KIZUNA_KAFKA__BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Number of simulated customers.
    #[arg(long, default_value_t = 20)]
    customers: u32,
    /// Total events to produce.
    #[arg(long, default_value_t = 200)]
    events: u64,
    /// Events per second; 0 means as fast as possible.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Seed for the random generator (same seed, same events).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Part of every event id; a new random one per run unless given, so separate runs never
    /// collide in Kizuna's event-id deduplication.
    #[arg(long)]
    run_id: Option<String>,
    /// Prefix of the customer ids.
    #[arg(long, default_value = "cust-")]
    customer_prefix: String,
    /// History the events are spread over, in days before now.
    #[arg(long, default_value_t = 180)]
    history_days: i64,
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
}

fn producer(brokers: &str) -> anyhow::Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .context("creating the Kafka producer")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let producer = producer(&args.brokers)?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let now = Utc::now();
    let start = now - chrono::Duration::days(args.history_days);
    let run = args
        .run_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..8].to_owned());
    let mut world = model::World::new(args.customers, &args.customer_prefix, &run, start, &mut rng);
    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    let started = Instant::now();
    let mut in_flight = Vec::new();
    for i in 0..args.events {
        let event = world.next_event(&mut rng, now);
        let (topic, key, payload) = match &event {
            v1::input_event::Event::Purchase(p) => (
                &args.purchases_topic,
                p.customer_id.clone(),
                serde_json::to_vec(p)?,
            ),
            v1::input_event::Event::SupportTicket(t) => (
                &args.tickets_topic,
                t.customer_id.clone(),
                serde_json::to_vec(t)?,
            ),
            v1::input_event::Event::SurveyResponse(s) => (
                &args.surveys_topic,
                s.customer_id.clone(),
                serde_json::to_vec(s)?,
            ),
        };
        let headers = OwnedHeaders::new().insert(Header {
            key: "content-type",
            value: Some(kizuna_proto::CONTENT_TYPE_JSON),
        });
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&payload)
            .headers(headers);
        in_flight.push(producer.send_result(record).map_err(|(e, _)| e)?);
        if in_flight.len() >= 1000 {
            for f in in_flight.drain(..) {
                f.await.context("delivery cancelled")?.map_err(|(e, _)| e)?;
            }
        }
        if let Some(interval) = interval {
            let due = started + interval.mul_f64((i + 1) as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
        }
        if (i + 1) % 1000 == 0 || i + 1 == args.events {
            eprint!("\rkizuna-sim: {} / {} events", i + 1, args.events);
        }
    }
    for f in in_flight {
        f.await.context("delivery cancelled")?.map_err(|(e, _)| e)?;
    }
    eprintln!();
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "kizuna-sim: produced {} events for {} customers in {elapsed:.1}s",
        args.events, args.customers
    );
    Ok(())
}
