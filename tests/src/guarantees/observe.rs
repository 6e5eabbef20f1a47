//! Observing a run: where the consumer group stands, the stored customers, the engine's
//! metrics and logs, and the differences between two runs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use kizuna::config::Settings;
use serde_json::Value;
use sqlx::PgPool;

use crate::TopicReader;
use crate::process::{EngineProcess, metric_sum};

/// Next offset to read of every non-empty input partition: one past the last message found
/// when reading the partition to its end (to the consumer's end-of-partition, not to the high
/// watermark, which tansu 0.6 can report below the last offset).
pub async fn input_ends(settings: &Settings) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let mut ends = BTreeMap::new();
    for topic in settings.kafka.topics.inputs() {
        let reader = TopicReader::new(&settings.kafka.brokers, topic, "ends")?;
        for m in reader.read_to_end(Duration::from_secs(60)).await? {
            let end = ends.entry((topic.to_owned(), m.partition)).or_insert(0);
            *end = (*end).max(m.offset + 1);
        }
    }
    Ok(ends)
}

/// Where the group stands, from the offsets stored with the state.
pub async fn stored_offsets(
    pool: &PgPool,
    group: &str,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let rows: Vec<(String, i32, i64)> = sqlx::query_as(
        "SELECT topic, partition, next_offset FROM consumer_offsets WHERE group_id = $1",
    )
    .bind(group)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect())
}

pub async fn count(pool: &PgPool, sql: &str) -> anyhow::Result<i64> {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(pool).await?;
    Ok(n)
}

/// Waits until the stored offsets reach `ends` and the outbox is empty, checking that the
/// given engines are still alive.
pub async fn wait_caught_up(
    pool: &PgPool,
    group: &str,
    ends: &BTreeMap<(String, i32), i64>,
    engines: &mut [&mut EngineProcess],
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut last;
    loop {
        for e in engines.iter_mut() {
            e.ensure_running()?;
        }
        let status = async {
            let stored = stored_offsets(pool, group).await?;
            let behind: i64 = ends
                .iter()
                .map(|(k, end)| (end - stored.get(k).copied().unwrap_or(0)).max(0))
                .sum();
            let outbox = count(pool, "SELECT count(*) FROM outbox").await?;
            anyhow::Ok((behind, outbox))
        }
        .await;
        match status {
            Ok((0, 0)) => return Ok(started.elapsed()),
            Ok((behind, outbox)) => {
                last = format!("{behind} messages not yet consumed, {outbox} outbox rows")
            }
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() > deadline {
            let tails: Vec<String> = engines
                .iter()
                .map(|e| format!("--- {} ---\n{}", e.name, e.log_tail(30)))
                .collect();
            bail!(
                "group {group} did not catch up within {timeout:?}: {last}\n{}",
                tails.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A customer row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub tier: String,
    pub spend: i64,
    pub orders: f64,
    pub segment: Option<String>,
    pub state: Value,
}

/// A `customers` row: id, tier, lifetime spend, orders, segment, encoded state.
pub type CustomerRow = (String, String, i64, f64, Option<String>, Vec<u8>);

/// The stored customers; the state column (the engine's storage encoding) as JSON.
pub async fn customers(pool: &PgPool) -> anyhow::Result<BTreeMap<String, Row>> {
    let rows: Vec<CustomerRow> = sqlx::query_as(
        "SELECT customer_id, tier, lifetime_spend_minor, orders, segment, state FROM customers",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(id, tier, spend, orders, segment, state)| {
            let state = kizuna::store::customers::decode(&state)
                .with_context(|| format!("decoding the stored state of {id}"))?;
            let row = Row {
                tier,
                spend,
                orders,
                segment,
                state: serde_json::to_value(state)?,
            };
            Ok((id, row))
        })
        .collect()
}

/// The two states without what depends on the order in which a customer's events of
/// different topics were evaluated. The churn level moves down only past a hysteresis band, so
/// it (and the play and date that go with it) depends on the path of scores, and the
/// interleaving of the purchase, ticket and survey partitions is not fixed from one run to the
/// next. When the levels differ, so may the next check (a customer not at high churn risk is
/// looked at again while silence grows).
pub fn order_independent(got: &Value, want: &Value) -> (Value, Value) {
    let level = |s: &Value| s.pointer("/status/churn/level").cloned();
    let same_level = level(got) == level(want);
    let strip = |state: &Value| {
        let mut s = state.clone();
        if let Some(status) = s.get_mut("status").and_then(Value::as_object_mut) {
            if let Some(churn) = status.get_mut("churn").and_then(Value::as_object_mut) {
                for key in ["level", "play", "since"] {
                    churn.remove(key);
                }
            }
            if !same_level {
                status.remove("next_check_at");
            }
        }
        s
    };
    (strip(got), strip(want))
}

/// The paths where two JSON values differ, with both values.
pub fn json_diff(path: &str, got: &Value, want: &Value, out: &mut Vec<String>) {
    match (got, want) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let (x, y) = (
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                );
                json_diff(&format!("{path}/{k}"), x, y, out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                json_diff(&format!("{path}/{i}"), x, y, out);
            }
        }
        _ if got != want => out.push(format!("{path}: {got} (reference {want})")),
        _ => {}
    }
}

/// Differences between two runs: tier, spend, orders, segment and the facts; with
/// `whole_state`, the entire state document.
pub fn diff_runs(
    rows: &BTreeMap<String, Row>,
    reference: &BTreeMap<String, Row>,
    whole_state: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for (id, want) in reference {
        let Some(got) = rows.get(id) else {
            out.push(format!("{id}: missing"));
            continue;
        };
        if (&got.tier, got.spend, &got.segment) != (&want.tier, want.spend, &want.segment)
            || (got.orders - want.orders).abs() > 1e-9
        {
            out.push(format!(
                "{id}: (tier, spend, orders, segment) {:?} != reference {:?}",
                (&got.tier, got.spend, got.orders, &got.segment),
                (&want.tier, want.spend, want.orders, &want.segment)
            ));
        }
        if got.state["facts"] != want.state["facts"] {
            out.push(format!("{id}: facts differ from the reference run"));
        }
        if whole_state {
            let (got, want) = order_independent(&got.state, &want.state);
            let mut paths = Vec::new();
            json_diff("", &got, &want, &mut paths);
            if !paths.is_empty() {
                out.push(format!(
                    "{id}: state differs from the reference run at {}",
                    paths.join("; ")
                ));
            }
        }
    }
    for id in rows.keys() {
        if !reference.contains_key(id) {
            out.push(format!("{id}: not in the reference run"));
        }
    }
    out
}

pub fn ensure_no_diff(what: &str, diffs: &[String]) -> anyhow::Result<()> {
    if !diffs.is_empty() {
        bail!(
            "{what}: {} differences, first ones:\n{}",
            diffs.len(),
            diffs
                .iter()
                .take(12)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    Ok(())
}

// 1. Crash

/// Waits until at least `n` events are in the ledger, checking the engine is alive.
pub async fn wait_applied(
    pool: &PgPool,
    n: i64,
    engine: &mut EngineProcess,
    timeout: Duration,
) -> anyhow::Result<i64> {
    let deadline = Instant::now() + timeout;
    loop {
        engine.ensure_running()?;
        let applied = count(pool, "SELECT count(*) FROM event_ledger").await?;
        if applied >= n {
            return Ok(applied);
        }
        if Instant::now() > deadline {
            bail!(
                "only {applied} of {n} events applied after {timeout:?}; log tail:\n{}",
                engine.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `kizuna_events_consumed_total` by outcome, summed over the engines of a run (each scraped
/// just before it was killed or stopped).
#[derive(Debug, Default)]
pub struct Consumed {
    pub applied: f64,
    pub duplicate: f64,
    pub replayed: f64,
    pub dead_lettered: f64,
}

impl Consumed {
    pub fn add(&mut self, text: &str) {
        let name = "kizuna_events_consumed_total";
        self.applied += metric_sum(text, name, &[("outcome", "applied")]);
        self.duplicate += metric_sum(text, name, &[("outcome", "duplicate")]);
        self.replayed += metric_sum(text, name, &[("outcome", "replayed")]);
        self.dead_lettered += metric_sum(text, name, &[("outcome", "dead_lettered")]);
    }

    /// No event was resent, so a duplicate means a message was consumed again after its
    /// offset had been stored with its effect: restarts must resume exactly where the stored
    /// offsets say. So must the consumer: a message below its partition's stored offset
    /// (`replayed`, skipped by the batch) means it did not seek to the stored offsets.
    pub fn ensure_exactly_once(&self) -> anyhow::Result<()> {
        ensure!(
            self.duplicate == 0.0 && self.dead_lettered == 0.0,
            "after the restarts {} events were consumed again and found in the ledger, {} dead-lettered",
            self.duplicate,
            self.dead_lettered
        );
        ensure!(
            self.replayed == 0.0,
            "after the restarts {} messages below the stored offsets were delivered again \
             (skipped by offset): the consumer did not resume at the stored offsets",
            self.replayed
        );
        // `applied` is not checked: a killed engine's last scrape misses what it committed
        // afterwards, and counts what it applied in the batch the kill abandoned.
        Ok(())
    }
}

/// Lines containing `needle` across the engine logs of a test.
pub fn count_log_lines(dir: &std::path::Path, needle: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| count_log_lines_in(&e.path(), needle))
                .sum()
        })
        .unwrap_or(0)
}

/// Lines containing `needle` in one engine's log (0 if it cannot be read).
pub fn count_log_lines_in(file: &std::path::Path, needle: &str) -> usize {
    std::fs::read_to_string(file)
        .map(|text| text.lines().filter(|l| l.contains(needle)).count())
        .unwrap_or(0)
}

/// Sums `name` over the samples whose labels include `filter`, from an engine's `/metrics`.
pub async fn metric(
    engine: &EngineProcess,
    name: &str,
    filter: &[(&str, &str)],
) -> anyhow::Result<f64> {
    Ok(metric_sum(&engine.metrics().await?, name, filter))
}
