//! The database ceiling: the engine's writes per batch, as the engine's own statements
//! (`kizuna::store::sql`), with no Kafka and no logic. The rows are sampled from a real engine
//! run and built before the clock starts; only the database work is timed.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use kizuna::store::customers::NO_ROW;
use kizuna::store::outbox::{Bundles, OutboxMessage};
use kizuna::store::sql;
use kizuna_testkit::Rng;
use rand::Rng as _;
use sqlx::Connection;

use super::Ctx;
use crate::env::BenchEnv;
use crate::workload::Input;

/// Samples of what the engine wrote, for the ceiling, as stored.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// `customers.state`
    pub states: Vec<Vec<u8>>,
    /// `event_ledger.body` by kind (`purchase`, `ticket`, `survey`, …).
    pub bodies: HashMap<String, Vec<Vec<u8>>>,
    /// (ce_type, `output_log.payload`)
    pub outputs: Vec<(String, serde_json::Value)>,
    /// Output events per input event in the throughput run.
    pub output_share: f64,
}

/// Samples the states, ledger bodies and outputs an engine run wrote, as stored.
pub async fn sample(env: &BenchEnv, events: u64) -> anyhow::Result<Samples> {
    let pool = env.pool().await?;
    let mut states: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT state FROM customers TABLESAMPLE SYSTEM (5) LIMIT 1000")
            .fetch_all(&pool)
            .await?;
    if states.is_empty() {
        states = sqlx::query_scalar("SELECT state FROM customers LIMIT 1000")
            .fetch_all(&pool)
            .await?;
    }
    let rows: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT kind, body FROM event_ledger TABLESAMPLE SYSTEM (5) LIMIT 3000")
            .fetch_all(&pool)
            .await?;
    let mut bodies: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for (kind, body) in rows {
        bodies.entry(kind).or_default().push(body);
    }
    let outputs: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT ce_type, payload FROM output_log LIMIT 1000")
            .fetch_all(&pool)
            .await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM output_log")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    if states.is_empty() || bodies.is_empty() {
        bail!("the throughput run left no customers or ledger rows to sample");
    }
    Ok(Samples {
        states,
        bodies,
        outputs,
        output_share: total as f64 / events.max(1) as f64,
    })
}

/// What the ceiling measured.
#[derive(Debug, Clone)]
pub struct Ceiling {
    pub events: u64,
    pub seconds: f64,
    pub rate: f64,
    pub transactions: usize,
    pub customer_rows: usize,
    pub outbox_rows: usize,
    pub state_bytes: usize,
}

/// The parameters of `sql::LEDGER_INSERT`.
#[derive(Default)]
struct LedgerRows<'a> {
    customers: Vec<String>,
    events: Vec<String>,
    times: Vec<DateTime<Utc>>,
    kinds: Vec<&'static str>,
    referrers: Vec<Option<String>>,
    bodies: Vec<&'a [u8]>,
    sources: Vec<String>,
}

/// The parameters of `sql::CUSTOMERS_UPSERT`.
#[derive(Default)]
struct CustomerRows<'a> {
    ids: Vec<String>,
    tiers: Vec<&'static str>,
    spend: Vec<i64>,
    orders: Vec<f64>,
    partitions: Vec<i32>,
    states: Vec<&'a [u8]>,
    segments: Vec<Option<&'static str>>,
    next_checks: Vec<Option<DateTime<Utc>>>,
    churn: Vec<Option<&'static str>>,
    versions: Vec<i64>,
    plays: Vec<Option<&'static str>>,
    at_risk: Vec<Option<f64>>,
}

/// The parameters of `sql::OUTBOX_INSERT` and `sql::OUTPUT_LOG_INSERT`.
#[derive(Default)]
struct OutputRows<'a> {
    /// The outbox rows: one bundle per partition.
    bundles: Bundles,
    log_ids: Vec<uuid::Uuid>,
    log_customers: Vec<String>,
    log_types: Vec<&'a str>,
    log_causes: Vec<String>,
    log_times: Vec<DateTime<Utc>>,
    log_payloads: Vec<&'a serde_json::Value>,
}

/// One pre-built transaction of the ceiling.
struct CeilingBatch<'a> {
    ledger: LedgerRows<'a>,
    customers: CustomerRows<'a>,
    outputs: OutputRows<'a>,
    /// Next offsets of every (topic, partition) after the batch.
    offsets: Vec<i64>,
}

/// The engine's writes of a batch, with no Kafka and no logic: per transaction of `batch`
/// events, the ledger insert (bodies sampled from the engine's run), the upsert of the distinct
/// customers (states sampled, each row over its previous version), the outbox insert with its
/// notification and the output-log insert (the share of outputs the engine produced), and the
/// offsets update: the statements the engine runs, from `kizuna::store::sql`.
pub async fn ceiling(
    ctx: &Ctx,
    n: u64,
    batch: usize,
    samples: &Samples,
    partitions: i32,
) -> anyhow::Result<Ceiling> {
    let env = ctx
        .stack
        .env(
            "ceiling",
            false,
            ctx.kizuna.exists().then_some(ctx.kizuna.as_path()),
        )
        .await?;
    let result = ceiling_in(ctx, &env, n, batch, samples, partitions).await;
    ctx.stack.drop_env(&env).await;
    result
}

const TOPIC_NAMES: [&str; 3] = ["purchases", "support-tickets", "surveys"];

/// Builds the transactions' rows.
fn build<'a>(
    ctx: &Ctx,
    env: &BenchEnv,
    n: u64,
    batch: usize,
    samples: &'a Samples,
    output_payloads: &'a [(String, serde_json::Value, Vec<u8>)],
    partitions: i32,
) -> anyhow::Result<Vec<CeilingBatch<'a>>> {
    let mut rng = Rng::new(ctx.seed ^ 0xCE11);
    let now = Utc::now();
    let mut workload = ctx.backlog(&env.id, now);
    let fallback_body: &'a [Vec<u8>] = samples.bodies.values().next().map_or(&[], Vec::as_slice);
    let body_of = |input: Input| -> (&'static str, &'a [Vec<u8>]) {
        let kind = match input {
            Input::Purchases => "purchase",
            Input::Tickets => "ticket",
            Input::Surveys => "survey",
        };
        let v = samples
            .bodies
            .get(kind)
            .filter(|v| !v.is_empty())
            .map_or(fallback_body, Vec::as_slice);
        (kind, v)
    };
    let parts = partitions.max(1);
    let mut offsets = vec![0i64; TOPIC_NAMES.len() * usize::try_from(parts)?];
    let mut versions: HashMap<String, i64> = HashMap::new();
    let mut batches = Vec::new();
    let mut remaining = n;
    let mut outbox_carry = 0.0;
    while remaining > 0 {
        let size = remaining.min(batch as u64) as usize;
        remaining -= size as u64;
        let mut ledger = LedgerRows::default();
        let mut customers = CustomerRows::default();
        let mut seen = HashSet::new();
        for i in 0..size {
            let msg = workload.next_msg();
            let partition = rng.random_range(0..parts);
            let slot = msg.input as usize * usize::try_from(parts)? + usize::try_from(partition)?;
            let (kind, bodies) = body_of(msg.input);
            ledger.customers.push(msg.key.clone());
            ledger
                .events
                .push(format!("ce-{}-{}-{i}", env.id, batches.len()));
            ledger.times.push(now);
            ledger.kinds.push(kind);
            ledger.referrers.push(None);
            ledger
                .bodies
                .push(bodies[rng.random_range(0..bodies.len().max(1))].as_slice());
            ledger.sources.push(format!(
                "{}/{partition}/{}",
                TOPIC_NAMES[msg.input as usize], offsets[slot]
            ));
            offsets[slot] += 1;
            if seen.insert(msg.key.clone()) {
                let state = &samples.states[rng.random_range(0..samples.states.len().max(1))];
                let version = versions.entry(msg.key.clone()).or_insert(NO_ROW);
                *version += 1;
                customers.ids.push(msg.key);
                customers.tiers.push("member");
                let spend = rng.random_range(1_000..200_000);
                customers.spend.push(spend);
                customers.orders.push(f64::from(rng.random_range(1..10)));
                customers.partitions.push(partition);
                customers.states.push(state.as_slice());
                customers.segments.push(Some("neutral"));
                customers
                    .next_checks
                    .push(Some(now + chrono::Duration::days(7)));
                customers.churn.push(Some("low"));
                customers.versions.push(*version);
                customers.plays.push(Some("nurture"));
                customers.at_risk.push(Some(spend as f64 * 0.05));
            }
        }
        outbox_carry += samples.output_share * size as f64;
        let outs = outbox_carry.floor() as usize;
        outbox_carry -= outs as f64;
        let mut outputs = OutputRows::default();
        let mut messages = Vec::with_capacity(outs);
        for j in 0..outs {
            let (ce_type, json, bytes) = &output_payloads[j % output_payloads.len()];
            let customer = customers.ids[j % customers.ids.len().max(1)].clone();
            let ce_id = uuid::Uuid::new_v4();
            let header = |k: &str, v: &str| (k.to_owned(), v.as_bytes().to_vec());
            messages.push(OutboxMessage {
                ce_id: ce_id.to_string(),
                partition: rng.random_range(0..parts),
                customer_id: Some(customer.clone()),
                topic: "loyalty.segment-changed".to_owned(),
                key: Some(customer.clone().into_bytes()),
                payload: bytes.clone(),
                headers: vec![
                    header("ce_specversion", "1.0"),
                    header("ce_id", &ce_id.to_string()),
                    header("ce_type", ce_type),
                    header("ce_source", "kizuna/loyalty-engine"),
                    header("ce_subject", &customer),
                    header("ce_time", &now.to_rfc3339()),
                    header("content-type", "application/json"),
                ],
            });
            outputs.log_ids.push(ce_id);
            outputs.log_customers.push(customer);
            outputs.log_types.push(ce_type.as_str());
            outputs
                .log_causes
                .push(format!("ce-{}-{}-{j}", env.id, batches.len()));
            outputs.log_times.push(now);
            outputs.log_payloads.push(json);
        }
        outputs.bundles = Bundles::of(&messages);
        batches.push(CeilingBatch {
            ledger,
            customers,
            outputs,
            offsets: offsets.clone(),
        });
    }
    Ok(batches)
}

/// One batch's writes, in the engine's order.
async fn write(
    tx: &mut sqlx::PgConnection,
    b: &CeilingBatch<'_>,
    group: &str,
    topics: &[&str],
    parts: &[i32],
) -> anyhow::Result<()> {
    let l = &b.ledger;
    sqlx::query(sql::LEDGER_INSERT)
        .bind(&l.customers)
        .bind(&l.events)
        .bind(&l.times)
        .bind(&l.kinds)
        .bind(&l.referrers)
        .bind(&l.bodies)
        .bind(&l.sources)
        .fetch_all(&mut *tx)
        .await
        .context("ceiling: ledger insert")?;
    let c = &b.customers;
    let written = sqlx::query(sql::CUSTOMERS_UPSERT)
        .bind(&c.ids)
        .bind(&c.tiers)
        .bind(&c.spend)
        .bind(&c.orders)
        .bind(&c.partitions)
        .bind(&c.states)
        .bind(&c.segments)
        .bind(&c.next_checks)
        .bind(&c.churn)
        .bind(&c.versions)
        .bind(&c.plays)
        .bind(&c.at_risk)
        // The points columns: zero, no expiring lots (the engine without `[points]`).
        .bind(vec![0i64; c.ids.len()])
        .bind(vec![0i64; c.ids.len()])
        .bind(vec![0i64; c.ids.len()])
        .bind(vec![None::<String>; c.ids.len()])
        .fetch_all(&mut *tx)
        .await
        .context("ceiling: customers upsert")?;
    if written.len() != c.ids.len() {
        bail!(
            "ceiling: {} of {} customer rows written (versions out of step)",
            written.len(),
            c.ids.len()
        );
    }
    let o = &b.outputs;
    if !o.bundles.is_empty() {
        o.bundles
            .insert(&mut *tx, "kizuna_bench_ceiling")
            .await
            .context("ceiling: outbox insert")?;
        sqlx::query(sql::OUTPUT_LOG_INSERT)
            .bind(&o.log_customers)
            .bind(&o.log_ids)
            .bind(&o.log_types)
            .bind(&o.log_causes)
            .bind(&o.log_times)
            .bind(&o.log_payloads)
            .execute(&mut *tx)
            .await
            .context("ceiling: output log insert")?;
    }
    sqlx::query(sql::OFFSETS_ADVANCE)
        .bind(group)
        .bind(topics)
        .bind(parts)
        .bind(&b.offsets)
        .execute(&mut *tx)
        .await
        .context("ceiling: offsets update")?;
    Ok(())
}

async fn ceiling_in(
    ctx: &Ctx,
    env: &BenchEnv,
    n: u64,
    batch: usize,
    samples: &Samples,
    partitions: i32,
) -> anyhow::Result<Ceiling> {
    let mut outputs: Vec<(String, serde_json::Value)> = samples.outputs.clone();
    if outputs.is_empty() {
        outputs.push((
            "kizuna.v1.TierChanged".to_owned(),
            serde_json::json!({"customerId": "x", "previousTier": "member", "newTier": "silver"}),
        ));
    }
    let output_payloads: Vec<(String, serde_json::Value, Vec<u8>)> = outputs
        .into_iter()
        .map(|(t, v)| {
            let bytes = serde_json::to_vec(&v)?;
            Ok((t, v, bytes))
        })
        .collect::<anyhow::Result<_>>()?;
    let batches = build(ctx, env, n, batch, samples, &output_payloads, partitions)?;
    let customer_rows: usize = batches.iter().map(|b| b.customers.ids.len()).sum();
    let outbox_rows: usize = batches.iter().map(|b| b.outputs.bundles.messages()).sum();
    let state_bytes: usize = batches
        .iter()
        .flat_map(|b| b.customers.states.iter())
        .map(|s| s.len())
        .sum();

    let mut conn = sqlx::PgConnection::connect(&env.database_url).await?;
    // A stuck statement fails the scenario instead of stalling the whole run.
    sqlx::query("SET statement_timeout = '300s'")
        .execute(&mut conn)
        .await?;
    let group = "ceiling";
    let mut topics = Vec::new();
    let mut parts = Vec::new();
    for t in TOPIC_NAMES {
        for p in 0..partitions.max(1) {
            topics.push(t);
            parts.push(p);
        }
    }
    // The offset rows exist before the clock starts, as they do in a running engine.
    sqlx::query(sql::OFFSETS_LOCK)
        .bind(group)
        .bind(&topics)
        .bind(&parts)
        .fetch_all(&mut conn)
        .await?;
    eprintln!(
        "kizuna-bench: ceiling: {} transactions of up to {batch} events pre-built; writing…",
        batches.len()
    );
    let started = Instant::now();
    for b in &batches {
        let mut tx = conn.begin().await?;
        write(&mut tx, b, group, &topics, &parts).await?;
        tx.commit().await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    conn.close().await.ok();
    Ok(Ceiling {
        events: n,
        seconds,
        rate: n as f64 / seconds.max(1e-9),
        transactions: batches.len(),
        customer_rows,
        outbox_rows,
        state_bytes: state_bytes / customer_rows.max(1),
    })
}
