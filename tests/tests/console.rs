//! The console in a real browser. The engine runs in-process on a fresh database and fresh
//! topics; the simulator's personas (a known seed, a year of history) arrive through Kafka; a
//! churn model is fitted and applied; then tests/console/browser.py drives Debian's Chromium
//! with Playwright over every page, in English and Japanese, and checks what it sees against
//! the figures this test reads from the database and the API (points included: the programme is
//! `config/programme-points.toml`, so the year's purchases earn and refunds claw back). Finally the what-if it ran in
//! the browser is compared with a real `recompute` on a copy of the database.
//!
//! Needs deploy/local/prereqs.sh (Chromium, the Playwright virtualenv, axe-core).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use kizuna::config::Clock;
use kizuna_e2e::{Broker, TestEnv, admin_database_url, wait_for};
use kizuna_simulator::calendar::DAY;
use kizuna_simulator::run::{RunOptions, run};
use kizuna_simulator::sink::{KafkaSink, Sink, Topics};
use kizuna_simulator::world::{World, WorldConfig};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn cache_dir() -> PathBuf {
    PathBuf::from(std::env::var("KIZUNA_CACHE_DIR").unwrap_or_else(|_| "/var/cache/kizuna".into()))
}

/// The simulated year, ending at a fixed moment (event-time clock: "now" is its last event).
fn world(id: &str) -> WorldConfig {
    let end = 1_767_225_600; // 2026-01-01T00:00:00Z
    WorldConfig {
        seed: 14,
        customers: 400,
        customer_prefix: format!("c{id}-"),
        run: id.to_owned(),
        start: end - 365 * DAY,
        end,
        mix: Default::default(),
    }
}

async fn tier_by_customer(pool: &PgPool) -> anyhow::Result<BTreeMap<String, String>> {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT customer_id, tier FROM customers")
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().collect())
}

async fn counts(pool: &PgPool, column: &str) -> anyhow::Result<BTreeMap<String, i64>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT COALESCE({column}, 'none'), count(*) FROM customers GROUP BY 1"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// The programme the console runs with, relative to the repository.
const POINTS_PROGRAMME: &str = "services/loyalty-engine/config/programme-points.toml";

/// What the customer page's points section must show, from the stored state folded at `now`
/// (the console's own fold is checked against it), and whether a refund clawed points back.
async fn points_of(
    pool: &PgPool,
    programme: &kizuna::domain::programme::Programme,
    id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Value> {
    use kizuna::domain::points::MovementKind;
    let state = kizuna::store::customers::get(pool, id)
        .await?
        .with_context(|| format!("customer {id}"))?;
    let rules = programme
        .points_rules()
        .context("the programme has points")?;
    let folded = state.points.fold(rules, now);
    let open: i64 = folded.lots.iter().map(|l| l.remaining).sum();
    if open != folded.available + folded.pending {
        bail!("{id}: the lots ({open}) do not add up to available + pending ({folded:?})");
    }
    let moved = state
        .points
        .movements
        .iter()
        .filter(|m| !matches!(m.kind, MovementKind::Activity))
        .count();
    let clawed = state
        .points
        .movements
        .iter()
        .any(|m| matches!(m.kind, MovementKind::Clawback { .. }));
    Ok(json!({
        "available": folded.available,
        "pending": folded.pending,
        "debt": folded.debt,
        "movements": moved,
        "clawback": clawed,
    }))
}

kizuna_e2e::on_each_broker! {
    the_console_in_a_real_browser: tansu_skip = "the browser test checks the console's pages, \
        not the broker; it runs on Apache Kafka only, to keep the suite's time (a run takes minutes)",
}

async fn the_console_in_a_real_browser(broker: Broker) -> anyhow::Result<()> {
    let python = cache_dir().join("venv-console/bin/python");
    let axe = cache_dir().join("console-node/node_modules/axe-core/axe.min.js");
    if !python.exists() || !axe.exists() || !PathBuf::from("/usr/bin/chromium").exists() {
        bail!(
            "the browser tests need deploy/local/prereqs.sh (missing {} or {} or /usr/bin/chromium)",
            python.display(),
            axe.display()
        );
    }
    let mut env = TestEnv::on(broker).await?;
    env.settings.clock = Clock::EventTime;
    let viewer = format!("viewer-{}", env.id);
    let admin = format!("admin-{}", env.id);
    env.settings.console.viewer_token = Some(SecretString::from(viewer.clone()));
    env.settings.console.admin_token = Some(SecretString::from(admin.clone()));
    env.settings.console.refresh_secs = 1;
    // The demo's programme: the built-in rules plus [points] (issue 16), so purchases earn and
    // refunds claw back, and the pages show it.
    env.settings.programme_file = Some(repo().join(POINTS_PROGRAMME));
    let app = env.start().await?;
    let pool = env.pool().await?;

    // 1. A year of the simulator's personas, through Kafka.
    let topics = &env.settings.kafka.topics;
    let mut sink = Sink::Kafka(KafkaSink::new(
        &env.settings.kafka.brokers,
        Topics {
            purchases: topics.purchases.clone(),
            tickets: topics.support_tickets.clone(),
            surveys: topics.surveys.clone(),
        },
    )?);
    let mut w = World::new(&world(&env.id));
    let summary = run(
        &mut w,
        &mut sink,
        RunOptions {
            max_events: 0,
            rate: 0.0,
            progress: false,
        },
    )
    .await?;
    let sent = i64::try_from(summary.events)?;
    wait_for(
        "every simulated event applied or dead-lettered",
        Duration::from_secs(300),
        || async {
            let (applied,): (i64,) = sqlx::query_as("SELECT count(*) FROM event_ledger")
                .fetch_one(&pool)
                .await?;
            let (dead,): (i64,) =
                sqlx::query_as("SELECT COALESCE(sum(n), 0)::bigint FROM dead_letter_counts")
                    .fetch_one(&pool)
                    .await?;
            Ok((applied + dead >= sent).then_some(()))
        },
    )
    .await?;

    // One refused message, for the overview's dead letters.
    env.producer()?
        .send(&topics.purchases, Some("nobody"), b"{not json", &[])
        .await?;
    wait_for(
        "the dead letter counted",
        Duration::from_secs(60),
        || async {
            let (dead,): (i64,) =
                sqlx::query_as("SELECT COALESCE(sum(n), 0)::bigint FROM dead_letter_counts")
                    .fetch_one(&pool)
                    .await?;
            Ok((dead >= 1).then_some(()))
        },
    )
    .await?;

    // 2. A churn model, then a recompute so every row carries CLV and value at risk with it.
    let now: (chrono::DateTime<chrono::Utc>,) =
        sqlx::query_as("SELECT max(max_event_time) FROM engine_clock")
            .fetch_one(&pool)
            .await?;
    let programme = env.settings.load_programme()?;
    kizuna::commands::fit_model::run(&pool, &programme, now.0, Default::default()).await?;
    let some_buyer: (String,) = sqlx::query_as(
        "SELECT customer_id FROM customers WHERE orders >= 3 ORDER BY customer_id LIMIT 1",
    )
    .fetch_one(&pool)
    .await?;
    app.wait_for_customer(&some_buyer.0, "the fitted model in use", |c| {
        c["churn_assessment"]["model_version"].is_i64()
    })
    .await?;
    let token = env
        .settings
        .http
        .admin_token
        .as_ref()
        .map(|t| secrecy::ExposeSecret::expose_secret(t).to_owned())
        .unwrap_or_default();
    app.http
        .post(app.url("/v1/admin/recompute"))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?;
    wait_for("the recompute", Duration::from_secs(120), || async {
        let r: Value = app
            .http
            .get(app.url("/v1/admin/recompute"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        match r["recompute"]["state"].as_str() {
            Some("finished") => Ok(Some(())),
            Some("failed") => bail!("recompute failed: {r}"),
            _ => Ok(None),
        }
    })
    .await?;

    // 3. What the pages must show, from the database.
    let hostage: Option<(String,)> = sqlx::query_as(
        "SELECT customer_id FROM customers WHERE segment = 'hostage' ORDER BY value_at_risk DESC NULLS LAST, customer_id LIMIT 1",
    )
    .fetch_optional(&pool)
    .await?;
    let Some((hostage,)) = hostage else {
        bail!("the seeded year has no hostage");
    };
    let queue: Vec<(String,)> = sqlx::query_as(
        "SELECT customer_id FROM customers WHERE churn_level IN ('medium', 'high')
         ORDER BY value_at_risk DESC NULLS LAST, customer_id LIMIT 50",
    )
    .fetch_all(&pool)
    .await?;
    if queue.len() < 5 {
        bail!(
            "the churn queue is too short to check its order: {}",
            queue.len()
        );
    }
    let loyal: Option<(String,)> = sqlx::query_as(
        "SELECT customer_id FROM customers WHERE segment = 'loyal' ORDER BY customer_id LIMIT 1",
    )
    .fetch_optional(&pool)
    .await?;
    let mut check_ids = vec![hostage.clone(), queue[0].0.clone()];
    check_ids.extend(loyal.map(|(l,)| l));
    // Points: the simulator's purchases earned and some of its refunds clawed back. One
    // customer whose refund took points back is shown too.
    let all: Vec<(String,)> =
        sqlx::query_as("SELECT customer_id FROM customers ORDER BY customer_id")
            .fetch_all(&pool)
            .await?;
    let mut clawed_back = None;
    let mut earned_total = 0i64;
    for (id,) in &all {
        let p = points_of(&pool, &programme, id, now.0).await?;
        earned_total += p["available"].as_i64().unwrap_or(0) + p["pending"].as_i64().unwrap_or(0);
        if clawed_back.is_none() && p["clawback"] == json!(true) {
            clawed_back = Some(id.clone());
        }
    }
    assert!(earned_total > 0, "the simulated year earned no points");
    let clawed_back = clawed_back.context("no refund in the simulated year clawed points back")?;
    if !check_ids.contains(&clawed_back) {
        check_ids.push(clawed_back.clone());
    }
    let mut points = serde_json::Map::new();
    for id in &check_ids {
        points.insert(id.clone(), points_of(&pool, &programme, id, now.0).await?);
    }
    let rewards = programme.points_rules().map_or(0, |r| r.rewards.len());
    let artifacts = std::env::var("KIZUNA_CONSOLE_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("tests/artifacts/console"));
    std::fs::create_dir_all(&artifacts)?;
    let gold = programme
        .tiers
        .iter()
        .position(|t| t.name == "gold")
        .context("the built-in programme has gold")?;
    let expected = json!({
        "base": app.url(""),
        "viewer_token": viewer,
        "admin_token": admin,
        // The API's viewer token (the page checks compare the console with the API).
        "api_token": env.tokens().viewer,
        "tiers": counts(&pool, "tier").await?,
        "segments": counts(&pool, "segment").await?,
        "levels": counts(&pool, "churn_level").await?,
        "dead_letters": sqlx::query_as::<_, (String, i64)>(
            "SELECT reason, sum(n)::bigint FROM dead_letter_counts GROUP BY 1"
        )
        .fetch_all(&pool)
        .await?
        .into_iter()
        .collect::<BTreeMap<String, i64>>(),
        "hostage": hostage,
        "queue": queue.iter().map(|(c,)| c.clone()).collect::<Vec<_>>(),
        "customers": check_ids,
        "points": points,
        "clawed_back": clawed_back,
        "rewards": rewards,
        "whatif": { "tier_index": gold, "min_spend": 120000 },
        "axe": axe,
        "artifacts": artifacts,
    });
    let dir = std::env::temp_dir().join(format!("kizuna-console-{}", env.id));
    std::fs::create_dir_all(&dir)?;
    let expected_path = dir.join("expected.json");
    let results_path = dir.join("results.json");
    std::fs::write(&expected_path, serde_json::to_vec_pretty(&expected)?)?;

    // 4. The browser.
    let status = tokio::process::Command::new(&python)
        .arg(repo().join("tests/console/browser.py"))
        .arg(&expected_path)
        .arg(&results_path)
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(Duration::from_secs(600), status)
        .await
        .context("the browser script ran for more than 10 minutes")??;
    let results: Value = serde_json::from_slice(
        &std::fs::read(&results_path).context("the browser script wrote no results")?,
    )?;
    println!("{}", serde_json::to_string_pretty(&results)?);
    if !status.success() {
        bail!(
            "the browser checks failed ({status}): {}",
            results["failures"]
        );
    }
    let moves: BTreeMap<(String, String), u64> = results["whatif"]["moves"]
        .as_array()
        .context("what-if moves")?
        .iter()
        .filter_map(|m| {
            Some((
                (m[0].as_str()?.to_owned(), m[1].as_str()?.to_owned()),
                m[2].as_u64()?,
            ))
        })
        .collect();

    // 5. The what-if against a real recompute on a copy of the database, at the same "now".
    let before = tier_by_customer(&pool).await?;
    pool.close().await;
    app.stop().await?;
    let copy = format!("{}_whatif", env.database);
    // A template must have no other session: the stopped engine's last connections may take a
    // moment to go, so end them (they are this test's own) and retry.
    wait_for(
        "a copy of the database",
        Duration::from_secs(60),
        || async {
            let mut c = PgConnection::connect(&admin_database_url()).await?;
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&env.database)
            .execute(&mut c)
            .await?;
            sqlx::query(&format!("CREATE DATABASE {copy} TEMPLATE {}", env.database))
                .execute(&mut c)
                .await?;
            Ok(Some(()))
        },
    )
    .await?;
    let programme_file = dir.join("programme.toml");
    let changed = std::fs::read_to_string(repo().join(POINTS_PROGRAMME))?
        .replace("min_spend_minor = 100000", "min_spend_minor = 120000");
    std::fs::write(&programme_file, changed)?;
    let mut settings = env.settings.clone();
    settings.programme_file = Some(programme_file);
    let (base, _) = env.database_url.rsplit_once('/').context("database url")?;
    settings.database.url = SecretString::from(format!("{base}/{copy}"));
    let core = kizuna::commands::open(&settings).await?;
    let now = chrono::DateTime::parse_from_rfc3339(
        results["whatif"]["now"].as_str().context("what-if now")?,
    )?
    .with_timezone(&chrono::Utc);
    kizuna::engine::recompute::run(&core, now, 500, |_, _| {}).await?;
    let after = tier_by_customer(&core.pool).await?;
    core.pool.close().await;
    let mut real: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (id, tier) in &after {
        let was = before.get(id).context("customer in both")?;
        if was != tier {
            *real.entry((was.clone(), tier.clone())).or_default() += 1;
        }
    }
    // FORCE cannot end an autovacuum worker in the fresh copy: the shared drop retries.
    kizuna_testkit::database::drop(&admin_database_url(), &copy, Duration::from_secs(30)).await?;
    assert!(
        !real.is_empty(),
        "gold at 120,000 moves nobody: a weak check"
    );
    assert_eq!(moves, real, "what-if in the console vs recompute on a copy");
    env.cleanup().await?;
    Ok(())
}
