//! The command line. Every flag has a `TEAL_*` environment twin.

use clap::{Parser, Subcommand, ValueEnum};

use crate::settings::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "teal",
    version,
    about = "Label-driven HAProxy sidecar for zero-downtime Docker deploys"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub settings: Settings,
    /// Log lines as human text or JSON.
    #[arg(long, global = true, env = "TEAL_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch Docker and keep HAProxy's config and servers in step (the daemon).
    Run,
    /// Discover once and print the rendered haproxy.cfg; non-zero on any error.
    Render {
        /// Print the template context (JSON) instead of the config.
        #[arg(long)]
        context: bool,
    },
    /// Discover once, render, and validate the result with `haproxy -c`.
    Check,
    /// Ask the running daemon (at --status-bind) what it sees, as a table.
    Status {
        /// Print the raw /status JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replace a service's containers with new ones (same config, new image), rolling back if they do not come up.
    Rollout(crate::rollout::RolloutArgs),
    /// Blue/green: swap the slots of a service between the live frontend and the preview listener.
    Switch(crate::switch::SwitchArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_after_the_subcommand() {
        let cli =
            Cli::try_parse_from(["teal", "run", "--label-prefix", "t1", "--http-bind", "127.0.0.1:8080"]).unwrap();
        assert_eq!(cli.settings.label_prefix, "t1");
        assert_eq!(cli.settings.http_bind.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn bad_values_are_refused_with_the_grammar() {
        let err = Cli::try_parse_from(["teal", "run", "--reload", "restart"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("supervise"), "{err}");
        assert!(Cli::try_parse_from(["teal", "run", "--label-prefix", "a b"]).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
