//! The engine scenarios: sustained throughput, the naive baseline, latency at fixed offered
//! rates, memory over a long run; and the database ceiling without the engine.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};

use crate::engine::Engine;
use crate::env::{BenchEnv, Stack};
use crate::produce::{self, Arrival};
use crate::report::Latency;
use crate::workload::{Dating, Input, Workload};

/// What every scenario needs.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub stack: Stack,
    pub kizuna: PathBuf,
    pub log_dir: PathBuf,
    pub seed: u64,
    pub customers: u32,
    /// Days of history the pre-loaded events are spread over.
    pub history_days: i64,
    pub marker_share: f64,
    pub drain_timeout: Duration,
    /// Extra `KIZUNA_…` variables for every engine started.
    pub engine_env: Vec<(String, String)>,
    /// The offered rate before a latency measurement starts.
    pub latency_warm_up: Duration,
}

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
    pub outputs: i64,
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
            self.outputs as f64 * 100.0 / self.events.max(1) as f64
        );
        if self.dead_lettered > 0.0 {
            note.push_str(&format!("; {} DEAD-LETTERED", self.dead_lettered));
        }
        if !self.complete {
            note.push_str("; INCOMPLETE (drain timeout)");
        }
        note
    }
}

/// Samples of what the engine wrote, for the ceiling: the stored bytes of each column
/// (`bytea` as is, other types as their text form).
#[derive(Debug, Clone, Default)]
pub struct Samples {
    pub states: Vec<Vec<u8>>,
    /// Ledger bodies by kind (`purchase`, `ticket`, `survey`, …).
    pub bodies: HashMap<String, Vec<Vec<u8>>>,
    /// (ce_type, output-log payload)
    pub outputs: Vec<(String, Vec<u8>)>,
    /// Output events per input event in the throughput run.
    pub output_share: f64,
}

/// The SQL type of a column, e.g. `jsonb` or `bytea`.
async fn col_type(pool: &sqlx::PgPool, table: &str, column: &str) -> anyhow::Result<String> {
    let ty: String = sqlx::query_scalar(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2",
    )
    .bind(table)
    .bind(column)
    .fetch_one(pool)
    .await
    .with_context(|| format!("type of {table}.{column}"))?;
    Ok(ty)
}

/// Rows of `(label, column)` as stored bytes; `sql` has `{col}` where the column goes.
async fn sample_bytes(
    pool: &sqlx::PgPool,
    ty: &str,
    sql: &str,
    col: &str,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    Ok(if ty == "bytea" {
        sqlx::query_as::<_, (String, Vec<u8>)>(&sql.replace("{col}", col))
            .fetch_all(pool)
            .await?
    } else {
        sqlx::query_as::<_, (String, String)>(&sql.replace("{col}", &format!("{col}::text")))
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|(l, v)| (l, v.into_bytes()))
            .collect()
    })
}

/// A column of one statement, bound as `bytea[]` or as `text[]` cast to its type.
enum Col<'a> {
    Bytes(Vec<&'a [u8]>),
    Text(Vec<&'a str>),
}

impl<'a> Col<'a> {
    fn new(ty: &str) -> Self {
        if ty == "bytea" {
            Col::Bytes(Vec::new())
        } else {
            Col::Text(Vec::new())
        }
    }

    fn push(&mut self, v: &'a [u8]) {
        match self {
            Col::Bytes(x) => x.push(v),
            Col::Text(x) => x.push(std::str::from_utf8(v).unwrap_or("{}")),
        }
    }

    /// `$n` with the cast the column needs.
    fn param(&self, n: usize, ty: &str) -> String {
        match self {
            Col::Bytes(_) => format!("${n}::bytea[]"),
            Col::Text(_) => format!("${n}::text[]::{ty}[]"),
        }
    }

    fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        match self {
            Col::Bytes(v) => q.bind(v),
            Col::Text(v) => q.bind(v),
        }
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
    let env = ctx.stack.env(name, true, Some(&ctx.kizuna)).await?;
    eprintln!(
        "kizuna-bench: {name}: pre-loading {n} events into {}…",
        env.topics.purchases
    );
    let produce_seconds = {
        let env = env.clone();
        let mut workload = Workload::new(
            ctx.seed,
            &env.id,
            ctx.customers,
            0.0,
            Dating::Recent {
                now: Utc::now(),
                days: ctx.history_days,
            },
        );
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
        engine.pid,
        engine.log.display()
    );
    let target = i64::try_from(n)?;
    let mut first: Option<(Instant, i64)> = None;
    let mut last_print = Instant::now();
    let mut done: Option<Instant> = None;
    let mut applied = 0;
    while engine.spawned.elapsed() < ctx.drain_timeout {
        engine.check_alive()?;
        applied = env.applied(&pool).await?;
        let now = Instant::now();
        if applied > 0 && first.is_none() {
            first = Some((now, applied));
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
    let metrics = engine.metrics().await.unwrap_or(crate::engine::Metrics {
        text: String::new(),
    });
    let from_spawn_seconds = (end - engine.spawned).as_secs_f64();
    engine.stop(Duration::from_secs(10));
    let outputs: i64 = sqlx::query_scalar("SELECT count(*) FROM output_log")
        .fetch_one(&pool)
        .await?;
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
        applied: metrics.sum("kizuna_events_consumed_total", &["outcome=\"applied\""]),
        dead_lettered: metrics.sum(
            "kizuna_events_consumed_total",
            &["outcome=\"dead_lettered\""],
        ),
        outputs,
        complete: done.is_some(),
    };
    Ok((drain, env))
}

/// Samples the states, ledger bodies and outputs an engine run wrote, as stored.
pub async fn sample(env: &BenchEnv, events: u64) -> anyhow::Result<Samples> {
    let pool = env.pool().await?;
    let st = col_type(&pool, "customers", "state").await?;
    let bt = col_type(&pool, "event_ledger", "body").await?;
    let pt = col_type(&pool, "output_log", "payload").await?;
    let mut states = sample_bytes(
        &pool,
        &st,
        "SELECT '', {col} FROM customers TABLESAMPLE SYSTEM (5) LIMIT 1000",
        "state",
    )
    .await?;
    if states.is_empty() {
        states = sample_bytes(
            &pool,
            &st,
            "SELECT '', {col} FROM customers LIMIT 1000",
            "state",
        )
        .await?;
    }
    let rows = sample_bytes(
        &pool,
        &bt,
        "SELECT kind, {col} FROM event_ledger TABLESAMPLE SYSTEM (5) LIMIT 3000",
        "body",
    )
    .await?;
    let mut bodies: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for (kind, body) in rows {
        bodies.entry(kind).or_default().push(body);
    }
    let outputs = sample_bytes(
        &pool,
        &pt,
        "SELECT ce_type, {col} FROM output_log LIMIT 1000",
        "payload",
    )
    .await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM output_log")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    if states.is_empty() || bodies.is_empty() {
        bail!("the throughput run left no customers or ledger rows to sample");
    }
    Ok(Samples {
        states: states.into_iter().map(|(_, v)| v).collect(),
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

/// One pre-built transaction of the ceiling.
struct CeilingBatch<'a> {
    ids: Vec<String>,
    tiers: Vec<&'static str>,
    spend: Vec<i64>,
    orders: Vec<f64>,
    partitions: Vec<i32>,
    states: Col<'a>,
    segments: Vec<Option<&'static str>>,
    next_checks: Vec<Option<DateTime<Utc>>>,
    churn: Vec<Option<&'static str>>,
    l_customers: Vec<String>,
    l_events: Vec<String>,
    l_times: Vec<DateTime<Utc>>,
    l_kinds: Vec<&'static str>,
    l_bodies: Col<'a>,
    l_sources: Vec<String>,
    o_ce_ids: Vec<String>,
    o_partitions: Vec<i32>,
    o_customers: Vec<String>,
    o_topics: Vec<&'static str>,
    o_payloads: Vec<&'a [u8]>,
    o_headers: Vec<String>,
    o_uuids: Vec<uuid::Uuid>,
    o_types: Vec<&'a str>,
    o_json: Col<'a>,
    offsets: Vec<i64>,
}

/// A raw batched upsert of the engine's writes, with no Kafka and no logic: per transaction of
/// `batch` events, one set-based upsert of the distinct customers (state JSON sampled from the
/// engine's run), the ledger rows (bodies sampled), the outbox and output-log rows (the share
/// of outputs the engine produced), and the offsets update. Rows are built before the clock
/// starts; only the database work is timed.
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

async fn ceiling_in(
    ctx: &Ctx,
    env: &BenchEnv,
    n: u64,
    batch: usize,
    samples: &Samples,
    partitions: i32,
) -> anyhow::Result<Ceiling> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(ctx.seed ^ 0xCE11);
    let now = Utc::now();
    let mut workload = Workload::new(
        ctx.seed,
        &env.id,
        ctx.customers,
        0.0,
        Dating::Recent {
            now,
            days: ctx.history_days,
        },
    );
    let pool = env.pool().await?;
    let st = col_type(&pool, "customers", "state").await?;
    let bt = col_type(&pool, "event_ledger", "body").await?;
    let pt = col_type(&pool, "output_log", "payload").await?;
    pool.close().await;
    let pick = |v: &[Vec<u8>], rng: &mut rand::rngs::SmallRng| -> usize {
        rng.random_range(0..v.len().max(1))
    };
    let fallback_body = samples.bodies.values().next().cloned().unwrap_or_default();
    let body_of = |input: Input| -> (&'static str, &Vec<Vec<u8>>) {
        let kind = match input {
            Input::Purchases => "purchase",
            Input::Tickets => "ticket",
            Input::Surveys => "survey",
        };
        let v = samples
            .bodies
            .get(kind)
            .filter(|v| !v.is_empty())
            .unwrap_or(&fallback_body);
        (kind, v)
    };
    let topic_names = ["purchases", "support-tickets", "surveys"];
    let output_payloads: Vec<(String, Vec<u8>)> = if samples.outputs.is_empty() {
        vec![(
            "kizuna.v1.TierChanged".to_owned(),
            br#"{"customerId":"x","previousTier":"member","newTier":"silver"}"#.to_vec(),
        )]
    } else {
        samples.outputs.clone()
    };
    let mut offsets = vec![0i64; 3 * usize::try_from(partitions.max(1))?];
    let mut batches = Vec::new();
    let mut remaining = n;
    let mut outbox_carry = 0.0;
    let mut customer_rows = 0;
    let mut outbox_rows = 0;
    let mut state_bytes = 0;
    while remaining > 0 {
        let size = remaining.min(batch as u64) as usize;
        remaining -= size as u64;
        let mut b = CeilingBatch {
            ids: Vec::new(),
            tiers: Vec::new(),
            spend: Vec::new(),
            orders: Vec::new(),
            partitions: Vec::new(),
            states: Col::new(&st),
            segments: Vec::new(),
            next_checks: Vec::new(),
            churn: Vec::new(),
            l_customers: Vec::with_capacity(size),
            l_events: Vec::with_capacity(size),
            l_times: Vec::with_capacity(size),
            l_kinds: Vec::with_capacity(size),
            l_bodies: Col::new(&bt),
            l_sources: Vec::with_capacity(size),
            o_ce_ids: Vec::new(),
            o_partitions: Vec::new(),
            o_customers: Vec::new(),
            o_topics: Vec::new(),
            o_payloads: Vec::new(),
            o_headers: Vec::new(),
            o_uuids: Vec::new(),
            o_types: Vec::new(),
            o_json: Col::new(&pt),
            offsets: Vec::new(),
        };
        let mut seen = HashSet::new();
        for i in 0..size {
            let msg = workload.next_msg();
            let partition = rng.random_range(0..partitions.max(1));
            let slot = msg.input as usize * usize::try_from(partitions.max(1))?
                + usize::try_from(partition)?;
            let (kind, bodies) = body_of(msg.input);
            b.l_customers.push(msg.key.clone());
            b.l_events
                .push(format!("ce-{}-{}-{i}", env.id, batches.len()));
            b.l_times.push(now);
            b.l_kinds.push(kind);
            b.l_bodies.push(bodies[pick(bodies, &mut rng)].as_slice());
            b.l_sources.push(format!(
                "{}/{partition}/{}",
                topic_names[msg.input as usize], offsets[slot]
            ));
            offsets[slot] += 1;
            if seen.insert(msg.key.clone()) {
                let state = samples.states[pick(&samples.states, &mut rng)].as_slice();
                state_bytes += state.len();
                b.ids.push(msg.key);
                b.tiers.push("member");
                b.spend.push(rng.random_range(1_000..200_000));
                b.orders.push(f64::from(rng.random_range(1..10)));
                b.partitions.push(partition);
                b.states.push(state);
                b.segments.push(Some("neutral"));
                b.next_checks.push(Some(now + chrono::Duration::days(7)));
                b.churn.push(Some("low"));
            }
        }
        customer_rows += b.ids.len();
        outbox_carry += samples.output_share * size as f64;
        let outs = outbox_carry.floor() as usize;
        outbox_carry -= outs as f64;
        for j in 0..outs {
            let (ce_type, payload) = &output_payloads[j % output_payloads.len()];
            let customer = b.ids[j % b.ids.len().max(1)].clone();
            let ce_id = uuid::Uuid::new_v4();
            b.o_headers.push(
                serde_json::json!([
                    ["ce_specversion", "1.0"],
                    ["ce_id", ce_id.to_string()],
                    ["ce_type", ce_type],
                    ["ce_source", "kizuna/loyalty-engine"],
                    ["ce_subject", customer],
                    ["ce_time", now.to_rfc3339()],
                    ["content-type", "application/json"],
                ])
                .to_string(),
            );
            b.o_ce_ids.push(ce_id.to_string());
            b.o_partitions.push(rng.random_range(0..partitions.max(1)));
            b.o_customers.push(customer);
            b.o_topics.push("loyalty.segment-changed");
            b.o_payloads.push(payload.as_slice());
            b.o_uuids.push(ce_id);
            b.o_types.push(ce_type.as_str());
            b.o_json.push(payload.as_slice());
        }
        outbox_rows += outs;
        b.offsets = offsets.clone();
        batches.push(b);
    }

    let mut conn = sqlx::PgConnection::connect_with(
        &env.database_url
            .parse::<sqlx::postgres::PgConnectOptions>()?,
    )
    .await?;
    use sqlx::Connection;
    // A stuck statement fails the scenario instead of stalling the whole run.
    sqlx::query("SET statement_timeout = '300s'")
        .execute(&mut conn)
        .await?;
    let group = "ceiling";
    let mut o_topics = Vec::new();
    let mut o_parts = Vec::new();
    for t in topic_names {
        for p in 0..partitions.max(1) {
            o_topics.push(t);
            o_parts.push(p);
        }
    }
    sqlx::query(
        "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)
         SELECT $1, t, p, 0 FROM unnest($2::text[], $3::int[]) AS x(t, p)",
    )
    .bind(group)
    .bind(&o_topics)
    .bind(&o_parts)
    .execute(&mut conn)
    .await?;
    eprintln!(
        "kizuna-bench: ceiling: {} transactions of up to {batch} events pre-built; writing…",
        batches.len()
    );

    let ledger_sql = format!(
        "INSERT INTO event_ledger (customer_id, event_id, occurred_at, kind, body, source)
         SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], {}, $6::text[])
         ON CONFLICT (customer_id, event_id) DO NOTHING
         RETURNING customer_id, event_id",
        batches
            .first()
            .map_or_else(String::new, |b| b.l_bodies.param(5, &bt))
    );
    let customers_sql = format!(
        "INSERT INTO customers (customer_id, tier, lifetime_spend_minor, orders, home_partition, state,
                                segment, next_check_at, churn_level, updated_at)
         SELECT *, now() FROM unnest($1::text[], $2::text[], $3::bigint[], $4::float8[], $5::int[], {},
                                     $7::text[], $8::timestamptz[], $9::text[])
         ON CONFLICT (customer_id) DO UPDATE SET
             tier = EXCLUDED.tier,
             lifetime_spend_minor = EXCLUDED.lifetime_spend_minor,
             orders = EXCLUDED.orders,
             home_partition = EXCLUDED.home_partition,
             state = EXCLUDED.state,
             segment = EXCLUDED.segment,
             next_check_at = EXCLUDED.next_check_at,
             churn_level = EXCLUDED.churn_level,
             updated_at = now()",
        batches.first().map_or_else(String::new, |b| b.states.param(6, &st))
    );
    let output_log_sql = format!(
        "INSERT INTO output_log (customer_id, ce_id, ce_type, caused_by, effective_at, payload)
         SELECT c, i, t, 'bench', now(), p FROM unnest($1::text[], $2::uuid[], $3::text[], {}) AS x(c, i, t, p)
         ON CONFLICT DO NOTHING",
        batches.first().map_or_else(String::new, |b| b.o_json.param(4, &pt))
    );
    let started = Instant::now();
    for b in &batches {
        let mut tx = conn.begin().await?;
        let q = sqlx::query(&ledger_sql)
            .bind(&b.l_customers)
            .bind(&b.l_events)
            .bind(&b.l_times)
            .bind(&b.l_kinds);
        b.l_bodies
            .bind(q)
            .bind(&b.l_sources)
            .fetch_all(&mut *tx)
            .await
            .context("ceiling: ledger insert")?;
        let q = sqlx::query(&customers_sql)
            .bind(&b.ids)
            .bind(&b.tiers)
            .bind(&b.spend)
            .bind(&b.orders)
            .bind(&b.partitions);
        b.states
            .bind(q)
            .bind(&b.segments)
            .bind(&b.next_checks)
            .bind(&b.churn)
            .execute(&mut *tx)
            .await
            .context("ceiling: customers upsert")?;
        if !b.o_ce_ids.is_empty() {
            sqlx::query(
                "INSERT INTO outbox (ce_id, partition, customer_id, topic, key, payload, headers)
                 SELECT c, p, cu, t, convert_to(cu, 'UTF8'), pl, h::jsonb
                 FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::bytea[], $6::text[]) AS x(c, p, cu, t, pl, h)",
            )
            .bind(&b.o_ce_ids)
            .bind(&b.o_partitions)
            .bind(&b.o_customers)
            .bind(&b.o_topics)
            .bind(&b.o_payloads)
            .bind(&b.o_headers)
            .execute(&mut *tx)
            .await
            .context("ceiling: outbox insert")?;
            sqlx::query("SELECT pg_notify('kizuna_bench_ceiling', '')")
                .execute(&mut *tx)
                .await?;
            let q = sqlx::query(&output_log_sql)
                .bind(&b.o_customers)
                .bind(&b.o_uuids)
                .bind(&b.o_types);
            b.o_json
                .bind(q)
                .execute(&mut *tx)
                .await
                .context("ceiling: output log insert")?;
        }
        sqlx::query(
            "UPDATE consumer_offsets c SET next_offset = GREATEST(c.next_offset, x.o), updated_at = now()
             FROM unnest($2::text[], $3::int[], $4::bigint[]) AS x(t, p, o)
             WHERE c.group_id = $1 AND c.topic = x.t AND c.partition = x.p",
        )
        .bind(group)
        .bind(&o_topics)
        .bind(&o_parts)
        .bind(&b.offsets)
        .execute(&mut *tx)
        .await
        .context("ceiling: offsets update")?;
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
}

/// The engine's view of a latency run: the broker's delivery (message timestamp → receipt), the
/// ingest half (event time → commit), the relay half
/// (outbox row → broker acknowledgement), batch sizes and durations, and the mean time per
/// batch stage.
fn breakdown(m: &crate::engine::Metrics) -> String {
    let ms = |name: &str, q: f64| {
        m.quantile(name, &[], q)
            .map_or("-".into(), |v| format!("{:.0}", v * 1000.0))
    };
    let batches = m.sum("kizuna_batch_duration_seconds_count", &[]);
    let mean = |sum: f64| if batches > 0.0 { sum / batches } else { 0.0 };
    let stages = kizuna::metrics::BATCH_STAGES
        .iter()
        .map(|s| {
            let label = format!("stage=\"{s}\"");
            format!(
                "{s} {:.1}",
                mean(m.sum("kizuna_batch_stage_seconds_sum", &[&label])) * 1000.0
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
    let mut engine = Engine::spawn(
        &ctx.kizuna,
        &ctx.stack,
        env,
        &ctx.engine_env,
        &ctx.log_dir,
        name,
    )?;
    engine.wait_ready(Duration::from_secs(60)).await?;
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
    let pool = env.pool().await?;
    let ended = Instant::now();
    let deadline = ended + DRAIN_WAIT;
    // Every message on the input topics: the warm-up's, the producer's first and the paced.
    let sent = i64::try_from(WARM_UP_EVENTS + paced.unmeasured + paced.sent)?;
    let mut applied = 0;
    let mut drained = None;
    while Instant::now() < deadline {
        engine.check_alive()?;
        applied = env.applied(&pool).await?;
        // Not count(*): it reads every dead row too, and competes with the engine's last work.
        let pending: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM outbox)")
            .fetch_one(&pool)
            .await?;
        if applied >= sent && !pending {
            drained = Some(ended.elapsed());
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
    engine.stop(Duration::from_secs(10));
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
async fn warm_up(env: &BenchEnv, engine: &mut Engine) -> anyhow::Result<()> {
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
    let mut engine = Engine::spawn(
        &ctx.kizuna,
        &ctx.stack,
        env,
        &ctx.engine_env,
        &ctx.log_dir,
        "memory",
    )?;
    engine.wait_ready(Duration::from_secs(60)).await?;
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
    engine.stop(Duration::from_secs(10));
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
