//! The command line: backfill a year of history from a file or stdin, fit the churn model,
//! export the scores and recompute every customer; backfill ten-year-old history with the
//! default ledger retention.

use kizuna_e2e::{Broker, TestEnv};
use serde_json::json;

use crate::helpers::kizuna_cli;
use crate::inputs::purchase_at;

kizuna_e2e::on_each_broker! {
    backfill_fit_model_export_scores_and_recompute_from_the_cli,
    old_history_is_judged_against_the_backfills_own_clock,
}

/// Runs a kizuna command that must succeed; returns what it printed on stderr.
fn succeeds(env: &TestEnv, args: &[&str], stdin: Option<&[u8]>) -> anyhow::Result<String> {
    let (ok, _, err) = kizuna_cli(env, args, stdin)?;
    anyhow::ensure!(ok, "kizuna {} failed: {err}", args.join(" "));
    Ok(err)
}

/// `kizuna backfill PATH` on the event-time clock without outputs; returns its stderr.
fn quiet_backfill(env: &TestEnv, path: &str) -> anyhow::Result<String> {
    succeeds(
        env,
        &["backfill", path, "--clock", "event-time", "--no-outputs"],
        None,
    )
}

/// A year of purchases for `customers` customers, as InputEvent JSON lines: each buys on
/// their own rhythm; every fifth stops after a few months.
fn history(customers: usize, end: chrono::DateTime<chrono::Utc>) -> Vec<String> {
    let mut lines = Vec::new();
    let mut seed: u64 = 0x5eed;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as f64 / (1u64 << 31) as f64
    };
    for c in 0..customers {
        let id = format!("hist-{c:04}");
        let rhythm = 5.0 + next() * 40.0;
        let stop = if c % 5 == 0 {
            60.0 + next() * 120.0
        } else {
            365.0
        };
        let mut day = next() * 30.0;
        let mut n = 0;
        while day < stop.min(364.0) {
            let at = end - chrono::Duration::days(365)
                + chrono::Duration::minutes((day * 1440.0) as i64);
            let amount = 1_000 + (next() * 9_000.0) as i64;
            let purchase = purchase_at(
                &format!("{id}-e{n}"),
                &id,
                &format!("{id}-o{n}"),
                amount,
                at,
            );
            lines.push(json!({ "purchase": purchase }).to_string());
            n += 1;
            day += rhythm * (0.5 + next());
        }
    }
    lines
}

async fn backfill_fit_model_export_scores_and_recompute_from_the_cli(
    broker: Broker,
) -> anyhow::Result<()> {
    let env = TestEnv::on(broker).await?;
    let end = chrono::Utc::now() - chrono::Duration::days(1);
    let mut lines = history(300, end);
    let valid = lines.len();
    lines.insert(10, "{\"purchase\": {\"eventId\": \"broken\"".to_owned());
    lines.insert(20, String::new());
    lines.insert(30, json!({ "surveyResponse": { "eventId": "s", "customerId": "hist-0001", "occurredAt": end.to_rfc3339(), "surveyId": "x", "kind": "SURVEY_KIND_NPS", "score": 11 } }).to_string());
    let file = std::env::temp_dir().join(format!("kizuna-backfill-{}.jsonl", env.id));
    std::fs::write(&file, lines.join("\n"))?;
    let path = file.to_string_lossy().into_owned();

    let err = quiet_backfill(&env, &path)?;
    assert!(
        err.contains("line 11: unparseable"),
        "bad lines are reported by number: {err}"
    );
    assert!(err.contains("line 31: score_out_of_range"), "{err}");
    assert!(err.contains(&format!("{valid} events applied")), "{err}");
    assert!(err.contains("2 bad lines skipped"), "{err}");
    // --no-outputs: the states are there, no output event was queued or logged.
    let pool = env.pool().await?;
    let (states, queued, logged): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM outbox), (SELECT count(*) FROM output_log)",
    )
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    assert!(states > 0, "the backfill wrote no customer");
    assert_eq!((queued, logged), (0, 0), "--no-outputs queued outputs");
    // Running it again applies nothing twice.
    let err = succeeds(&env, &["backfill", &path, "--clock", "event-time"], None)?;
    assert!(
        err.contains("0 events applied") && err.contains(&format!("{valid} already applied")),
        "{err}"
    );
    // The same events from stdin, under another source name: deduplicated by event id.
    let err = succeeds(
        &env,
        &["backfill", "-", "--clock", "event-time"],
        Some(lines.join("\n").as_bytes()),
    )?;
    assert!(err.contains(&format!("{valid} duplicates")), "{err}");

    let pool = env.pool().await?;
    let (customers,): (i64,) = sqlx::query_as("SELECT count(*) FROM customers")
        .fetch_one(&pool)
        .await?;
    assert_eq!(customers, 300);

    let err = succeeds(&env, &["fit-model", "--clock", "event-time"], None)?;
    assert!(err.contains("stored as model version 1"), "{err}");
    // The churn driver weights step reports, and stores a row exactly when it learned them.
    assert!(err.contains("churn driver weights"), "{err}");
    let (weight_rows,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM churn_weights WHERE model_version = 1")
            .fetch_one(&pool)
            .await?;
    assert_eq!(weight_rows == 1, !err.contains("not learned"), "{err}");
    let (r, converged_customers): (f64, f64) =
        sqlx::query_as("SELECT r, customers FROM churn_models WHERE version = 1")
            .fetch_one(&pool)
            .await?;
    assert!(
        r > 0.0 && converged_customers >= 299.0,
        "r {r}, customers {converged_customers}"
    );
    // Every model was fitted and one chosen by the time split, with its evidence stored.
    for name in ["bgnbd", "pareto-nbd", "mbgnbd"] {
        assert!(err.contains(name), "the report's table lists {name}: {err}");
    }
    assert!(err.contains("chosen: "), "{err}");
    let (chosen, selection): (String, String) =
        sqlx::query_as("SELECT model, selection FROM churn_models WHERE version = 1")
            .fetch_one(&pool)
            .await?;
    let candidates: Vec<(String, bool, Option<f64>, String)> = sqlx::query_as(
        "SELECT model, chosen, holdout_mae, reason FROM churn_model_candidates WHERE version = 1 ORDER BY model",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(candidates.len(), 3, "{candidates:?}");
    assert_eq!(
        candidates
            .iter()
            .filter(|c| c.1)
            .map(|c| &c.0)
            .collect::<Vec<_>>(),
        vec![&chosen]
    );
    // A year of history leaves room for the 91-day holdout: every candidate has a holdout error
    // or says why not (a calibration fit that did not converge), and the chosen one has the
    // smallest error.
    assert!(
        selection.starts_with("time-split holdout")
            && candidates
                .iter()
                .all(|c| c.2.is_some_and(|m| m >= 0.0) || c.3.contains("holdout: ")),
        "{selection} {candidates:?}"
    );
    let best = candidates
        .iter()
        .filter_map(|c| c.2.map(|m| (m, &c.0)))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| name);
    assert_eq!(best, Some(&chosen), "{candidates:?}");
    // A harness may force one model.
    let (ok, _, err) = kizuna_cli(
        &env,
        &[
            "fit-model",
            "--clock",
            "event-time",
            "--model",
            "pareto-nbd",
        ],
        None,
    )?;
    assert!(ok, "{err}");
    assert!(err.contains("stored as model version 2"), "{err}");
    let (forced, s): (String, Option<f64>) =
        sqlx::query_as("SELECT model, s FROM churn_models WHERE version = 2")
            .fetch_one(&pool)
            .await?;
    assert!(forced == "pareto-nbd" && s.is_some(), "{forced} {s:?}");
    let (ok, _, err) = kizuna_cli(&env, &["fit-model", "--model", "nope"], None)?;
    assert!(
        !ok && err.contains("invalid value 'nope'")
            && err.contains("auto, bgnbd, pareto-nbd, mbgnbd"),
        "{err}"
    );

    let as_of = end.to_rfc3339();
    let (ok, csv, err) = kizuna_cli(
        &env,
        &["export-scores", "--as-of", &as_of, "--horizon-days", "90"],
        None,
    )?;
    assert!(ok, "{err}");
    let mut rows = csv.lines();
    assert_eq!(
        rows.next(),
        Some(
            "customer_id,p_alive,expected_purchases,clv,churn_risk,churn_level,tier,segment,points_available,points_pending,points_debt,points_balance,model"
        )
    );
    let rows: Vec<Vec<&str>> = rows.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 300);
    let risk = |id: &str| -> f64 {
        rows.iter()
            .find(|r| r[0] == id)
            .and_then(|r| r[4].parse().ok())
            .unwrap_or(f64::NAN)
    };
    // Customers who stopped months ago rank above those who kept buying.
    let stopped: Vec<f64> = (0..300)
        .step_by(5)
        .map(|c| risk(&format!("hist-{c:04}")))
        .collect();
    let active: Vec<f64> = (1..300)
        .step_by(5)
        .map(|c| risk(&format!("hist-{c:04}")))
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(
        mean(&stopped) > mean(&active) + 0.3,
        "stopped {} vs active {}",
        mean(&stopped),
        mean(&active)
    );
    for r in &rows {
        let p_alive: f64 = r[1].parse()?;
        assert!((0.0..=1.0).contains(&p_alive), "{r:?}");
        // The engine's cache loaded the latest version, the forced Pareto/NBD.
        assert_eq!(r[12], "pareto-nbd", "{r:?}");
    }

    let err = succeeds(&env, &["recompute", "--clock", "event-time"], None)?;
    assert!(err.contains("recomputed 300 customers"), "{err}");
    let err = succeeds(&env, &["recompute", "--clock", "event-time"], None)?;
    assert!(
        err.contains("0 tier changes, 0 with different points, 0 output events"),
        "a second recompute finds no difference: {err}"
    );

    std::fs::remove_file(&file).ok();
    env.cleanup().await
}

fn utc(y: i32, m: u32, d: u32) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc
        .with_ymd_and_hms(y, m, d, 12, 0, 0)
        .single()
        .unwrap_or_else(|| panic!("{y}-{m}-{d} is a date"))
}

/// History from 2016 to 2018, ten years before the wall clock, with the default retention
/// (3 years): judged against the wall clock it is all too old; against the backfill's own
/// clock (its newest event, 2018-12-20) it loads, except a 2015 event (older than 3 years
/// before it) and a 1979 one (before `ingest.earliest_event_time`), each refused with what to
/// set. Once the pruning job has deleted events, older ones are refused whatever the clock.
async fn old_history_is_judged_against_the_backfills_own_clock(
    broker: Broker,
) -> anyhow::Result<()> {
    let env = TestEnv::on(broker).await?;
    assert_eq!(env.settings.ledger.retention_days, 1095, "the default");
    let mut lines = Vec::new();
    for c in 0..20 {
        let id = format!("old-{c:02}");
        let days = [(2016, 1, 10), (2016, 9, 1), (2017, 5, 20), (2018, 2, 2)];
        for (n, (y, m, d)) in days.iter().enumerate() {
            let p = purchase_at(
                &format!("{id}-e{n}"),
                &id,
                &format!("{id}-o{n}"),
                2_000,
                utc(*y, *m, 1 + (*d + c) % 28),
            );
            lines.push(json!({ "purchase": p }).to_string());
        }
    }
    let valid = lines.len();
    let newest = purchase_at("newest", "old-00", "o-newest", 3_000, utc(2018, 12, 20));
    lines.push(json!({ "purchase": newest }).to_string());
    let stale = purchase_at("stale", "old-01", "o-stale", 3_000, utc(2015, 12, 1));
    lines.insert(5, json!({ "purchase": stale }).to_string());
    let ancient = purchase_at("ancient", "old-02", "o-ancient", 3_000, utc(1979, 6, 1));
    lines.insert(7, json!({ "purchase": ancient }).to_string());
    let file = std::env::temp_dir().join(format!("kizuna-old-history-{}.jsonl", env.id));
    std::fs::write(&file, lines.join("\n"))?;
    let path = file.to_string_lossy().into_owned();

    // Against the wall clock, as the engine judges: everything is too old.
    let err = succeeds(
        &env,
        &[
            "backfill",
            &path,
            "--clock",
            "event-time",
            "--retention-clock",
            "wall",
            "--source",
            "wall",
        ],
        None,
    )?;
    assert!(err.contains("0 events applied"), "{err}");
    assert!(
        err.contains("line 1: too_old") && err.contains("ledger.retention_days"),
        "{err}"
    );

    // Against its own clock (the default): loads, except the two.
    let err = quiet_backfill(&env, &path)?;
    assert!(
        err.contains(&format!("{} events applied", valid + 1)),
        "{err}"
    );
    assert!(err.contains("2 bad lines skipped"), "{err}");
    assert!(err.contains("line 6: too_old"), "the 2015 event: {err}");
    assert!(
        err.contains("line 8: invalid_timestamp") && err.contains("ingest.earliest_event_time"),
        "the 1979 event: {err}"
    );
    let pool = env.pool().await?;
    let (customers, events, oldest): (i64, i64, Option<chrono::DateTime<chrono::Utc>>) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM event_ledger), (SELECT min(occurred_at) FROM event_ledger)",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!((customers, events), (20, i64::try_from(valid + 1)?));
    assert_eq!(
        oldest,
        Some(utc(2016, 1, 1)),
        "ten-year-old history is in the ledger"
    );

    // The engine's pruning job (wall clock, 3 years) deletes them all and records how far.
    let pruner = kizuna::pruner::Pruner {
        pool: pool.clone(),
        retention: chrono::Duration::days(1095),
        every: std::time::Duration::from_secs(3600),
        metrics: kizuna::metrics::Metrics::new(),
    };
    assert_eq!(pruner.prune_once().await?, Some(u64::try_from(valid + 1)?));
    // The same history again, from stdin: it may have been applied, so it is refused, not
    // applied twice.
    let err = succeeds(
        &env,
        &["backfill", "-", "--clock", "event-time"],
        Some(lines.join("\n").as_bytes()),
    )?;
    assert!(err.contains("0 events applied"), "{err}");
    assert!(err.contains("up to which the ledger was pruned"), "{err}");
    pool.close().await;
    std::fs::remove_file(&file).ok();
    env.cleanup().await
}
