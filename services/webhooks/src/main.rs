//! `kizuna-webhooks`: webhook delivery of the engine's outputs.

use std::path::PathBuf;

use clap::Parser;
use kizuna_webhooks::config::Settings;
use kizuna_webhooks::startup::Application;

#[derive(Debug, Parser)]
#[command(
    name = "kizuna-webhooks",
    version,
    about = "Kizuna webhook delivery: the engine's output topics posted to subscribers as Standard Webhooks"
)]
struct Cli {
    /// Configuration file (TOML), layered over the defaults and under KIZUNA_WEBHOOKS_* variables.
    #[arg(long, short, env = "KIZUNA_WEBHOOKS_CONFIG")]
    config: Option<PathBuf>,
    /// Apply pending database migrations and exit.
    #[arg(long)]
    migrate_only: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    kizuna::startup::exit_code("kizuna-webhooks", run(Cli::parse()).await)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    kizuna::telemetry::init(settings.log.format, &settings.log.level, std::io::stdout);
    if cli.migrate_only {
        let pool = kizuna::store::pool(settings.database_url(), 1)?;
        kizuna::store::migrate(&pool).await?;
        return Ok(());
    }
    let app = Application::build(settings).await?;
    kizuna::startup::stop_on_shutdown_signal(app.stop_token());
    app.run_until_stopped().await
}
