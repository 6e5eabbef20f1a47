//! Any partitioner: producers that disagree on partitioning (murmur2, CRC32, no key) lose no
//! update, and `kizuna recompute` repairs states that lost one.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use anyhow::{Context, ensure};
use chrono::{DateTime, Utc};
use serde_json::Value;

use kizuna_e2e::Broker;
use kizuna_e2e::guarantees::*;
use kizuna_e2e::process::{EngineProcess, metric_sum};

kizuna_e2e::on_each_broker! {
    any_partitioner_one_instance_two_writers_loses_no_update,
    any_partitioner_two_instances_lose_no_update_and_keep_each_customers_order,
    any_partitioner_recompute_repairs_states_that_lost_an_update,
}

// ---------------------------------------------------------------------------------------------
// 8. Any partitioner

/// The workload of a shop whose producers disagree on partitioning: every customer makes
/// `rounds` purchases three days apart in event time, each followed by a support-ticket
/// update. Purchases come from a murmur2 producer keyed by customer id, except every fifth,
/// which has no key at all; tickets come from a producer on librdkafka's default partitioner
/// (CRC32). So one customer's events arrive on several partitions, often at the same moment,
/// and the first two events of a new customer race each other. 22,000 JPY a purchase: silver
/// after two, gold after five.
fn mixed_partitioner_workload(customers: usize, rounds: usize, seed: u64) -> (Workload, Vec<Msg>) {
    let mut rng = Rng::new(seed);
    let mut w = Workload::default();
    let mut msgs = Vec::new();
    let now = Utc::now();
    let base = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now)
        - chrono::Duration::days(3 * rounds as i64);
    let mut purchases = 0usize;
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..customers).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for c in order {
            let customer = customer_id(c);
            let at = base
                + chrono::Duration::days(3 * round as i64)
                + chrono::Duration::seconds(c as i64);
            let amount = 22_000 + rng.range(0, 20) * 100;
            let n = w.events.len();
            let purchase = Event {
                event_id: format!("evt-{n:06}"),
                customer: customer.clone(),
                at,
                body: Body::Purchase {
                    order_id: format!("ord-{n:06}"),
                    amount,
                    category: CATEGORIES[c % CATEGORIES.len()],
                    channel: "web",
                },
            };
            let (ticket_id, status) = if round % 2 == 0 {
                (format!("{customer}-t{round}"), "TICKET_STATUS_OPENED")
            } else {
                (
                    format!("{customer}-t{}", round - 1),
                    "TICKET_STATUS_RESOLVED",
                )
            };
            let ticket = Event {
                event_id: format!("evt-{:06}", n + 1),
                customer: customer.clone(),
                at: at + chrono::Duration::minutes(10),
                body: Body::Ticket {
                    ticket_id,
                    status,
                    escalated: false,
                    sla_breached: false,
                    csat: None,
                    sentiment: None,
                },
            };
            let expect = w.expect.entry(customer).or_default();
            expect.orders.insert(format!("ord-{n:06}"), (amount, 0));
            expect.events += 2;
            expect.max_rank = expect.max_rank.max(expect.rank());
            w.purchases += 1;
            w.tickets += 1;

            let mut m = purchase.message(false);
            if purchases % 5 == 4 {
                m.key = None;
            }
            purchases += 1;
            msgs.push(m);
            let mut m = ticket.message(false);
            m.partitioner = Partitioner::Crc32;
            msgs.push(m);
            w.events.push(purchase);
            w.events.push(ticket);
        }
    }
    (w, msgs)
}

/// Sends the mixed-partitioner workload to `instances` engines (each with two writers) and
/// checks the result against the test's own figures and a clean single-writer run: no update
/// lost, every output published once and in the order the changes happened, and every event
/// that arrived off its customer's murmur2 partition counted.
async fn mixed_partitioners(broker: Broker, instances: usize, tag: &str) -> anyhow::Result<()> {
    let Begun {
        seed,
        mut env,
        logs,
    } = begin(broker, tag, 0x6b69_7a75_6e61_0020).await?;
    env.settings.ingest.writers = 2;
    let (work, msgs) = mixed_partitioner_workload(200, 5, seed);
    eprintln!("[{tag}] {}", work.summary());
    let n = msgs.len();
    let partitions = env.settings.kafka.partitions;

    let mut engines = Vec::new();
    for i in 0..instances {
        let mut e = EngineProcess::spawn(&format!("engine-{i}"), &env.settings, &logs)?;
        e.wait_ready(READY).await?;
        engines.push(e);
    }
    let assigned = "kizuna_assigned_partitions";
    kizuna_e2e::wait_for(
        "every instance to own partitions",
        Duration::from_secs(60),
        || async {
            let mut all = true;
            for e in &engines {
                all &= metric(e, assigned, &[]).await? > 0.0;
            }
            Ok(all.then_some(()))
        },
    )
    .await?;

    let feeder = Arc::new(Feeder::new(&env.settings)?);
    let sent = Arc::new(AtomicUsize::new(0));
    let msgs = Arc::new(msgs);
    let landed = stream(
        feeder,
        msgs.clone(),
        20,
        Duration::from_millis(50),
        sent.clone(),
    )
    .await??;
    let off_home = msgs
        .iter()
        .zip(&landed)
        .filter(|(m, (partition, _))| {
            let customer = serde_json::from_slice::<Value>(&m.payload)
                .ok()
                .and_then(|v| v["customerId"].as_str().map(str::to_owned))
                .unwrap_or_default();
            kizuna::partitioner::partition_for(customer.as_bytes(), partitions) != *partition
        })
        .count();
    let spread = work
        .expect
        .keys()
        .filter(|c| {
            let mut seen = std::collections::BTreeSet::new();
            for (m, (p, _)) in msgs.iter().zip(&landed) {
                if m.key.as_deref() == Some(c.as_str())
                    || serde_json::from_slice::<Value>(&m.payload)
                        .is_ok_and(|v| v["customerId"] == c.as_str())
                {
                    seen.insert(*p);
                }
            }
            seen.len() > 1
        })
        .count();
    ensure!(
        spread > work.expect.len() / 2,
        "only {spread} of {} customers had events on more than one partition: the test would prove little",
        work.expect.len()
    );

    let mut refs: Vec<&mut EngineProcess> = engines.iter_mut().collect();
    let Settled {
        rows,
        ledger,
        metrics,
        ..
    } = settle(&env, &mut refs).await?;
    let (mut counted_off_home, mut conflicts) = (0.0, 0.0);
    for text in &metrics {
        counted_off_home += metric_sum(text, "kizuna_events_off_home_partition_total", &[]);
        conflicts += metric_sum(text, "kizuna_customer_write_conflicts_total", &[]);
    }

    ensure!(
        ledger as usize == n,
        "{ledger} events in the ledger, {n} sent"
    );
    ensure_no_diff(
        "states against the expected figures",
        &diff_expected(&rows, &work.expect),
    )?;
    let published = check_outputs(&env, &rows).await?;
    let gold = rows.values().filter(|r| r.tier == "gold").count();
    ensure!(
        gold == work.expect.len(),
        "{gold} of {} customers reached gold",
        work.expect.len()
    );
    ensure!(
        counted_off_home == off_home as f64,
        "kizuna_events_off_home_partition_total says {counted_off_home}, but {off_home} events landed off their customer's murmur2 partition"
    );
    let (reference, reference_published) = against_reference(
        &env,
        &logs,
        "single_writer",
        |s| s.ingest.writers = 1,
        &rows,
        "against a clean single-writer run",
    )
    .await?;
    eprintln!(
        "[{tag}] figures: {n} events, {spread} customers spread over several partitions, {off_home} events off their \
         murmur2 partition; {conflicts} new customers re-applied after another writer created them; {gold} customers \
         at gold; outputs published {} ({} tier changes; single writer: {}, {}), duplicated 0, lost 0",
        published.total,
        published.tier_changes,
        reference_published.total,
        reference_published.tier_changes
    );
    cleanup(reference).await?;
    cleanup(env).await
}

async fn any_partitioner_one_instance_two_writers_loses_no_update(
    broker: Broker,
) -> anyhow::Result<()> {
    mixed_partitioners(broker, 1, "any-partitioner-1").await
}

async fn any_partitioner_two_instances_lose_no_update_and_keep_each_customers_order(
    broker: Broker,
) -> anyhow::Result<()> {
    mixed_partitioners(broker, 2, "any-partitioner-2").await
}

/// A deployment damaged by lost updates (before the fix, one customer's events on two
/// partitions could overwrite each other's state) is repaired by `kizuna recompute`, which
/// rebuilds every state from the event ledger and publishes the tier changes it restores.
async fn any_partitioner_recompute_repairs_states_that_lost_an_update(
    broker: Broker,
) -> anyhow::Result<()> {
    use kizuna::domain::apply::{Changes, apply};
    use kizuna::domain::ids::CustomerId;

    let Begun { seed, env, logs } = begin(broker, "repair", 0x6b69_7a75_6e61_0021).await?;
    let (work, msgs) = mixed_partitioner_workload(100, 5, seed);
    let mut engine = EngineProcess::spawn("engine", &env.settings, &logs)?;
    engine.wait_ready(READY).await?;
    Feeder::new(&env.settings)?.send_all(&msgs).await?;
    let ends = input_ends(&env.settings).await?;
    let pool = env.pool().await?;
    wait_caught_up(
        &pool,
        &env.settings.kafka.group_id,
        &ends,
        &mut [&mut engine],
        CATCH_UP,
    )
    .await?;
    let status = engine.terminate(Duration::from_secs(60)).await?;
    ensure!(status.success(), "the engine exited with {status}");
    ensure_no_diff(
        "states before the damage",
        &diff_expected(&customers(&pool).await?, &work.expect),
    )?;

    // The damage a lost update did: 14 states built without one of their purchases.
    let programme = env.settings.load_programme()?;
    let now = Utc::now();
    let damaged: Vec<String> = work.expect.keys().step_by(7).take(14).cloned().collect();
    for customer in &damaged {
        let mut conn = pool.acquire().await?;
        let mut events = kizuna::store::ledger::events_of(&mut conn, &[customer.as_str()]).await?;
        let lost = events
            .iter()
            .rposition(|e| e.body.kind() == "purchase")
            .context("a customer without purchases")?;
        events.remove(lost);
        let id = CustomerId::parse(customer, 128).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let changes = Changes {
            events: events.iter().collect(),
            referred: Vec::new(),
        };
        let (state, metrics, _) = apply(&id, None, &changes, &programme, None, now);
        sqlx::query(
            "UPDATE customers SET state = $2, tier = $3, lifetime_spend_minor = $4, orders = $5
             WHERE customer_id = $1",
        )
        .bind(customer)
        .bind(kizuna::store::customers::encode(&state)?)
        .bind(state.tier())
        .bind(metrics.lifetime_spend_minor)
        .bind(metrics.orders)
        .execute(&mut *conn)
        .await?;
    }
    let broken = diff_expected(&customers(&pool).await?, &work.expect);
    ensure!(
        broken.len() >= damaged.len(),
        "the damage shows in only {} differences: {broken:?}",
        broken.len()
    );

    let (ok, _, err) = kizuna_e2e::process::run_command(&env.settings, &["recompute"])?;
    ensure!(ok, "kizuna recompute failed: {err}");
    ensure!(
        err.contains(&format!("{} tier changes", damaged.len())),
        "recompute should report {} tier changes: {err}",
        damaged.len()
    );
    ensure_no_diff(
        "states after recompute",
        &diff_expected(&customers(&pool).await?, &work.expect),
    )?;
    // Recompute queues its outputs; a running engine publishes them.
    let mut engine = EngineProcess::spawn("engine-after", &env.settings, &logs)?;
    engine.wait_ready(READY).await?;
    wait_caught_up(
        &pool,
        &env.settings.kafka.group_id,
        &ends,
        &mut [&mut engine],
        CATCH_UP,
    )
    .await?;
    let status = engine.terminate(Duration::from_secs(60)).await?;
    ensure!(status.success(), "the engine exited with {status}");
    pool.close().await;
    let restored: Vec<String> = env
        .reader(&env.settings.kafka.topics.tier_changed)?
        .read_to_end(READ)
        .await?
        .iter()
        .filter_map(|m| {
            let v = m.json().ok()?;
            (v["causedBy"] == "recompute" && v["newTier"] == "gold")
                .then(|| v["customerId"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    let mut restored_sorted = restored.clone();
    restored_sorted.sort();
    let mut damaged_sorted = damaged.clone();
    damaged_sorted.sort();
    ensure!(
        restored_sorted == damaged_sorted,
        "recompute published gold for {restored:?}, the damaged customers were {damaged:?}"
    );
    eprintln!(
        "[repair] figures: {} of {} states damaged, {} restored by kizuna recompute, each with its TierChanged",
        damaged.len(),
        work.expect.len(),
        restored.len()
    );
    cleanup(env).await
}
