//! `kizuna`: the loyalty engine and its operator commands.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kizuna::config::Settings;
use kizuna::startup::{Application, load_programme};
use kizuna::{kafka, store, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "kizuna",
    version,
    about = "Kizuna, a real-time customer-loyalty engine"
)]
struct Cli {
    /// Configuration file (TOML), layered over the defaults and under KIZUNA_* variables.
    #[arg(long, short, env = "KIZUNA_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the engine (the default).
    Run,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage Kafka topics.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Print the effective configuration, secrets redacted.
    Config,
    /// Check the tier programme file and print it.
    CheckProgramme,
    /// Follow the output topics and print each event as one line.
    Watch {
        /// Start from the oldest retained event instead of now.
        #[arg(long)]
        from_beginning: bool,
        /// Also show the dead-letter topic.
        #[arg(long)]
        dead_letters: bool,
        /// Write this file once positioned (for scripts).
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create the input, output and dead-letter topics that do not exist yet.
    Create,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kizuna: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    telemetry::init(settings.log.format, &settings.log.level, std::io::stderr);
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let app = Application::build(settings).await?;
            let stop = app.stop_token();
            tokio::spawn(async move {
                wait_for_signal().await;
                tracing::info!("shutdown requested");
                stop.cancel();
            });
            app.run_until_stopped().await
        }
        Command::Migrate => {
            let pool = store::pool(settings.database_url(), 2)?;
            store::migrate(&pool).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Topics {
            command: TopicsCommand::Create,
        } => {
            let created = kafka::create_topics(&settings.kafka).await?;
            if created.is_empty() {
                eprintln!("all topics exist");
            } else {
                eprintln!("created topics: {}", created.join(", "));
            }
            Ok(())
        }
        Command::Config => {
            print!("{}", settings.redacted_dump());
            Ok(())
        }
        Command::Watch {
            from_beginning,
            dead_letters,
            ready_file,
        } => {
            let stop = tokio_util::sync::CancellationToken::new();
            let on_signal = stop.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                on_signal.cancel();
            });
            let options = kizuna::watch::WatchOptions {
                from_beginning,
                dead_letters,
                ready_file,
            };
            kizuna::watch::watch(&settings.kafka, options, stop).await
        }
        Command::CheckProgramme => {
            let programme = load_programme(&settings)?;
            print!(
                "{}",
                toml::to_string_pretty(&programme).context("printing the programme")?
            );
            Ok(())
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
