//! The command line as typed: one clap struct per subcommand, holding only
//! the flags that subcommand reads (`teal switch --http-bind` is refused).
//! Every flag has a `TEAL_*` environment twin. [`crate::settings`] turns
//! these into the validated config each command runs with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::duration::parse_duration;
use crate::model::labels::{parse_hold, ServiceName, Slot};
use crate::model::HeaderName;
use crate::settings::{
    parse_acme_email, parse_certs_dir, parse_label_prefix, BindAddr, ReloadMode, SwarmMode, DEFAULT_ACME_DIRECTORY,
    DEFAULT_CONFIG, DEFAULT_DEBOUNCE, DEFAULT_HAPROXY, DEFAULT_HOLD, DEFAULT_HTTPS_BIND, DEFAULT_HTTP_BIND,
    DEFAULT_LABEL_PREFIX, DEFAULT_RELOAD, DEFAULT_STATE_DIR, DEFAULT_STATUS_BIND,
};

#[derive(Debug, Parser)]
#[command(
    name = "teal",
    version,
    about = "Label-driven HAProxy sidecar for zero-downtime Docker deploys",
    after_help = "Flags go after the subcommand; `teal <COMMAND> --help` lists that command's. \
                  Durations: 500ms, 2s, 1m30s; a bare number is milliseconds."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log lines as human text or JSON.
    #[arg(long, global = true, env = "TEAL_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch Docker and keep HAProxy's config and servers in step (the daemon).
    Run(RunArgs),
    /// Discover once and print the rendered haproxy.cfg; non-zero on any error.
    Render(RenderArgs),
    /// Discover once, render, and validate the result with `haproxy -c`.
    Check(CheckArgs),
    /// Ask the running daemon (at --status-bind) what it sees, as a table.
    Status(StatusArgs),
    /// Replace a service's containers with new ones (same config, new image), rolling back if they do not come up.
    Rollout(RolloutArgs),
    /// Blue/green: swap the slots of a service between the live frontend and the preview listener.
    Switch(SwitchArgs),
    /// Take a container out of rotation and wait until no request is in flight on it (a pre-stop hook).
    Drain(DrainArgs),
    /// Put an http service in maintenance (every request gets a 503 page) or take it out; kept across restarts.
    Maintenance(MaintenanceArgs),
    /// Hold every request of an http service (for a migration, say) until `teal resume` or --max.
    Pause(PauseArgs),
    /// End a `teal pause`: the held requests go on to the service's servers.
    Resume(ResumeArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub shape: ShapeArgs,

    /// Where the rendered haproxy.cfg is written (atomically).
    #[arg(long, env = "TEAL_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,

    #[command(flatten)]
    pub haproxy: HaproxyArgs,

    /// How HAProxy picks up a new config: supervise, pidfile:PATH, container:NAME, master-socket:PATH or none.
    #[arg(long, env = "TEAL_RELOAD", default_value = DEFAULT_RELOAD)]
    pub reload: ReloadMode,

    /// Least time between two reloads, so a burst that needs one gets one; server changes never wait.
    #[arg(long, env = "TEAL_DEBOUNCE", default_value = DEFAULT_DEBOUNCE, value_parser = parse_duration)]
    pub debounce: Duration,

    /// Basic auth for the status endpoint (dashboard, /status, /metrics; not /healthz, /readyz): a file of
    /// `user:bcrypt-hash` lines, as `htpasswd -nB USER` prints them [default: none].
    #[arg(long, env = "TEAL_STATUS_AUTH")]
    pub status_auth: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub shape: ShapeArgs,

    /// Print the template context (JSON) instead of the config.
    #[arg(long)]
    pub context: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub shape: ShapeArgs,

    #[command(flatten)]
    pub haproxy: HaproxyArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the raw /status JSON.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub status: StatusBindArgs,

    #[command(flatten)]
    pub state_dir: StateDirArgs,
}

#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// The service to replace: the value of its PREFIX.service label. A Swarm service (on a manager) is updated by
    /// Swarm, start-first, and rolled back through Swarm on failure.
    #[arg(value_parser = ServiceName::parse)]
    pub service: ServiceName,

    /// Image of the replacements (an older tag is a rollback) [default: what each old container's image reference points to now].
    #[arg(long, env = "TEAL_ROLLOUT_IMAGE")]
    pub image: Option<String>,

    /// How long the replacements get to be healthy and UP in HAProxy before the rollout is rolled back.
    #[arg(long, env = "TEAL_ROLLOUT_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// How long each old container gets to finish its requests in flight once out of rotation (it stops as soon
    /// as it is idle); also the grace period of its `docker stop`, between SIGTERM and SIGKILL.
    #[arg(long, env = "TEAL_ROLLOUT_DRAIN", default_value = "10s", value_parser = parse_duration)]
    pub drain: Duration,

    /// Canary: once the replacements are UP, give them these percentages of the service's traffic in turn, by
    /// weight (e.g. 10,50,100), each held for --step and judged from HAProxy's counters of new vs old servers;
    /// a step that fails rolls back at once. After the last step they get all the traffic.
    #[arg(long, env = "TEAL_ROLLOUT_CANARY", value_delimiter = ',', value_parser = parse_canary_step)]
    pub canary: Vec<u8>,

    /// How long each canary step is held before it is judged.
    #[arg(long, env = "TEAL_ROLLOUT_STEP", default_value = "30s", value_parser = parse_duration, requires = "canary")]
    pub step: Duration,

    /// Roll the canary back when the new servers' errors (5xx, connection and response errors) in a step exceed
    /// this share of their requests.
    #[arg(long, env = "TEAL_ROLLOUT_MAX_ERROR_RATE", default_value = "1%", value_parser = parse_rate, requires = "canary")]
    pub max_error_rate: f64,

    /// Roll the canary back when the new servers' average response time exceeds the old servers' by this factor
    /// (e.g. 1.5; times under 5 ms count as 5 ms) [default: not judged].
    #[arg(long, env = "TEAL_ROLLOUT_MAX_LATENCY_RATIO", value_parser = parse_ratio, requires = "canary")]
    pub max_latency_ratio: Option<f64>,

    /// Requests the new servers must serve in a canary step before it is judged; a step waits for them up to
    /// 5 x --step, then rolls back (too little traffic to tell).
    #[arg(long, env = "TEAL_ROLLOUT_MIN_REQUESTS", default_value_t = 100, requires = "canary")]
    pub min_requests: u64,

    /// Canary for previews: while the new containers have a share, a request carrying this header (any value)
    /// goes to one of them, whatever the weights; http services only. Setting and ending the rule each take a
    /// reload.
    #[arg(long, env = "TEAL_ROLLOUT_CANARY_HEADER", value_name = "NAME", value_parser = HeaderName::parse, requires = "canary")]
    pub canary_header: Option<HeaderName>,

    #[command(flatten)]
    pub docker: DockerArgs,

    #[command(flatten)]
    pub state_dir: StateDirArgs,

    #[command(flatten)]
    pub status: StatusBindArgs,
}

#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// The service to flip: the value of its PREFIX.service label.
    #[arg(value_parser = ServiceName::parse)]
    pub service: ServiceName,

    /// Make this slot live (blue or green) instead of flipping; nothing to do when it already is.
    #[arg(long, env = "TEAL_SWITCH_TO")]
    pub to: Option<Slot>,

    /// Switch even when no server of the slot going live is UP, or no daemon answers (it applies the choice when it starts).
    #[arg(long, env = "TEAL_SWITCH_FORCE")]
    pub force: bool,

    /// How long to wait for the daemon to apply the switch.
    #[arg(long, env = "TEAL_SWITCH_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,

    #[command(flatten)]
    pub state_dir: StateDirArgs,

    #[command(flatten)]
    pub status: StatusBindArgs,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 once HAProxy has no request in flight on the container (or it is not \
                  running, or teal leaves it out), 1 when --timeout passes first (it stays out of rotation), no \
                  teal answers at --status-bind or that teal does not route it, \
                  2 for a bad command line. The container stays drained, across restarts of teal and of the \
                  container, until it is removed or `teal drain CONTAINER --undo`. As a pre-stop hook: \
                  `teal drain web-1 --timeout 30s && docker stop web-1`."
)]
pub struct DrainArgs {
    /// The container to drain: its name or id (as `docker inspect` takes them).
    pub container: String,

    /// How long to wait for its requests in flight to finish.
    #[arg(long, env = "TEAL_DRAIN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Put the container back into rotation instead (once it is ready).
    #[arg(long)]
    pub undo: bool,

    #[command(flatten)]
    pub docker: DockerHostArgs,

    #[command(flatten)]
    pub state_dir: StateDirArgs,

    #[command(flatten)]
    pub status: StatusBindArgs,
}

#[derive(Debug, Args)]
pub struct MaintenanceArgs {
    /// The service: the value of its PREFIX.service label.
    #[arg(value_parser = ServiceName::parse)]
    pub service: ServiceName,

    /// on: every request gets the maintenance page (503, Retry-After); off: served again.
    pub state: OnOff,

    /// The text of the maintenance page (plain text, shown escaped).
    #[arg(long, env = "TEAL_MAINTENANCE_MESSAGE", value_parser = parse_message)]
    pub message: Option<String>,

    #[command(flatten)]
    pub control: ControlArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// The service: the value of its PREFIX.service label.
    #[arg(value_parser = ServiceName::parse)]
    pub service: ServiceName,

    /// The pause ends by itself after this (at most 5m): held requests are open connections.
    #[arg(long, env = "TEAL_PAUSE_MAX", default_value = "30s", value_parser = parse_pause)]
    pub max: Duration,

    #[command(flatten)]
    pub control: ControlArgs,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The service: the value of its PREFIX.service label.
    #[arg(value_parser = ServiceName::parse)]
    pub service: ServiceName,

    #[command(flatten)]
    pub control: ControlArgs,
}

/// Where `teal maintenance`, `pause` and `resume` write, and whom they ask.
#[derive(Debug, Args)]
pub struct ControlArgs {
    /// How long to wait for the daemon to apply the change.
    #[arg(long, env = "TEAL_CONTROL_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,

    #[command(flatten)]
    pub state_dir: StateDirArgs,

    #[command(flatten)]
    pub status: StatusBindArgs,
}

/// A canary step: a percentage of the traffic, `10` or `10%`.
fn parse_canary_step(value: &str) -> Result<u8, String> {
    match value.trim().trim_end_matches('%').parse::<u8>() {
        Ok(percent) if (1..=100).contains(&percent) => Ok(percent),
        _ => Err("a whole percentage from 1 to 100, e.g. 10,50,100".into()),
    }
}

/// A share written as a percentage, `1%` or `0.5%`, as a fraction.
fn parse_rate(value: &str) -> Result<f64, String> {
    let bad = || "a percentage from 0% to 100%, e.g. 1% or 0.5%".to_owned();
    let percent: f64 = value
        .trim()
        .strip_suffix('%')
        .ok_or_else(bad)?
        .parse()
        .map_err(|_| bad())?;
    if (0.0..=100.0).contains(&percent) {
        Ok(percent / 100.0)
    } else {
        Err(bad())
    }
}

fn parse_ratio(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(ratio) if ratio.is_finite() && ratio > 0.0 => Ok(ratio),
        _ => Err("a factor above 0, e.g. 1.5 (new servers at most 50% slower)".into()),
    }
}

fn parse_message(value: &str) -> Result<String, String> {
    use crate::controls::MAX_MESSAGE_LEN;
    if value.len() > MAX_MESSAGE_LEN {
        Err(format!(
            "at most {MAX_MESSAGE_LEN} bytes: HAProxy serves the page from one buffer"
        ))
    } else {
        Ok(value.to_owned())
    }
}

fn parse_pause(value: &str) -> Result<Duration, String> {
    let max = parse_duration(value)?;
    if max.is_zero() || max > crate::controls::MAX_PAUSE {
        Err(format!(
            "between 1s and {}: held requests are open connections",
            humantime::format_duration(crate::controls::MAX_PAUSE)
        ))
    } else {
        Ok(max)
    }
}

/// What shapes haproxy.cfg: the flags `run`, `render` and `check` share, so
/// `render` and `check` show what `run` would do with the same flags.
#[derive(Debug, Args)]
pub struct ShapeArgs {
    #[command(flatten)]
    pub docker: DockerArgs,

    #[command(flatten)]
    pub state_dir: StateDirArgs,

    #[command(flatten)]
    pub status: StatusBindArgs,

    /// Handlebars template for haproxy.cfg, watched for changes [default: the embedded haproxy/haproxy.cfg.hbs].
    #[arg(long, env = "TEAL_TEMPLATE")]
    pub template: Option<PathBuf>,

    /// Address of the shared HTTP frontend.
    #[arg(long, env = "TEAL_HTTP_BIND", default_value = DEFAULT_HTTP_BIND)]
    pub http_bind: BindAddr,

    /// Blue/green: address of the preview listener, which serves the slot that is not live [default: none].
    #[arg(long, env = "TEAL_PREVIEW_BIND")]
    pub preview_bind: Option<BindAddr>,

    /// Blue/green: the preview listener's HTTPS side, with the certificates of --certs and ACME
    /// (needs --preview-bind, and --certs or --acme-email) [default: none].
    #[arg(long, env = "TEAL_PREVIEW_HTTPS_BIND", requires = "preview_bind")]
    pub preview_https_bind: Option<BindAddr>,

    /// Address where HAProxy serves its own Prometheus metrics at /metrics (per frontend, backend and server:
    /// requests, responses by class, errors, queue, response time) [default: none].
    #[arg(long, env = "TEAL_HAPROXY_METRICS_BIND")]
    pub haproxy_metrics_bind: Option<BindAddr>,

    /// Swarm services (labels from `deploy.labels`) as well as containers: auto (when the daemon is a swarm
    /// manager, re-checked every 30s), on (`--swarm` alone; warn while it is no manager) or off (`--swarm=off`).
    #[arg(
        long,
        env = "TEAL_SWARM",
        value_enum,
        default_value = "auto",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "on"
    )]
    pub swarm: SwarmMode,

    /// TLS: a directory of PEM files (certificate + key each), served by SNI on --https-bind and watched:
    /// adding or replacing a file reloads HAProxy [default: no TLS].
    #[arg(long, env = "TEAL_CERTS", value_parser = parse_certs_dir)]
    pub certs: Option<PathBuf>,

    /// Address of the HTTPS side of the shared frontend; used only with --certs or --acme-email.
    #[arg(long, env = "TEAL_HTTPS_BIND", default_value = DEFAULT_HTTPS_BIND)]
    pub https_bind: BindAddr,

    #[command(flatten)]
    pub acme: AcmeArgs,

    /// How long a request waits while its service has no ready server (being replaced, restarting), then a 503
    /// with Retry-After; 0 turns holding off (at most 30s; the PREFIX.hold label overrides it per service).
    #[arg(long, env = "TEAL_HOLD", default_value = DEFAULT_HOLD, value_parser = parse_hold)]
    pub hold: Duration,
}

/// Automatic HTTPS: certificates from an ACME server for the services labelled PREFIX.tls=acme.
#[derive(Debug, Args)]
pub struct AcmeArgs {
    /// Turns ACME on: the contact address of teal's ACME account (the CA mails expiry warnings there). Services
    /// labelled PREFIX.tls=acme get a certificate for each PREFIX.host name, answered through --http-bind
    /// (HTTP-01), renewed and loaded into HAProxy without a reload [default: no ACME].
    #[arg(long, env = "TEAL_ACME_EMAIL", value_parser = parse_acme_email)]
    pub acme_email: Option<String>,

    /// The ACME server's directory URL (Let's Encrypt's staging: https://acme-staging-v02.api.letsencrypt.org/directory).
    #[arg(long, env = "TEAL_ACME_DIRECTORY", default_value = DEFAULT_ACME_DIRECTORY, requires = "acme_email")]
    pub acme_directory: String,

    /// PEM file of the CA certificates to trust for the ACME server's own HTTPS (a private or test ACME server)
    /// [default: the system's trust store].
    #[arg(long, env = "TEAL_ACME_CA_FILE", requires = "acme_email")]
    pub acme_ca_file: Option<PathBuf>,
}

/// Which Docker daemon, and which of its containers.
#[derive(Debug, Args)]
pub struct DockerArgs {
    #[command(flatten)]
    pub host: DockerHostArgs,

    /// Every label teal reads is PREFIX.KEY (PREFIX.service, PREFIX.port...).
    #[arg(long, env = "TEAL_LABEL_PREFIX", default_value = DEFAULT_LABEL_PREFIX, value_parser = parse_label_prefix)]
    pub label_prefix: String,

    /// Only containers of this compose project [default: teal's own project when it runs in a compose container].
    #[arg(long, env = "TEAL_PROJECT")]
    pub project: Option<String>,
}

#[derive(Debug, Args)]
pub struct DockerHostArgs {
    /// Docker daemon address: unix:///PATH, tcp://HOST:PORT or http://HOST:PORT [default: DOCKER_HOST, else the local socket].
    #[arg(long, env = "TEAL_DOCKER_HOST")]
    pub docker_host: Option<String>,
}

#[derive(Debug, Args)]
pub struct StateDirArgs {
    /// Directory of teal's state: HAProxy's sockets, its saved server states, the live blue/green slots, the
    /// drained containers, the canary weights, the recent deploys.
    #[arg(long, env = "TEAL_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct StatusBindArgs {
    /// Address of teal's status endpoint (the daemon's, for the commands that ask it).
    #[arg(long, env = "TEAL_STATUS_BIND", default_value = DEFAULT_STATUS_BIND)]
    pub status_bind: SocketAddr,
}

#[derive(Debug, Args)]
pub struct HaproxyArgs {
    /// The haproxy executable (looked up in PATH), used to validate configs and in supervise mode.
    #[arg(long, env = "TEAL_HAPROXY", default_value = DEFAULT_HAPROXY)]
    pub haproxy: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        Cli::try_parse_from(args)
            .map(|cli| cli.command)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn flags_parse_after_the_subcommand() {
        let Ok(Command::Run(run)) = parse(&["teal", "run", "--label-prefix", "t1", "--http-bind", "127.0.0.1:8080"])
        else {
            panic!("not run")
        };
        assert_eq!(run.shape.docker.label_prefix, "t1");
        assert_eq!(run.shape.http_bind.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn a_subcommand_refuses_the_flags_of_others() {
        for args in [
            &["teal", "switch", "web", "--http-bind", ":81"][..],
            &["teal", "status", "--label-prefix", "t1"],
            &["teal", "render", "--debounce", "1s"],
            &["teal", "rollout", "web", "--reload", "none"],
            &["teal", "drain", "web-1", "--label-prefix", "t1"],
            &["teal", "--http-bind", ":81", "run"],
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains("unexpected argument"), "{args:?}: {err}");
        }
    }

    #[test]
    fn the_log_format_goes_anywhere() {
        for args in [
            &["teal", "--log-format", "json", "status"][..],
            &["teal", "status", "--log-format", "json"],
        ] {
            assert!(matches!(Cli::try_parse_from(args).unwrap().log_format, LogFormat::Json));
        }
    }

    #[test]
    fn bad_values_are_refused_with_the_grammar() {
        let err = parse(&["teal", "run", "--reload", "restart"]).unwrap_err();
        assert!(err.contains("supervise"), "{err}");
        assert!(parse(&["teal", "run", "--label-prefix", "a b"]).is_err());
        let err = parse(&["teal", "run", "--debounce", "fast"]).unwrap_err();
        assert!(err.contains("1m30s"), "{err}");
    }

    #[test]
    fn hold_defaults_to_15s_and_is_bounded() {
        let hold = |args: &[&str]| match parse(args) {
            Ok(Command::Check(check)) => Ok(check.shape.hold),
            other => Err(format!("{other:?}")),
        };
        assert_eq!(hold(&["teal", "check"]).unwrap(), Duration::from_secs(15));
        assert_eq!(hold(&["teal", "check", "--hold", "0"]).unwrap(), Duration::ZERO);
        assert_eq!(
            hold(&["teal", "check", "--hold", "2500"]).unwrap(),
            Duration::from_millis(2500)
        );
        assert!(hold(&["teal", "check", "--hold", "1m"]).is_err());
    }

    #[test]
    fn acme_flags_need_an_email() {
        let Ok(Command::Run(run)) = parse(&["teal", "run", "--acme-email", "ops@example.com"]) else {
            panic!("not run")
        };
        assert_eq!(run.shape.acme.acme_email.as_deref(), Some("ops@example.com"));
        assert_eq!(run.shape.acme.acme_directory, DEFAULT_ACME_DIRECTORY);
        let err = parse(&["teal", "run", "--acme-directory", "https://acme.test/dir"]).unwrap_err();
        assert!(err.contains("--acme-email"), "{err}");
        assert!(parse(&["teal", "run", "--acme-email", "nobody"]).is_err());
    }

    #[test]
    fn preview_https_needs_the_preview_listener_and_certificates() {
        let err = parse(&["teal", "render", "--preview-https-bind", ":8444"]).unwrap_err();
        assert!(err.contains("--preview-bind"), "{err}");
        let Ok(Command::Render(render)) = parse(&[
            "teal",
            "render",
            "--preview-bind",
            ":81",
            "--preview-https-bind",
            ":8444",
        ]) else {
            panic!("not render")
        };
        let err = crate::settings::Settings::for_render(render.shape)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--certs DIR or --acme-email"), "{err}");
    }

    #[test]
    fn swarm_flag_forms() {
        let swarm = |args: &[&str]| match parse(args) {
            Ok(Command::Run(run)) => Ok(run.shape.swarm),
            other => Err(format!("{other:?}")),
        };
        assert_eq!(swarm(&["teal", "run"]).unwrap(), SwarmMode::Auto);
        assert_eq!(swarm(&["teal", "run", "--swarm"]).unwrap(), SwarmMode::On);
        assert_eq!(swarm(&["teal", "run", "--swarm=off"]).unwrap(), SwarmMode::Off);
        assert!(swarm(&["teal", "run", "--swarm=maybe"]).is_err());
    }

    #[test]
    fn help_shows_the_environment_twins() {
        use clap::CommandFactory;
        let help = Cli::command()
            .find_subcommand_mut("run")
            .unwrap()
            .render_long_help()
            .to_string();
        for env in ["TEAL_HTTP_BIND", "TEAL_DEBOUNCE", "TEAL_DOCKER_HOST", "TEAL_HAPROXY"] {
            assert!(help.contains(env), "{env} missing from:\n{help}");
        }
    }

    #[test]
    fn canary_flags() {
        let rollout = |args: &[&str]| match parse(args) {
            Ok(Command::Rollout(rollout)) => Ok(rollout),
            other => Err(format!("{other:?}")),
        };
        let plain = rollout(&["teal", "rollout", "web"]).unwrap();
        assert!(plain.canary.is_empty());
        let canary = rollout(&[
            "teal",
            "rollout",
            "web",
            "--canary",
            "10,50%,100",
            "--step",
            "2s",
            "--max-error-rate",
            "0.5%",
            "--max-latency-ratio",
            "1.5",
        ])
        .unwrap();
        assert_eq!(canary.canary, [10, 50, 100]);
        assert_eq!((canary.step, canary.max_error_rate), (Duration::from_secs(2), 0.005));
        assert_eq!((canary.max_latency_ratio, canary.min_requests), (Some(1.5), 100));
        for bad in [
            &["teal", "rollout", "web", "--canary", "0,100"][..],
            &["teal", "rollout", "web", "--canary", "150"],
            &["teal", "rollout", "web", "--canary", "10", "--max-error-rate", "1"],
            &["teal", "rollout", "web", "--canary", "10", "--max-latency-ratio", "0"],
            &["teal", "rollout", "web", "--step", "2s"],
        ] {
            assert!(rollout(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
