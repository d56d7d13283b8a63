//! The `teal` binary: parse the command line, set up logging, run the command.

use std::io::IsTerminal;

use clap::Parser;
use teal::cli::{Cli, Command, LogFormat};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let settings = cli.settings;
    let result = match cli.command {
        Command::Run => teal::app::run(settings).await,
        Command::Render { context } => teal::oneshot::render(settings, context).await,
        Command::Check => teal::oneshot::check(settings).await,
        Command::Status { json } => teal::oneshot::status(settings, json).await,
        Command::Rollout(args) => teal::rollout::run(settings, args).await,
        Command::Switch(args) => teal::switch::run(settings, args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("teal: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, so `teal render` output on stdout stays a clean config.
fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TEAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
