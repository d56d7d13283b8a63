//! The `teal` binary: parse the command line, set up logging, validate the
//! command's config, run the command.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use teal::cli::{Cli, Command, LogFormat};
use teal::settings::{DrainSettings, RolloutSettings, Settings, SettingsError};

fn main() -> ExitCode {
    one_malloc_arena();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("teal: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async_main())
}

async fn async_main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("teal: {error:#}");
            // 2, as clap exits for a command line that can never work.
            let never_works = error.is::<SettingsError>();
            ExitCode::from(if never_works { 2 } else { 1 })
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => {
            let settings = Settings::for_run(args)?;
            settings.warn_if_exposed();
            teal::app::run(settings).await
        }
        Command::Render(args) => teal::oneshot::render(Settings::for_render(args.shape)?, args.context).await,
        Command::Check(args) => teal::oneshot::check(Settings::for_check(args)?).await,
        Command::Status(args) => teal::oneshot::status(args.into()).await,
        Command::Rollout(args) => teal::rollout::run(RolloutSettings::new(args)?).await,
        Command::Switch(args) => teal::switch::run(args.into()).await,
        Command::Drain(args) => teal::drain::run(DrainSettings::new(args)?).await,
        Command::Maintenance(args) => teal::controls::command::run(args.into()).await,
        Command::Pause(args) => teal::controls::command::run(args.into()).await,
        Command::Resume(args) => teal::controls::command::run(args.into()).await,
    }
}

/// glibc gives each thread that allocates an arena of its own, and memory
/// freed in one is kept there: with 10,000 containers, one arena for all of
/// teal's threads was 6 MiB less RSS (69.0 -> 62.8 MiB, measured with
/// `MALLOC_ARENA_MAX=1`). Set before the runtime starts its threads.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn one_malloc_arena() {
    // SAFETY: mallopt only sets an allocator parameter; it is called before
    // any other thread exists. A refusal (0) leaves glibc's default.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn one_malloc_arena() {}

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
