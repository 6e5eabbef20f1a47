//! Crash: the engine killed with -9 at random points, then restarted, loses nothing and
//! publishes each output once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use chrono::{DateTime, Utc};
use kizuna::config::{Clock, Settings};
use kizuna_e2e::Broker;
use kizuna_e2e::guarantees::*;
use kizuna_e2e::process::{EngineProcess, metric_sum};
use serde_json::Value;

kizuna_e2e::on_each_broker! {
    kill_9_at_random_points_loses_nothing_and_publishes_each_output_once,
    kill_9_in_the_middle_of_large_batches_loses_and_doubles_nothing,
}

async fn kill_9_at_random_points_loses_nothing_and_publishes_each_output_once(
    broker: Broker,
) -> anyhow::Result<()> {
    let Begun {
        seed,
        mut env,
        logs,
    } = begin(broker, "crash", 0x6b69_7a75_6e61_0001).await?;
    // Every event evaluated on its own, on the event-time clock, with all events at the same
    // instant: the outputs (and their ce_ids) then depend only on each customer's event order,
    // so the crashed run and the clean run must publish exactly the same ce_ids.
    let t0 = DateTime::from_timestamp((Utc::now() - chrono::Duration::hours(1)).timestamp(), 0)
        .context("a time")?;
    let plan = Plan {
        crossing_refunds: true,
        times: Times::Fixed(t0),
        ..Plan::recent(seed, 12_000)
    };
    let work = generate(&plan);
    eprintln!("[crash] {}", work.summary());
    let one_by_one = |s: &mut Settings| {
        s.clock = Clock::EventTime;
        s.ingest.batch_max_events = 1;
    };
    one_by_one(&mut env.settings);
    // The clean run reads the same input at the same time, undisturbed.
    let reference = Reference::start(&env, "clean", &logs, one_by_one).await?;

    let feeder = Arc::new(Feeder::new(&env.settings)?);
    let msgs = Arc::new(work.messages(&plan));
    let sent = Arc::new(AtomicUsize::new(0));
    let producing = stream(
        feeder,
        msgs.clone(),
        200,
        Duration::from_millis(200),
        sent.clone(),
    );

    let pool = env.pool().await?;
    let mut rng = Rng::new(seed ^ 0xdead);
    let kills = 5;
    let mut engine = EngineProcess::spawn("engine-0", &env.settings, &logs)?;
    engine.wait_ready(READY).await?;
    let mut applied_at_kill = Vec::new();
    let mut last = 0;
    let mut consumed = Consumed::default();
    for k in 1..=kills {
        // A random point while the engine works: after it applied a random number of events
        // since it (re)started, plus a random delay.
        let progress = rng.range(50, 800);
        // A fast engine may have applied everything already: then the kill lands on an idle
        // engine, which must restart just as cleanly.
        let target = (last + progress).min(i64::try_from(msgs.len()).unwrap_or(i64::MAX));
        wait_applied(&pool, target, &mut engine, CATCH_UP).await?;
        let delay = Duration::from_millis(rng.range(0, 1_500) as u64);
        tokio::time::sleep(delay).await;
        let text = engine.metrics().await?;
        engine.kill9()?;
        consumed.add(&text);
        let applied = count(&pool, "SELECT count(*) FROM event_ledger").await?;
        let outbox = count(&pool, "SELECT count(*) FROM outbox").await?;
        eprintln!(
            "[crash] kill -9 #{k} ({progress} events + {delay:?} after the restart): {applied} events applied, \
             {outbox} outbox rows pending, {} sent",
            sent.load(Ordering::SeqCst)
        );
        applied_at_kill.push(applied);
        last = applied;
        engine = EngineProcess::spawn(&format!("engine-{k}"), &env.settings, &logs)?;
        engine.wait_ready(READY).await?;
    }
    let landed = producing.await??;
    ensure!(landed.len() == msgs.len());
    pool.close().await;
    let Settled {
        rows,
        ledger,
        metrics,
        caught_up_in,
    } = settle(&env, &mut [&mut engine]).await?;
    eprintln!("[crash] caught up {caught_up_in:?} after the last restart");
    for text in &metrics {
        consumed.add(text);
    }

    // Every kill interrupted work in progress.
    ensure!(
        applied_at_kill
            .iter()
            .all(|a| (*a as usize) < work.events.len()),
        "a kill came after all the work was done: {applied_at_kill:?}"
    );
    ensure!(
        ledger as usize == work.events.len(),
        "{ledger} events in the ledger, {} sent",
        work.events.len()
    );
    consumed.ensure_exactly_once()?;
    ensure_no_diff(
        "crashed run against the expected figures",
        &diff_expected(&rows, &work.expect),
    )?;
    let published = check_outputs(&env, &rows).await?;

    let (reference, reference_rows, reference_published) = reference.finish(&env.settings).await?;
    ensure_no_diff(
        "clean run against the expected figures",
        &diff_expected(&reference_rows, &work.expect),
    )?;
    ensure_no_diff(
        "crashed run against the clean run",
        &diff_runs(&rows, &reference_rows, true),
    )?;
    let churn_path_dependent = rows
        .iter()
        .filter(|(id, r)| {
            reference_rows
                .get(*id)
                .map(|w| w.state.pointer("/status/churn/level"))
                != Some(r.state.pointer("/status/churn/level"))
        })
        .count();
    // Per customer, the same tier outputs with the same ce_ids, in the same order.
    let mut sequence_diffs = Vec::new();
    let everyone: std::collections::BTreeSet<&String> = published
        .tier
        .keys()
        .chain(reference_published.tier.keys())
        .collect();
    for customer in everyone {
        let ids = |p: &Published| -> Vec<(String, String)> {
            p.tier
                .get(customer)
                .map(|v| {
                    v.iter()
                        .map(|(id, ty, _, _)| (id.clone(), ty.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (got, want) = (ids(&published), ids(&reference_published));
        if got != want {
            sequence_diffs.push(format!("{customer}: {got:?}\n  clean run: {want:?}"));
        }
    }
    ensure_no_diff("tier outputs against the clean run", &sequence_diffs)?;
    let skipped = relay_skips_only_after_restarts(&logs)?;
    let programme = env.settings.load_programme()?;
    let churn_rules = &programme.churn;
    let hysteresis_only: Vec<String> = rows
        .iter()
        .filter_map(|(id, r)| {
            let want = reference_rows.get(id)?;
            let (got_level, want_level) = (churn_level(&r.state), churn_level(&want.state));
            if got_level == want_level {
                return None;
            }
            let score = r
                .state
                .pointer("/status/churn/score")
                .and_then(Value::as_f64);
            let explained = score.is_some_and(|s| {
                [got_level, want_level]
                    .iter()
                    .all(|l| level_allowed(*l, s, churn_rules))
            });
            (!explained).then(|| {
                format!(
                    "{id}: churn level {got_level:?} (clean run {want_level:?}) at score {score:?} \
                     is not explained by the hysteresis band"
                )
            })
        })
        .collect();
    // The churn levels that differ from the clean run (the order of a customer's topics decides
    // on which side of the hysteresis band it stays) must be levels the band allows at the
    // customer's score, which both runs agree on (the whole-state comparison above).
    ensure_no_diff("churn levels against the clean run", &hysteresis_only)?;
    eprintln!(
        "[crash] figures: events streamed {}, kills survived {kills} (at {applied_at_kill:?} events applied), \
         customers {}, outputs published {} ({} TierChanged, {} TierWillDowngrade, {} SegmentChanged, {} ChurnRiskChanged), \
         restarts whose relay found already-published rows {skipped}, tier outputs with ce_ids identical \
         to the clean run for all {} customers with tier outputs, messages consumed again after a restart {} \
         (skipped by offset: {}), lost 0, duplicated 0; customers whose churn level differs from the \
         clean run because of the order of their topics (each within the hysteresis band at its score): {churn_path_dependent}",
        work.events.len(),
        rows.len(),
        published.total,
        published.tier_changes,
        published.downgrade_warnings,
        published.segment_changes,
        published.churn_changes,
        reference_published.tier.len(),
        consumed.duplicate,
        consumed.replayed,
    );
    cleanup(reference).await?;
    cleanup(env).await
}

async fn kill_9_in_the_middle_of_large_batches_loses_and_doubles_nothing(
    broker: Broker,
) -> anyhow::Result<()> {
    let Begun { seed, env, logs } = begin(broker, "crash-batches", 0x6b69_7a75_6e61_0011).await?;
    // Production batching (up to 5,000 messages per transaction) on the wall clock: the input
    // arrives much faster than it is applied, so every restart starts with a backlog and each
    // kill lands in the middle of a large transaction or of the relay publishing its outputs.
    let plan = Plan::recent(seed, 20_000);
    let work = generate(&plan);
    eprintln!("[crash-batches] {}", work.summary());
    let msgs = Arc::new(work.messages(&plan));
    let n = msgs.len();

    let pool = env.pool().await?;
    let mut rng = Rng::new(seed ^ 0xdead);
    let kills: usize = 4;
    let mut engine = EngineProcess::spawn("engine-0", &env.settings, &logs)?;
    engine.wait_ready(READY).await?;
    let feeder = Feeder::new(&env.settings)?;
    // The input arrives in bursts, one per round, each much larger than what the engine applies
    // between two looks at the ledger: the kill lands while a burst is being applied.
    let chunks: Vec<&[Msg]> = msgs.chunks(n.div_ceil(kills + 1)).collect();
    let mut applied_at_kill = Vec::new();
    let mut busy_kills = 0;
    let mut sent = 0;
    let mut last = 0;
    let mut consumed = Consumed::default();
    for (k, chunk) in chunks.iter().enumerate().take(kills) {
        let k = k + 1;
        feeder.send_all(chunk).await?;
        sent += chunk.len();
        let progress = rng.range(1, i64::try_from(chunk.len() / 2).unwrap_or(1));
        wait_applied(&pool, last + progress, &mut engine, CATCH_UP).await?;
        let delay = Duration::from_millis(rng.range(0, 30) as u64);
        tokio::time::sleep(delay).await;
        let text = engine.metrics().await?;
        engine.kill9()?;
        consumed.add(&text);
        let applied = count(&pool, "SELECT count(*) FROM event_ledger").await?;
        let outbox = count(&pool, "SELECT count(*) FROM outbox").await?;
        let busy = (applied as usize) < sent || outbox > 0;
        busy_kills += usize::from(busy);
        eprintln!(
            "[crash-batches] kill -9 #{k}: {applied} events applied, {outbox} outbox rows pending, {sent} sent{}",
            if busy { "" } else { " (the engine was idle)" }
        );
        applied_at_kill.push(applied);
        last = applied;
        engine = EngineProcess::spawn(&format!("engine-{k}"), &env.settings, &logs)?;
        engine.wait_ready(READY).await?;
    }
    for chunk in chunks.iter().skip(kills) {
        feeder.send_all(chunk).await?;
    }
    pool.close().await;
    let Settled {
        rows,
        ledger,
        metrics,
        ..
    } = settle(&env, &mut [&mut engine]).await?;
    let text = metrics.concat();
    consumed.add(&text);
    let batches = metric_sum(&text, "kizuna_batch_events_count", &[]);

    // Timing on a shared machine is not exact: a kill may find the burst already applied. Most
    // must land on a busy engine, or the test did not test what it claims.
    ensure!(
        busy_kills * 2 >= kills,
        "only {busy_kills} of {kills} kills landed while the engine had work in hand: {applied_at_kill:?}"
    );
    consumed.ensure_exactly_once()?;
    let (reference, published) = ensure_complete(&env, &logs, &rows, ledger, &work).await?;
    let skipped = relay_skips_only_after_restarts(&logs)?;
    eprintln!(
        "[crash-batches] figures: events streamed {n}, kills survived {kills}, {busy_kills} of them on a busy engine (at {applied_at_kill:?} events \
         applied), the last engine committed the rest in {batches} batches, outputs published {}, restarts \
         whose relay found already-published rows {skipped}, messages consumed again after a restart {} \
         (skipped by offset: {}), lost 0, duplicated 0",
        published.total, consumed.duplicate, consumed.replayed,
    );
    cleanup(reference).await?;
    cleanup(env).await
}

/// Counts the relay's rounds that dropped outbox rows it found already published on the output
/// topics (outputs published just before a kill, whose rows the kill kept from being deleted).
/// That happens only after a restart: never in the first engine's run nor in the clean run,
/// whose outboxes start empty.
fn relay_skips_only_after_restarts(logs: &std::path::Path) -> anyhow::Result<usize> {
    let already_published = "outbox rows were published before a restart";
    for never in ["engine-0.log", "clean.log"] {
        let n = count_log_lines_in(&logs.join(never), already_published);
        ensure!(
            n == 0,
            "{never}: the relay dropped already-published rows {n} times without a restart"
        );
    }
    Ok(count_log_lines(logs, already_published))
}

/// A customer's churn level in the stored state (`low`, `medium`, `high`).
fn churn_level(state: &Value) -> Option<&str> {
    state.pointer("/status/churn/level").and_then(Value::as_str)
}

/// Whether a customer whose score is `score` may hold `level`: the level the score falls in, or
/// the level above it while the score is inside that level's hysteresis band (a level is left
/// downwards only when the score falls `hysteresis` below its threshold).
fn level_allowed(
    level: Option<&str>,
    score: f64,
    rules: &kizuna::domain::churn::ChurnRules,
) -> bool {
    let raw = if score >= rules.high_at {
        "high"
    } else if score >= rules.medium_at {
        "medium"
    } else {
        "low"
    };
    match level {
        Some(l) if l == raw => true,
        Some("high") => raw == "medium" && score >= rules.high_at - rules.hysteresis,
        Some("medium") => raw == "low" && score >= rules.medium_at - rules.hysteresis,
        _ => false,
    }
}
