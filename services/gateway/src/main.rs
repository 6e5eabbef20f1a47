//! `kizuna-gateway`: webhooks in, kizuna.v1 input events out.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use kizuna_gateway::config::Settings;
use kizuna_gateway::mapping::Mapping;
use kizuna_gateway::startup::Gateway;

/// jemalloc, as the engine: less time in the allocator per request than glibc's malloc.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "kizuna-gateway",
    version,
    about = "Kizuna's webhook gateway: Shopify, Zendesk, Typeform and Kizuna JSON in, kizuna.v1 input events out, answered after the broker's acknowledgement"
)]
struct Cli {
    /// The gateway's configuration file (TOML), over its defaults and under KIZUNA_GATEWAY_*
    /// variables.
    #[arg(long, short, env = "KIZUNA_GATEWAY_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// The engine's configuration file, read as the engine reads it (with KIZUNA_* variables):
    /// brokers, topics, input limits, programme.
    #[arg(long, env = "KIZUNA_CONFIG", global = true)]
    engine_config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run,
    /// Print the effective gateway configuration, secrets redacted.
    Config,
    /// Check the mapping file and print the effective mapping.
    CheckMapping,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    kizuna::startup::exit_code("kizuna-gateway", run(Cli::parse()).await)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    kizuna::telemetry::init(settings.log.format, &settings.log.level, std::io::stderr);
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let engine = kizuna::config::Settings::load(cli.engine_config.as_deref())?;
            let gateway = Gateway::build(settings, engine).await?;
            kizuna::startup::stop_on_shutdown_signal(gateway.stop_token());
            gateway.run_until_stopped().await
        }
        Command::Config => {
            print!("{}", settings.redacted_dump());
            Ok(())
        }
        Command::CheckMapping => {
            let mapping = Mapping::load(settings.mapping_file.as_deref())?;
            println!("{mapping:#?}");
            Ok(())
        }
    }
}
