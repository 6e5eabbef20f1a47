//! The console at scale: `--console-customers` (1,000,000) customers in the database, the real
//! engine binary serving `/console/`, and each page requested `--console-requests` times in a
//! row: p50 and p99 of the time to the last byte, measured on 127.0.0.1 (so server-side time
//! plus a loopback round trip).
//!
//! Seeding is fast: `--console-templates` (2,000) simulated customers (`kizuna_simulator`,
//! their year of events applied by the engine's own domain and written by its own
//! `customers::upsert`) are fanned out in SQL (`generate_series`) to the full population, each
//! copy with its own id (patched into the stored state, ids have one length) and its value at
//! risk spread. The copies have no ledger rows, so their timelines are empty: the customer page
//! is measured with its state, metrics, assessment and the timeline queries on an empty result.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use kizuna::domain::apply::{Changes, apply};
use kizuna::domain::ids::CustomerId;
use kizuna::domain::programme;
use kizuna::inputs::decode::WireEvent;
use kizuna::inputs::validate::{Limits, validate};
use kizuna::store::customers::{self, NO_ROW, Row};
use kizuna_proto::v1::input_event::Event;
use kizuna_simulator::calendar::DAY;
use kizuna_simulator::world::{World, WorldConfig};

use kizuna_testkit::Rng;

use crate::engine::Engine;
use crate::env::Stack;
use crate::scenarios::Ctx;

#[derive(Debug, Clone, Copy)]
pub struct ConsoleOptions {
    pub customers: u32,
    pub templates: u32,
    pub requests: usize,
}

/// One page's render times.
#[derive(Debug, Clone)]
pub struct PageTimes {
    pub page: String,
    pub status: u16,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug)]
pub struct ConsoleRun {
    pub customers: i64,
    pub seed_seconds: f64,
    pub first_figures_seconds: f64,
    pub pages: Vec<PageTimes>,
}

fn wire(event: Event) -> WireEvent {
    match event {
        Event::Purchase(p) => WireEvent::Purchase(p),
        Event::SupportTicket(t) => WireEvent::SupportTicket(t),
        Event::SurveyResponse(s) => WireEvent::Survey(s),
    }
}

/// `customers` customers `b000000…`, copies of `templates` simulated ones (a year of the
/// simulator's personas applied by the domain), then `VACUUM ANALYZE`.
pub async fn seed(pool: &sqlx::PgPool, customers: u32, templates_n: u32) -> anyhow::Result<()> {
    if templates_n > 99_999 || customers > 999_999 + 1 {
        bail!("at most 99,999 templates and 1,000,000 customers (ids have a fixed length)");
    }
    templates(pool, templates_n).await?;
    fan_out(pool, customers, templates_n).await
}

/// Template customers `bx00000…`: the simulator's personas over a year ending now, applied by
/// the domain and written with the engine's upsert.
async fn templates(pool: &sqlx::PgPool, n: u32) -> anyhow::Result<()> {
    let programme = programme::builtin();
    let settings = kizuna::config::Settings::load(None)?;
    let limits = Limits::new(&settings, &programme);
    let now = Utc::now();
    let end = now.timestamp() - DAY;
    let mut world = World::new(&WorldConfig {
        seed: 14,
        customers: n,
        customer_prefix: "bx".into(),
        run: "console".into(),
        start: end - 365 * DAY,
        end,
        mix: Default::default(),
    });
    let mut per: Vec<Vec<kizuna::domain::event::DomainEvent>> = vec![Vec::new(); n as usize];
    for ev in world.by_ref() {
        let key = ev.customer_id().to_owned();
        let i = ev.customer as usize;
        if let Ok(e) = validate(&wire(ev.event), Some(key.as_bytes()), &limits, now)
            && let Some(slot) = per.get_mut(i)
        {
            slot.push(e);
        }
    }
    let mut states = Vec::new();
    for (i, events) in per.iter_mut().enumerate() {
        events.sort_by_key(|e| e.meta.occurred_at);
        let id = CustomerId::parse(&format!("bx{i:05}"), 128).context("template id")?;
        let changes = Changes {
            events: events.iter().collect(),
            referred: Vec::new(),
        };
        let (state, metrics, _) = apply(&id, None, &changes, &programme, None, now);
        states.push((state, metrics));
    }
    let mut conn = pool.acquire().await?;
    for chunk in states.chunks(500) {
        let rows: Vec<Row<'_>> = chunk
            .iter()
            .map(|(state, metrics)| Row {
                state,
                home_partition: 0,
                metrics,
                replaces: NO_ROW,
                points: kizuna::store::points::Columns::of(&state.points, programme.points_rules()),
            })
            .collect();
        customers::upsert(&mut conn, &rows).await?;
    }
    Ok(())
}

/// The population: `n` customers `b000000…` copied from the templates.
async fn fan_out(pool: &sqlx::PgPool, n: u32, templates: u32) -> anyhow::Result<()> {
    let step = 100_000u32;
    let mut from = 0u32;
    while from < n {
        let to = (from + step).min(n);
        sqlx::query(
            "WITH t AS (
                 SELECT row_number() OVER (ORDER BY customer_id) - 1 AS k, * FROM customers
                 WHERE customer_id LIKE 'bx%'
             )
             INSERT INTO customers (customer_id, tier, lifetime_spend_minor, orders, home_partition,
                                    state, segment, next_check_at, churn_level, version,
                                    churn_play, value_at_risk, updated_at)
             SELECT i.id, t.tier, t.lifetime_spend_minor, t.orders, (g % 6)::int,
                    overlay(t.state PLACING convert_to(i.id, 'UTF8')
                            FROM position(convert_to(t.customer_id, 'UTF8') IN t.state) FOR 7),
                    t.segment, NULL, t.churn_level, 1, t.churn_play,
                    t.value_at_risk * (0.5 + (g % 997) / 997.0), now()
             FROM generate_series($1::int, $2::int - 1) AS g
             JOIN t ON t.k = g % $3
             CROSS JOIN LATERAL (SELECT 'b' || lpad(g::text, 6, '0') AS id) AS i",
        )
        .bind(i32::try_from(from)?)
        .bind(i32::try_from(to)?)
        .bind(i64::from(templates))
        .execute(pool)
        .await?;
        from = to;
        eprint!("\rkizuna-bench: {from} customers seeded   ");
    }
    eprintln!();
    sqlx::query("DELETE FROM customers WHERE customer_id LIKE 'bx%'")
        .execute(pool)
        .await?;
    sqlx::query("VACUUM ANALYZE customers")
        .execute(pool)
        .await?;
    Ok(())
}

/// The path of a page's next request (from a pseudo-random state, for customer pages).
type PathOf = Box<dyn Fn(&mut Rng) -> String>;

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub async fn run(ctx: &Ctx, stack: &Stack, opts: ConsoleOptions) -> anyhow::Result<ConsoleRun> {
    let env = stack.env("console", true, Some(&ctx.kizuna)).await?;
    let pool = env.pool().await?;
    let seeding = Instant::now();
    seed(&pool, opts.customers, opts.templates).await?;
    let seed_seconds = seeding.elapsed().as_secs_f64();
    let customers = customers::count(&pool).await?;

    let viewer = format!("bench-{}", env.id);
    let mut extra = ctx.engine_env.clone();
    extra.push(("KIZUNA_CONSOLE__VIEWER_TOKEN".into(), viewer.clone()));
    // The same token as the API's viewer (the reference row reads /v1/customers/…).
    extra.push(("KIZUNA_HTTP__TOKENS__BENCH__ROLE".into(), "viewer".into()));
    extra.push((
        "KIZUNA_HTTP__TOKENS__BENCH__SHA256".into(),
        kizuna::http::auth::hash_token(&viewer),
    ));
    extra.push(("KIZUNA_CONSOLE__REFRESH_SECS".into(), "60".into()));
    let mut engine = Engine::spawn(&ctx.kizuna, stack, &env, &extra, &ctx.log_dir, "console")?;
    let result = measure(&mut engine, &viewer, opts).await;
    engine.stop(Duration::from_secs(10)).await;
    pool.close().await;
    stack.drop_env(&env).await;
    let (first_figures_seconds, pages) = result?;
    Ok(ConsoleRun {
        customers,
        seed_seconds,
        first_figures_seconds,
        pages,
    })
}

async fn measure(
    engine: &mut Engine,
    token: &str,
    opts: ConsoleOptions,
) -> anyhow::Result<(f64, Vec<PageTimes>)> {
    engine.wait_ready(Duration::from_secs(120)).await?;
    let ready = Instant::now();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = engine.base_url();
    let login = http
        .post(format!("{base}/console/login"))
        .form(&[("token", token), ("next", "/console/")])
        .send()
        .await?;
    let cookie = login
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("the console login gave no session cookie")?
        .to_owned();
    // The overview's figures are counted once in the background after start.
    let first_figures_seconds = loop {
        let body = http
            .get(format!("{base}/console/"))
            .header(reqwest::header::COOKIE, &cookie)
            .send()
            .await?
            .text()
            .await?;
        if body.contains("id=\"total-customers\"") {
            break ready.elapsed().as_secs_f64();
        }
        if ready.elapsed() > Duration::from_secs(300) {
            bail!("the overview's figures were not counted within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        engine.check_alive()?;
    };
    // Page 2 of the queue: the first page's next link.
    let first = http
        .get(format!("{base}/console/churn"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await?
        .text()
        .await?;
    let next = first
        .split("id=\"next\" rel=\"next\" href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .map(|s| s.replace("&amp;", "&"))
        .context("the churn queue has no second page")?;
    let mut rng_id = Rng::new(7919);
    let pages: Vec<(String, PathOf)> = vec![
        ("overview".into(), Box::new(|_| "/console/".into())),
        ("churn queue".into(), Box::new(|_| "/console/churn".into())),
        (
            "churn queue, page 2".into(),
            Box::new(move |_| next.clone()),
        ),
        (
            "churn queue, hostages + vip_outreach".into(),
            Box::new(|_| "/console/churn?segment=hostage&play=vip_outreach&tier=&level=".into()),
        ),
        (
            "churn queue, high + platinum".into(),
            Box::new(|_| "/console/churn?level=high&tier=platinum&play=&segment=".into()),
        ),
        (
            "churn CSV".into(),
            Box::new(|_| "/console/churn.csv".into()),
        ),
        (
            "customer".into(),
            Box::new(move |r: &mut Rng| {
                format!(
                    "/console/customers/b{:06}",
                    r.below(u64::from(opts.customers))
                )
            }),
        ),
        (
            "search (found: redirect)".into(),
            Box::new(|_| "/console/search?q=b000042".into()),
        ),
        (
            "search (not found: ids nearby)".into(),
            Box::new(|_| "/console/search?q=b0000420".into()),
        ),
        (
            "programme".into(),
            Box::new(|_| "/console/programme".into()),
        ),
        (
            "API customer (reference)".into(),
            Box::new(move |r: &mut Rng| {
                format!("/v1/customers/b{:06}", r.below(u64::from(opts.customers)))
            }),
        ),
    ];
    let mut out = Vec::new();
    for (name, path) in &pages {
        let mut samples = Vec::with_capacity(opts.requests);
        let mut status = 0;
        for i in 0..opts.requests + 3 {
            let url = format!("{base}{}", path(&mut rng_id));
            let started = Instant::now();
            let resp = http
                .get(&url)
                .header(reqwest::header::COOKIE, &cookie)
                .bearer_auth(token)
                .send()
                .await?;
            status = resp.status().as_u16();
            let _ = resp.bytes().await?;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if i >= 3 {
                samples.push(ms); // the first three warm the caches
            }
        }
        samples.sort_by(f64::total_cmp);
        out.push(PageTimes {
            page: name.clone(),
            status,
            p50_ms: percentile(&samples, 0.5),
            p99_ms: percentile(&samples, 0.99),
            max_ms: samples.last().copied().unwrap_or(0.0),
        });
    }
    Ok((first_figures_seconds, out))
}

pub fn print(run: &ConsoleRun, opts: ConsoleOptions) {
    println!(
        "console: {} customers (seeded in {:.0} s from {} simulated templates); overview figures first counted {:.1} s after ready; {} requests per page",
        run.customers, run.seed_seconds, opts.templates, run.first_figures_seconds, opts.requests
    );
    println!(
        "  {:<40} {:>6} {:>10} {:>10} {:>10}",
        "page", "status", "p50 ms", "p99 ms", "max ms"
    );
    for p in &run.pages {
        println!(
            "  {:<40} {:>6} {:>10.1} {:>10.1} {:>10.1}{}",
            p.page,
            p.status,
            p.p50_ms,
            p.p99_ms,
            p.max_ms,
            if p.p99_ms >= 300.0 {
                "  OVER 300 ms"
            } else {
                ""
            }
        );
    }
}
