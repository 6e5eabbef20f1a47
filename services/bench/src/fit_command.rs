//! `kizuna-bench fit-command`: `kizuna fit-model` itself, the release binary as a child
//! process, over `--fit-customers` customers stored in PostgreSQL: the read of every state,
//! the pooling, the purchase models' fits and choice, and the churn weights learned on a
//! sample, as an operator runs it. The customers are seeded as the console scenario seeds them
//! (simulated templates copied in SQL), so their histories repeat and the fits see few distinct
//! summaries; `kizuna-bench fit` measures the fits over a million distinct histories.

use std::time::Instant;

use anyhow::Context;
use kizuna::store::customers;
use kizuna_testkit::process::run_command_of;

use crate::console;
use crate::env::Stack;
use crate::scenarios::Ctx;

/// What the scenario measured.
#[derive(Debug)]
pub struct CommandRun {
    pub customers: i64,
    pub seed_seconds: f64,
    pub command_seconds: f64,
    /// The command's report (it writes it to stderr).
    pub report: String,
}

pub async fn run(
    ctx: &Ctx,
    stack: &Stack,
    customers_n: u32,
    templates: u32,
) -> anyhow::Result<CommandRun> {
    let env = stack.env("fit_command", false, Some(&ctx.kizuna)).await?;
    let result = async {
        let pool = env.pool().await?;
        let seeding = Instant::now();
        console::seed(&pool, customers_n, templates).await?;
        let seed_seconds = seeding.elapsed().as_secs_f64();
        let customers = customers::count(&pool).await?;
        pool.close().await;
        eprintln!(
            "kizuna-bench: fit-command: {customers} customers seeded; running kizuna fit-model…"
        );
        let (bin, settings) = (ctx.kizuna.clone(), env.settings.clone());
        let started = Instant::now();
        let (ok, _stdout, stderr) =
            tokio::task::spawn_blocking(move || run_command_of(&bin, &settings, &["fit-model"]))
                .await
                .context("the fit-model runner panicked")??;
        let command_seconds = started.elapsed().as_secs_f64();
        anyhow::ensure!(ok, "kizuna fit-model failed: {stderr}");
        anyhow::Ok(CommandRun {
            customers,
            seed_seconds,
            command_seconds,
            report: stderr,
        })
    }
    .await;
    stack.drop_env(&env).await;
    result
}

pub fn print(r: &CommandRun) {
    println!(
        "kizuna fit-model over {} customers in PostgreSQL (seeded in {:.0} s): {:.1} s (issue 17 asks under 60 s)",
        r.customers, r.seed_seconds, r.command_seconds
    );
    for line in r.report.lines().filter(|l| !l.trim().is_empty()).take(14) {
        println!("  {line}");
    }
}
