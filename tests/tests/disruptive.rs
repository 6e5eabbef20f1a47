//! Guarantees under faults that disturb everyone on the machine: PostgreSQL stopped for 30 s,
//! a broker restarted. Each is a fault run (`kizuna_e2e::guarantees::FaultRun`): the same
//! workload streaming into one engine, the fault in the middle, then the same checks (every
//! event once, no duplicate, the oracle's figures, every output once, the clean run's states).
//! Run alone, one test at a time (`tests/run.sh` does:
//! `cargo test -p kizuna-e2e --test disruptive -- --test-threads 1`), never beside other tests.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::ensure;
use kizuna_e2e::Broker;
use kizuna_e2e::guarantees::faults::PgStopped;
use kizuna_e2e::guarantees::{FaultRun, Pace};
use kizuna_e2e::process::metric_sum;

kizuna_e2e::on_each_broker! {
    postgres_down_for_30_s_pauses_consumption_and_loses_nothing,
    broker_restart_mid_stream_the_engine_resumes_and_loses_nothing:
        tansu_skip = "memory-only tansu forgets every topic when it restarts: there is nothing to \
                      resume (deploy/local/BROKERS.md)",
}

async fn postgres_down_for_30_s_pauses_consumption_and_loses_nothing(
    broker: Broker,
) -> anyhow::Result<()> {
    // About a minute of input: it keeps coming while the database is down.
    let pace = Pace {
        chunk: 100,
        pause: Duration::from_millis(500),
    };
    let mut run = FaultRun::start(
        broker,
        "postgres-outage",
        0x6b69_7a75_6e61_0004,
        pace,
        1_000,
    )
    .await?;

    let outage = Duration::from_secs(30);
    let sent_before = run.sent();
    let stopped = PgStopped::stop()?;
    let down_at = Instant::now();
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    let mut not_503 = Vec::new();
    while down_at.elapsed() < outage {
        run.engine.ensure_running()?;
        let answer = run.engine.readyz().await;
        if answer != Some(503) {
            not_503.push((down_at.elapsed(), answer));
        }
        *answers
            .entry(answer.map_or("no answer".to_owned(), |s| s.to_string()))
            .or_default() += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let sent_during = run.sent() - sent_before;
    stopped.start()?;
    let up_at = Instant::now();
    run.engine.wait_ready(Duration::from_secs(120)).await?;
    let ready_after = up_at.elapsed();
    eprintln!(
        "[postgres-outage] PostgreSQL down for {:?}; /readyz answers meanwhile: {answers:?}; \
         {sent_during} messages produced meanwhile; ready again {ready_after:?} after the start",
        up_at - down_at
    );
    ensure!(
        answers.get("503").copied().unwrap_or(0) > 0,
        "/readyz never said 503 while PostgreSQL was down: {answers:?}"
    );
    ensure!(
        not_503.is_empty(),
        "/readyz answered other than 503 while PostgreSQL was down: {not_503:?}"
    );
    ensure!(sent_during > 0, "no input arrived during the outage");

    let (n, applied_before) = (run.n, run.applied_before);
    let outcome = run.finish().await?;
    let failures = metric_sum(&outcome.metrics, "kizuna_batch_failures_total", &[]);
    ensure!(
        failures > 0.0,
        "no batch failed while the database was down: consumption did not notice"
    );
    eprintln!(
        "[postgres-outage] figures on {broker}: events streamed {n}, {applied_before} applied before \
         the outage, PostgreSQL down {outage:?}, /readyz 503 {} times and never 200 while down, ready \
         {ready_after:?} after the restart, batch attempts failed and retried {failures}, outputs \
         published {}, lost 0, doubled 0",
        answers.get("503").copied().unwrap_or(0),
        outcome.published.total
    );
    Ok(())
}

async fn broker_restart_mid_stream_the_engine_resumes_and_loses_nothing(
    broker: Broker,
) -> anyhow::Result<()> {
    let pace = Pace {
        chunk: 100,
        pause: Duration::from_millis(300),
    };
    let mut run =
        FaultRun::start(broker, "broker-restart", 0x6b69_7a75_6e61_0005, pace, 1_000).await?;

    let sent_before = run.sent();
    let restarting = Instant::now();
    tokio::task::spawn_blocking(move || broker.restart()).await??;
    let restart_took = restarting.elapsed();
    let sent_during = run.sent() - sent_before;
    eprintln!(
        "[broker-restart] {broker} restarted in {restart_took:?} with {} events applied; \
         {sent_during} messages acknowledged during the restart",
        run.applied_before
    );
    run.engine.ensure_running()?;

    let (n, applied_before) = (run.n, run.applied_before);
    let outcome = run.finish().await?;
    eprintln!(
        "[broker-restart] figures on {broker}: events streamed {n}, broker restarted after \
         {applied_before} applied (restart took {restart_took:?}), caught up {:?} after the stream \
         ended, outputs published {}, lost 0, doubled 0",
        outcome.caught_up_in, outcome.published.total
    );
    Ok(())
}
