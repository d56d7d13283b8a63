//! The validated config of each command: what the command line said, in
//! trusted types, checked before anything starts (see [`crate::cli`] for
//! the raw flags).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use crate::cli::{
    CheckArgs, ControlArgs, DrainArgs, MaintenanceArgs, OnOff, PauseArgs, ResumeArgs, RolloutArgs, RunArgs, ShapeArgs,
    StatusArgs, SwitchArgs,
};
use crate::duration::parse_duration;
use crate::model::labels::{ServiceName, Slot};
use crate::model::HeaderName;
use crate::status::StatusUsers;

mod checks;
pub use checks::SettingsError;

/// How teal makes HAProxy pick up a new config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadMode {
    /// teal runs HAProxy as its child in master-worker mode.
    Supervise,
    /// SIGUSR2 to the master whose pid is in this file.
    Pidfile(PathBuf),
    /// SIGUSR2 to this container through the Docker API.
    Container(String),
    /// `reload` on this master CLI socket.
    MasterSocket(PathBuf),
    /// Only write the file.
    None,
}

impl FromStr for ReloadMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let non_empty = |v: &str, what: &str| {
            if v.is_empty() {
                Err(format!("{what} needs a value after the ':'"))
            } else {
                Ok(v.to_owned())
            }
        };
        match s.split_once(':') {
            None if s == "supervise" => Ok(Self::Supervise),
            None if s == "none" => Ok(Self::None),
            Some(("pidfile", path)) => Ok(Self::Pidfile(non_empty(path, "pidfile")?.into())),
            Some(("container", name)) => Ok(Self::Container(non_empty(name, "container")?)),
            Some(("master-socket", path)) => Ok(Self::MasterSocket(non_empty(path, "master-socket")?.into())),
            _ => Err(format!(
                "{s:?}: use supervise, pidfile:PATH, container:NAME, master-socket:PATH or none"
            )),
        }
    }
}

/// Whether teal also discovers Swarm services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SwarmMode {
    /// When the daemon is an active swarm manager.
    Auto,
    On,
    Off,
}

/// An HAProxy bind address: `:80`, `127.0.0.1:8080`, `[::1]:8080`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindAddr {
    pub ip: Option<IpAddr>,
    pub port: u16,
}

impl BindAddr {
    /// The same address on another port (the frontend of a tcp service).
    pub fn with_port(self, port: u16) -> Self {
        Self { port, ..self }
    }
}

impl FromStr for BindAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an address like :80, 127.0.0.1:8080 or [::1]:8080");
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port = port.parse::<u16>().map_err(|_| bad())?;
        let ip = match host.trim_start_matches('[').trim_end_matches(']') {
            "" | "*" => None,
            ip => Some(ip.parse().map_err(|_| bad())?),
        };
        Ok(Self { ip, port })
    }
}

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            None => write!(f, ":{}", self.port),
            Some(ip) => write!(f, "{}", SocketAddr::new(ip, self.port)),
        }
    }
}

impl Serialize for BindAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The config of `teal run`, `render` and `check`. `render` and `check`
/// take only the flags that shape haproxy.cfg; the rest keeps its default.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The Docker daemon: `--docker-host`, else `DOCKER_HOST`; `None` is the local socket.
    pub docker_host: Option<String>,
    pub label_prefix: String,
    pub project: Option<String>,
    pub template: Option<PathBuf>,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub haproxy: PathBuf,
    pub reload: ReloadMode,
    pub http_bind: BindAddr,
    pub preview_bind: Option<BindAddr>,
    /// `--preview-https-bind`: the preview listener's HTTPS side.
    pub preview_https_bind: Option<BindAddr>,
    /// `--haproxy-metrics-bind`: HAProxy's Prometheus exporter.
    pub haproxy_metrics_bind: Option<BindAddr>,
    pub swarm: SwarmMode,
    pub certs: Option<PathBuf>,
    pub https_bind: BindAddr,
    pub status_bind: SocketAddr,
    /// `--status-auth`: who may read the status endpoint.
    pub status_users: Option<StatusUsers>,
    pub debounce: Duration,
    /// `--hold`: how long a request waits while its service has no ready server.
    pub hold: Duration,
    /// `--acme-email` and the rest: `None` without ACME.
    pub acme: Option<AcmeSettings>,
}

/// Where and as whom teal asks for certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The account's contact address.
    pub email: String,
    /// The directory URL of the ACME server.
    pub directory: String,
    /// CA certificates to trust for the ACME server's HTTPS; `None`: the system's.
    pub ca_file: Option<PathBuf>,
}

// The defaults, as `--help` shows them.
pub const DEFAULT_LABEL_PREFIX: &str = "teal";
pub const DEFAULT_CONFIG: &str = "/var/lib/teal/haproxy.cfg";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/teal";
pub const DEFAULT_HAPROXY: &str = "haproxy";
pub const DEFAULT_RELOAD: &str = "supervise";
pub const DEFAULT_HTTP_BIND: &str = ":80";
pub const DEFAULT_HTTPS_BIND: &str = ":443";
pub const DEFAULT_STATUS_BIND: &str = "127.0.0.1:9180";
pub const DEFAULT_DEBOUNCE: &str = "50ms";
pub const DEFAULT_HOLD: &str = "15s";
pub const DEFAULT_ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// What `teal run` does without flags or `TEAL_*` environment (tests start
/// from it and set what they need).
impl Default for Settings {
    fn default() -> Self {
        Self {
            docker_host: None,
            label_prefix: DEFAULT_LABEL_PREFIX.to_owned(),
            project: None,
            template: None,
            config: DEFAULT_CONFIG.into(),
            state_dir: DEFAULT_STATE_DIR.into(),
            haproxy: DEFAULT_HAPROXY.into(),
            reload: DEFAULT_RELOAD.parse().expect("the default reload mode parses"),
            http_bind: default_bind(DEFAULT_HTTP_BIND),
            preview_bind: None,
            preview_https_bind: None,
            haproxy_metrics_bind: None,
            swarm: SwarmMode::Auto,
            certs: None,
            https_bind: default_bind(DEFAULT_HTTPS_BIND),
            status_bind: DEFAULT_STATUS_BIND.parse().expect("the default status address parses"),
            status_users: None,
            debounce: parse_duration(DEFAULT_DEBOUNCE).expect("the default debounce parses"),
            hold: parse_duration(DEFAULT_HOLD).expect("the default hold parses"),
            acme: None,
        }
    }
}

fn default_bind(text: &str) -> BindAddr {
    text.parse().expect("a default bind address parses")
}

impl Settings {
    /// `teal run`: refuses what can never work before anything starts.
    pub fn for_run(args: RunArgs) -> Result<Self, SettingsError> {
        let settings = Self {
            config: args.config,
            haproxy: args.haproxy.haproxy,
            reload: args.reload,
            debounce: args.debounce,
            status_users: args.status_auth.as_deref().map(StatusUsers::load).transpose()?,
            ..Self::shaped_by(args.shape)?
        };
        checks::config_file(&settings.config)?;
        checks::haproxy(&settings.haproxy)?;
        // Hold sockets are named by a digest: all have the length of this one.
        let any = crate::model::labels::ServiceName::parse("web").expect("a service name");
        let hold = crate::render::HoldSettings::new(&settings.hold_script(), &settings.hold_sockets(), settings.hold);
        checks::socket_paths(&settings.state_dir, &hold.socket(&any))?;
        Ok(settings)
    }

    /// `teal render`.
    pub fn for_render(args: ShapeArgs) -> Result<Self, SettingsError> {
        Self::shaped_by(args)
    }

    /// `teal check`.
    pub fn for_check(args: CheckArgs) -> Result<Self, SettingsError> {
        let settings = Self {
            haproxy: args.haproxy.haproxy,
            ..Self::shaped_by(args.shape)?
        };
        checks::haproxy(&settings.haproxy)?;
        Ok(settings)
    }

    fn shaped_by(args: ShapeArgs) -> Result<Self, SettingsError> {
        let settings = Self {
            docker_host: checks::docker_host(args.docker.host.docker_host)?,
            label_prefix: args.docker.label_prefix,
            project: args.docker.project,
            template: args.template,
            state_dir: args.state_dir.state_dir,
            http_bind: args.http_bind,
            preview_bind: args.preview_bind,
            preview_https_bind: args.preview_https_bind,
            haproxy_metrics_bind: args.haproxy_metrics_bind,
            swarm: args.swarm,
            certs: args.certs,
            https_bind: args.https_bind,
            status_bind: args.status.status_bind,
            hold: args.hold,
            acme: args.acme.acme_email.map(|email| AcmeSettings {
                email,
                directory: args.acme.acme_directory,
                ca_file: args.acme.acme_ca_file,
            }),
            ..Self::default()
        };
        if settings.preview_https_bind.is_some() && !settings.tls() {
            return Err(SettingsError::PreviewHttpsWithoutTls);
        }
        Ok(settings)
    }

    /// Logs what `teal run` with these settings exposes beyond this host.
    pub fn warn_if_exposed(&self) {
        checks::warn_if_plain_docker(self.docker_host.as_deref());
        checks::warn_if_public_status(self.status_bind, self.status_users.is_some());
    }

    /// Ports HAProxy or teal already listen on, which no tcp service may take.
    pub fn frontend_ports(&self) -> std::collections::BTreeSet<u16> {
        let mut ports = std::collections::BTreeSet::from([self.http_bind.port, self.status_bind.port()]);
        ports.extend(self.preview_bind.map(|b| b.port));
        ports.extend(self.preview_https_bind.map(|b| b.port));
        ports.extend(self.haproxy_metrics_bind.map(|b| b.port));
        if self.tls() {
            ports.insert(self.https_bind.port);
        }
        ports
    }

    /// Whether HAProxy terminates TLS on `--https-bind` (`--certs`, ACME or both).
    pub fn tls(&self) -> bool {
        self.certs.is_some() || self.acme.is_some()
    }

    /// Where ACME keeps its account, certificates and HAProxy's files for it.
    pub fn acme_dir(&self) -> PathBuf {
        self.state_dir.join("acme")
    }

    /// HAProxy's admin-level stats socket: the runtime API.
    pub fn admin_socket(&self) -> PathBuf {
        self.state_dir.join("haproxy.sock")
    }

    /// The master CLI of a supervised HAProxy.
    pub fn master_socket(&self) -> PathBuf {
        match &self.reload {
            ReloadMode::MasterSocket(path) => path.clone(),
            _ => self.state_dir.join("master.sock"),
        }
    }

    /// Server states saved before each reload, so a reload does not bring
    /// back a server that is down or draining as UP.
    pub fn server_state_file(&self) -> PathBuf {
        self.state_dir.join("server-state")
    }

    /// The unix sockets of the services' holds (HAProxy's own listeners).
    pub fn hold_sockets(&self) -> PathBuf {
        self.state_dir.join("hold")
    }

    /// The Lua action that holds requests while a service has no ready
    /// server, written here by `run` and `check` (HAProxy loads it).
    pub fn hold_script(&self) -> PathBuf {
        self.state_dir.join("hold.lua")
    }
}

/// The config of `teal rollout SERVICE`.
#[derive(Debug, Clone)]
pub struct RolloutSettings {
    pub service: ServiceName,
    pub image: Option<String>,
    pub timeout: Duration,
    pub drain: Duration,
    pub docker_host: Option<String>,
    pub label_prefix: String,
    pub project: Option<String>,
    pub state_dir: PathBuf,
    pub status_bind: SocketAddr,
    /// `--canary`: the steps, held and judged before the old containers go.
    pub canary: Option<CanarySettings>,
}

/// `teal rollout --canary` and the flags that go with it.
#[derive(Debug, Clone, PartialEq)]
pub struct CanarySettings {
    /// The new servers' percentage of the traffic at each step, ascending.
    pub steps: Vec<u8>,
    /// How long each step is held.
    pub step: Duration,
    pub limits: crate::rollout::Limits,
    /// `--canary-header`: marked requests go to the new containers.
    pub header: Option<HeaderName>,
}

impl CanarySettings {
    fn new(args: &RolloutArgs) -> Result<Option<Self>, SettingsError> {
        if args.canary.is_empty() {
            return Ok(None);
        }
        if args.canary.windows(2).any(|pair| pair[0] >= pair[1]) || args.step.is_zero() {
            return Err(SettingsError::CanarySteps {
                steps: args.canary.iter().map(u8::to_string).collect::<Vec<_>>().join(","),
            });
        }
        Ok(Some(Self {
            steps: args.canary.clone(),
            step: args.step,
            limits: crate::rollout::Limits {
                max_error_rate: args.max_error_rate,
                max_latency_ratio: args.max_latency_ratio,
                min_requests: args.min_requests,
            },
            header: args.canary_header.clone(),
        }))
    }
}

impl RolloutSettings {
    pub fn new(args: RolloutArgs) -> Result<Self, SettingsError> {
        Ok(Self {
            canary: CanarySettings::new(&args)?,
            service: args.service,
            image: args.image,
            timeout: args.timeout,
            drain: args.drain,
            docker_host: checks::docker_host(args.docker.host.docker_host)?,
            label_prefix: args.docker.label_prefix,
            project: args.docker.project,
            state_dir: args.state_dir.state_dir,
            status_bind: args.status.status_bind,
        })
    }
}

/// The config of `teal drain CONTAINER`.
#[derive(Debug, Clone)]
pub struct DrainSettings {
    pub container: String,
    pub timeout: Duration,
    pub undo: bool,
    pub docker_host: Option<String>,
    pub state_dir: PathBuf,
    pub status_bind: SocketAddr,
}

impl DrainSettings {
    pub fn new(args: DrainArgs) -> Result<Self, SettingsError> {
        Ok(Self {
            container: args.container,
            timeout: args.timeout,
            undo: args.undo,
            docker_host: checks::docker_host(args.docker.docker_host)?,
            state_dir: args.state_dir.state_dir,
            status_bind: args.status.status_bind,
        })
    }
}

/// The config of `teal switch SERVICE`.
#[derive(Debug, Clone)]
pub struct SwitchSettings {
    pub service: ServiceName,
    pub to: Option<Slot>,
    pub force: bool,
    pub timeout: Duration,
    pub state_dir: PathBuf,
    pub status_bind: SocketAddr,
}

impl From<SwitchArgs> for SwitchSettings {
    fn from(args: SwitchArgs) -> Self {
        Self {
            service: args.service,
            to: args.to,
            force: args.force,
            timeout: args.timeout,
            state_dir: args.state_dir.state_dir,
            status_bind: args.status.status_bind,
        }
    }
}

/// The config of `teal maintenance`, `teal pause` and `teal resume`.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    pub service: ServiceName,
    pub control: ServiceControl,
    pub timeout: Duration,
    pub state_dir: PathBuf,
    pub status_bind: SocketAddr,
}

/// The change one of those commands makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceControl {
    MaintenanceOn { message: String },
    MaintenanceOff,
    Pause { max: Duration },
    Resume,
}

impl ControlSettings {
    fn new(service: ServiceName, control: ServiceControl, args: ControlArgs) -> Self {
        Self {
            service,
            control,
            timeout: args.timeout,
            state_dir: args.state_dir.state_dir,
            status_bind: args.status.status_bind,
        }
    }
}

impl From<MaintenanceArgs> for ControlSettings {
    fn from(args: MaintenanceArgs) -> Self {
        let control = match args.state {
            OnOff::On => ServiceControl::MaintenanceOn {
                message: args
                    .message
                    .unwrap_or_else(|| crate::controls::DEFAULT_MESSAGE.to_owned()),
            },
            OnOff::Off => ServiceControl::MaintenanceOff,
        };
        Self::new(args.service, control, args.control)
    }
}

impl From<PauseArgs> for ControlSettings {
    fn from(args: PauseArgs) -> Self {
        Self::new(args.service, ServiceControl::Pause { max: args.max }, args.control)
    }
}

impl From<ResumeArgs> for ControlSettings {
    fn from(args: ResumeArgs) -> Self {
        Self::new(args.service, ServiceControl::Resume, args.control)
    }
}

/// The config of `teal status`.
#[derive(Debug, Clone)]
pub struct StatusSettings {
    pub status_bind: SocketAddr,
    /// Where the daemon leaves the token `--status-auth` asks for.
    pub state_dir: PathBuf,
    pub json: bool,
}

impl From<StatusArgs> for StatusSettings {
    fn from(args: StatusArgs) -> Self {
        Self {
            status_bind: args.status.status_bind,
            state_dir: args.state_dir.state_dir,
            json: args.json,
        }
    }
}

/// Label prefixes are used as label key prefixes and nothing else, but keep
/// them to the characters Docker users put in label keys.
pub fn parse_label_prefix(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?}: use letters, digits, '.', '_' and '-'"))
    }
}

/// An account contact: one address, no spaces (it becomes a `mailto:` URL).
pub fn parse_acme_email(s: &str) -> Result<String, String> {
    let ok = s
        .split_once('@')
        .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.') && !domain.starts_with('.'))
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || ",;<>\"".contains(c));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not an email address like ops@example.com"))
    }
}

/// The certificate directory is written into haproxy.cfg (`crt DIR`):
/// refuse what would need quoting there.
pub fn parse_certs_dir(s: &str) -> Result<PathBuf, String> {
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !"\"'#\\".contains(c));
    if ok {
        Ok(PathBuf::from(s))
    } else {
        Err(format!(
            "{s:?}: the certificate directory's path may not hold spaces, quotes, '#' or '\\'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_modes() {
        assert_eq!("supervise".parse(), Ok(ReloadMode::Supervise));
        assert_eq!(
            "pidfile:/run/h.pid".parse(),
            Ok(ReloadMode::Pidfile("/run/h.pid".into()))
        );
        assert_eq!("container:lb".parse(), Ok(ReloadMode::Container("lb".into())));
        assert!("container:".parse::<ReloadMode>().is_err());
        assert!("restart".parse::<ReloadMode>().is_err());
    }

    #[test]
    fn bind_addresses() {
        for (text, shown) in [
            (":80", ":80"),
            ("*:80", ":80"),
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("[::1]:81", "[::1]:81"),
        ] {
            assert_eq!(text.parse::<BindAddr>().unwrap().to_string(), shown);
        }
        for bad in ["80", "localhost:80", "1.2.3.4:x", "1.2.3.4:80\nbind :81"] {
            assert!(bad.parse::<BindAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn certificate_directories() {
        assert_eq!(parse_certs_dir("/etc/teal/certs"), Ok(PathBuf::from("/etc/teal/certs")));
        for bad in ["", "/my certs", "/a\nbind :81", "/a#b", "/a\"b"] {
            assert!(parse_certs_dir(bad).is_err(), "{bad:?}");
        }
    }
}
