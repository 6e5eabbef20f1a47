//! The physical ceiling: the least any design with per-customer state and exactly-once input
//! must write, on this machine. Per transaction of a batch of events: one narrow row per event
//! (its id, unique per customer: what deduplicates a redelivery) and one narrow row per touched
//! customer (upserted), with `writers` writers on disjoint customers, as the engine's partitions
//! are. No Kafka, no logic, no state blob, no outputs. The engine's own ceiling
//! ([`super::ceiling`]) writes what the engine writes; this one says how far the schema is from
//! the floor.

use std::time::Instant;

use anyhow::Context;
use kizuna_testkit::Rng;
use rand::Rng as _;
use sqlx::Connection;

use super::Ctx;
use crate::cost::{Cost, Meter};
use crate::workload::Workload;

const SCHEMA: &str = "
CREATE TABLE physical_customers (
    customer_id text PRIMARY KEY,
    events bigint NOT NULL,
    last_at timestamptz NOT NULL
);
CREATE TABLE physical_events (
    customer_id text NOT NULL,
    event_id text NOT NULL,
    PRIMARY KEY (customer_id, event_id)
)";

const EVENTS_INSERT: &str = "
INSERT INTO physical_events (customer_id, event_id)
SELECT * FROM UNNEST($1::text[], $2::text[])
ON CONFLICT DO NOTHING";

const CUSTOMERS_UPSERT: &str = "
INSERT INTO physical_customers (customer_id, events, last_at)
SELECT c, n, now() FROM UNNEST($1::text[], $2::int8[]) AS u(c, n)
ON CONFLICT (customer_id) DO UPDATE
SET events = physical_customers.events + EXCLUDED.events, last_at = EXCLUDED.last_at";

/// What the physical ceiling measured.
#[derive(Debug, Clone)]
pub struct Physical {
    pub events: u64,
    pub seconds: f64,
    pub rate: f64,
    pub writers: usize,
    pub transactions: usize,
    pub customer_rows: usize,
    /// PostgreSQL's CPU and WAL per event (the engine's figure is this tool's own, unused).
    pub cost: Cost,
}

/// One transaction: the events' (customer, id) and the distinct customers with their counts.
#[derive(Debug, Default)]
struct Batch {
    event_customers: Vec<String>,
    event_ids: Vec<String>,
    customers: Vec<String>,
    counts: Vec<i64>,
}

/// `n` events over a population of `customers`, drawn as the throughput scenario draws them, cut
/// into transactions of `batch` events per writer; a customer always goes to the same writer.
fn build(
    seed: u64,
    customers: u32,
    run: &str,
    n: u64,
    batch: usize,
    writers: usize,
) -> Vec<Vec<Batch>> {
    let mut rng = Rng::new(seed);
    let mut pending: Vec<Vec<(String, String)>> = vec![Vec::new(); writers];
    let mut out: Vec<Vec<Batch>> = (0..writers).map(|_| Vec::new()).collect();
    let close = |events: &mut Vec<(String, String)>| {
        let mut counts: std::collections::BTreeMap<String, i64> = Default::default();
        for (c, _) in events.iter() {
            *counts.entry(c.clone()).or_default() += 1;
        }
        let (event_customers, event_ids) = events.drain(..).unzip();
        let (customers, counts) = counts.into_iter().unzip();
        Batch {
            event_customers,
            event_ids,
            customers,
            counts,
        }
    };
    for seq in 0..n {
        let i = rng.random_range(0..customers.max(1));
        let w = i as usize % writers;
        pending[w].push((Workload::customer_id(run, i), format!("be-{run}-{seq}")));
        if pending[w].len() >= batch {
            out[w].push(close(&mut pending[w]));
        }
    }
    for (w, events) in pending.iter_mut().enumerate() {
        if !events.is_empty() {
            out[w].push(close(events));
        }
    }
    out
}

/// Writes `n` events as [`build`] cuts them, `writers` connections at once, and times it.
pub async fn physical(ctx: &Ctx, n: u64, batch: usize, writers: usize) -> anyhow::Result<Physical> {
    let env = ctx.stack.env("physical", false, None).await?;
    let result = physical_in(ctx, &env, n, batch, writers.max(1)).await;
    ctx.stack.drop_env(&env).await;
    result
}

async fn physical_in(
    ctx: &Ctx,
    env: &crate::env::BenchEnv,
    n: u64,
    batch: usize,
    writers: usize,
) -> anyhow::Result<Physical> {
    let pool = env.pool().await?;
    sqlx::raw_sql(SCHEMA)
        .execute(&pool)
        .await
        .context("physical ceiling: creating its tables")?;
    let work = build(ctx.seed, ctx.customers, &env.id, n, batch.max(1), writers);
    let transactions = work.iter().map(Vec::len).sum();
    let customer_rows = work
        .iter()
        .flatten()
        .map(|b| b.customers.len())
        .sum::<usize>();
    let mut conns = Vec::with_capacity(writers);
    for _ in 0..writers {
        conns.push(sqlx::PgConnection::connect(&env.database_url).await?);
    }
    eprintln!(
        "kizuna-bench: physical ceiling: {transactions} transactions of up to {batch} events, {writers} writers; writing…"
    );
    let meter = Meter::new(std::process::id(), &env.database, "");
    let before = meter.snapshot(&pool).await;
    let started = Instant::now();
    let tasks: Vec<_> = work
        .into_iter()
        .zip(conns)
        .map(|(batches, mut conn)| {
            tokio::spawn(async move {
                for b in &batches {
                    let mut tx = conn.begin().await?;
                    sqlx::query(EVENTS_INSERT)
                        .bind(&b.event_customers)
                        .bind(&b.event_ids)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(CUSTOMERS_UPSERT)
                        .bind(&b.customers)
                        .bind(&b.counts)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                }
                // Closed after the last snapshot: a backend's CPU is read while it lives.
                anyhow::Ok(conn)
            })
        })
        .collect();
    let mut done = Vec::with_capacity(writers);
    for t in tasks {
        done.push(t.await.context("a physical-ceiling writer panicked")??);
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = meter.snapshot(&pool).await;
    for conn in done {
        conn.close().await.ok();
    }
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM physical_events")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    anyhow::ensure!(
        u64::try_from(written)? == n,
        "physical ceiling: {written} of {n} event rows written"
    );
    Ok(Physical {
        events: n,
        seconds,
        rate: n as f64 / seconds.max(1e-9),
        writers,
        transactions,
        customer_rows,
        cost: Cost::between(&before, &after, n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_cut_once_and_a_customer_stays_with_one_writer() {
        let work = build(7, 50, "t", 1_000, 64, 2);
        assert_eq!(work.len(), 2);
        let events: usize = work.iter().flatten().map(|b| b.event_ids.len()).sum();
        assert_eq!(events, 1_000);
        let mut ids: Vec<&String> = work.iter().flatten().flat_map(|b| &b.event_ids).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 1_000, "event ids are unique");
        let mut owner = std::collections::HashMap::new();
        for (w, batches) in work.iter().enumerate() {
            for b in batches {
                assert!(b.event_ids.len() <= 64);
                assert_eq!(
                    b.counts.iter().sum::<i64>(),
                    i64::try_from(b.event_ids.len()).expect("small")
                );
                for c in &b.customers {
                    assert_eq!(*owner.entry(c.clone()).or_insert(w), w, "{c}");
                }
            }
        }
    }
}
