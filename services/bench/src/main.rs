//! `kizuna-bench`: Kizuna's benchmarks, run from one command.
//!
//! Against the real broker and the real PostgreSQL, with the real engine binary as a child
//! process: sustained end-to-end throughput, the naive one-event-per-transaction baseline, the
//! database ceiling (the engine's writes as raw batched upserts), end-to-end latency at fixed
//! offered rates, and memory over a long run. In-process, without Kafka or PostgreSQL: the
//! churn-risk quality against simulated ground truth.

mod churn;
mod cli;
mod console;
mod cost;
mod engine;
mod env;
mod fit;
mod fit_command;
mod gateway;
mod produce;
mod report;
mod scenarios;
mod suite;
mod workload;

use std::time::Duration;

use clap::Parser;

use crate::cli::{Args, Scenario, wanted};
use crate::env::Stack;
use crate::suite::{engine_scenarios, print_gateway};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!("kizuna-bench {}", env!("CARGO_PKG_VERSION"));
    for (k, v) in env::machine_facts() {
        println!("  {k:<13} {v}");
    }

    if wanted(&args, Scenario::Clean) {
        let stack = Stack::new(&args.brokers, &args.database_url, args.partitions, false);
        let (dbs, topics) = stack.remove_leftovers().await?;
        println!("removed {dbs} bench databases and {topics} bench topics");
    }
    let engine_needed = [
        Scenario::Throughput,
        Scenario::Naive,
        Scenario::Latency,
        Scenario::Memory,
        Scenario::Ceiling,
        Scenario::Console,
        Scenario::Points,
        Scenario::Zipf,
        Scenario::FitCommand,
    ]
    .into_iter()
    .any(|s| wanted(&args, s));
    let mut failed = None;
    if engine_needed {
        let stack = Stack::new(
            &args.brokers,
            &args.database_url,
            args.partitions,
            args.keep,
        );
        {
            let stack = stack.clone();
            tokio::spawn(async move {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(t) => t,
                        Err(_) => return,
                    };
                let stopped = tokio::select! {
                    r = tokio::signal::ctrl_c() => r.is_ok(),
                    r = term.recv() => r.is_some(),
                };
                if stopped {
                    eprintln!("kizuna-bench: interrupted; cleaning up…");
                    stack.cleanup_all().await;
                    std::process::exit(130);
                }
            });
        }
        let result = engine_scenarios(&args, &stack).await;
        stack.cleanup_all().await;
        if let Err(e) = result {
            eprintln!("kizuna-bench: {e:#}");
            failed = Some(e);
        }
    }
    if wanted(&args, Scenario::Gateway) {
        println!();
        let stack = Stack::new(
            &args.brokers,
            &args.database_url,
            args.partitions,
            args.keep,
        );
        let opts = gateway::GatewayOptions {
            clients: args.gateway_clients.max(1),
            duration: Duration::from_secs(args.gateway_seconds.max(1)),
            warm_up: Duration::from_secs(args.gateway_warm_up),
        };
        let result = gateway::run(&stack, opts).await;
        stack.cleanup_all().await;
        match result {
            Ok(run) => print_gateway(&run, opts),
            Err(e) => {
                eprintln!("kizuna-bench: gateway: {e:#}");
                failed = Some(e);
            }
        }
    }
    if wanted(&args, Scenario::Churn) {
        println!();
        let opts = churn::ChurnOptions {
            customers: args.churn_customers,
            seed: args.seed,
            history_days: args.churn_history_days,
            holdout_days: args.churn_holdout_days,
            end: args.churn_end,
            sweep_days: args.churn_sweep_days,
            late_grace_days: 28,
        };
        let report = tokio::task::spawn_blocking(move || churn::run(&opts)).await??;
        churn::print(&report);
    }
    if wanted(&args, Scenario::Fit) {
        println!();
        let (customers, seed, as_of) = (args.fit_customers, args.seed, args.churn_end);
        let report =
            tokio::task::spawn_blocking(move || fit::run(customers, seed, as_of)).await??;
        fit::print(&report);
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
