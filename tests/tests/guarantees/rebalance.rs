//! Two instances: one joins, one leaves, and the result is the single instance's.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::ensure;

use kizuna_e2e::Broker;
use kizuna_e2e::guarantees::*;
use kizuna_e2e::process::{EngineProcess, metric_sum};

kizuna_e2e::on_each_broker! {
    two_instances_one_joining_one_leaving_give_the_single_instance_result,
}

// ---------------------------------------------------------------------------------------------
// 3. Two instances

async fn two_instances_one_joining_one_leaving_give_the_single_instance_result(
    broker: Broker,
) -> anyhow::Result<()> {
    let Begun { seed, env, logs } = begin(broker, "two-instances", 0x6b69_7a75_6e61_0003).await?;
    let plan = Plan::recent(seed, 16_000);
    let work = generate(&plan);
    eprintln!("[two-instances] {}", work.summary());
    let msgs = Arc::new(work.messages(&plan));
    let n = msgs.len();

    let mut a = EngineProcess::spawn("engine-a", &env.settings, &logs)?;
    a.wait_ready(READY).await?;
    let feeder = Arc::new(Feeder::new(&env.settings)?);
    let sent = Arc::new(AtomicUsize::new(0));
    let producing = stream(
        feeder,
        msgs.clone(),
        200,
        Duration::from_millis(200),
        sent.clone(),
    );

    wait_sent(&sent, n / 4).await?;
    let mut b = EngineProcess::spawn("engine-b", &env.settings, &logs)?;
    b.wait_ready(READY).await?;
    // Both own partitions: the group has rebalanced across the two.
    let assigned = "kizuna_assigned_partitions";
    kizuna_e2e::wait_for(
        "both instances to own partitions",
        Duration::from_secs(60),
        || async {
            let (pa, pb) = (
                metric(&a, assigned, &[]).await?,
                metric(&b, assigned, &[]).await?,
            );
            Ok((pa > 0.0 && pb > 0.0).then_some((pa, pb)))
        },
    )
    .await?;
    let both_at = sent.load(Ordering::SeqCst);
    ensure!(
        both_at < n,
        "B owned partitions only after the whole stream was sent"
    );
    wait_sent(&sent, (n * 2 / 3).max(both_at + n / 10).min(n)).await?;
    let a_applied = metric(
        &a,
        "kizuna_events_consumed_total",
        &[("outcome", "applied")],
    )
    .await?;
    let b_applied_before = metric(
        &b,
        "kizuna_events_consumed_total",
        &[("outcome", "applied")],
    )
    .await?;
    let stopping = Instant::now();
    let status = a.terminate(Duration::from_secs(60)).await?;
    let stop_took = stopping.elapsed();
    ensure!(
        status.success(),
        "SIGTERM: engine A exited with {status}; log tail:\n{}",
        a.log_tail(30)
    );
    let stopped_at = sent.load(Ordering::SeqCst);
    ensure!(
        stopped_at < n,
        "A stopped only after the whole stream was sent"
    );
    producing.await??;

    let Settled {
        rows,
        ledger,
        metrics,
        ..
    } = settle(&env, &mut [&mut b]).await?;
    let b_applied = metric_sum(
        &metrics.concat(),
        "kizuna_events_consumed_total",
        &[("outcome", "applied")],
    );

    ensure!(
        a_applied > 0.0 && b_applied_before > 0.0,
        "both instances applied events while both ran (A {a_applied}, B {b_applied_before})"
    );
    ensure!(
        ledger as usize == n,
        "{ledger} events in the ledger, {n} sent"
    );
    ensure_no_diff(
        "states against the expected figures",
        &diff_expected(&rows, &work.expect),
    )?;
    let published = check_outputs(&env, &rows).await?;
    let (reference, reference_published) = against_reference(
        &env,
        &logs,
        "single",
        |_| {},
        &rows,
        "two instances against a single instance",
    )
    .await?;
    eprintln!(
        "[two-instances] figures: events streamed {n}, B joined after {both_at} sent, A stopped (SIGTERM, \
         exit 0 in {stop_took:?}) after {stopped_at} sent; applied by A {a_applied}, by B {b_applied}; \
         outputs published {} (single instance: {}), duplicated 0, lost 0",
        published.total, reference_published.total
    );
    cleanup(reference).await?;
    cleanup(env).await
}
