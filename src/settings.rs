//! Validated settings: what the command line said, in trusted types.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use crate::model::labels::parse_duration;

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

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Docker daemon address (unix:///path or tcp://host:port); else DOCKER_HOST, else the local socket.
    #[arg(long, global = true, env = "TEAL_DOCKER_HOST")]
    pub docker_host: Option<String>,

    /// Every label teal reads is PREFIX.KEY (PREFIX.service, PREFIX.port...).
    #[arg(long, global = true, env = "TEAL_LABEL_PREFIX", default_value = "teal", value_parser = parse_label_prefix)]
    pub label_prefix: String,

    /// Only containers of this compose project [default: teal's own project when it runs in a compose container].
    #[arg(long, global = true, env = "TEAL_PROJECT")]
    pub project: Option<String>,

    /// Handlebars template for haproxy.cfg, watched for changes [default: the embedded haproxy/haproxy.cfg.hbs].
    #[arg(long, global = true, env = "TEAL_TEMPLATE")]
    pub template: Option<PathBuf>,

    /// Where the rendered haproxy.cfg is written (atomically).
    #[arg(
        long,
        global = true,
        env = "TEAL_CONFIG",
        default_value = "/var/lib/teal/haproxy.cfg"
    )]
    pub config: PathBuf,

    /// Directory for HAProxy's sockets and its saved server states.
    #[arg(long, global = true, env = "TEAL_STATE_DIR", default_value = "/var/lib/teal")]
    pub state_dir: PathBuf,

    /// The haproxy executable, used to validate configs and in supervise mode.
    #[arg(long, global = true, env = "TEAL_HAPROXY", default_value = "haproxy")]
    pub haproxy: PathBuf,

    /// How HAProxy picks up a new config: supervise, pidfile:PATH, container:NAME, master-socket:PATH or none.
    #[arg(long, global = true, env = "TEAL_RELOAD", default_value = "supervise")]
    pub reload: ReloadMode,

    /// Address of the shared HTTP frontend.
    #[arg(long, global = true, env = "TEAL_HTTP_BIND", default_value = ":80")]
    pub http_bind: BindAddr,

    /// Blue/green: address of the preview listener, which serves the slot that is not live [default: none].
    #[arg(long, global = true, env = "TEAL_PREVIEW_BIND")]
    pub preview_bind: Option<BindAddr>,

    /// Swarm services (labels from `deploy.labels`) as well as containers: auto (when the daemon is a swarm
    /// manager, re-checked every 30s), on (`--swarm` alone; warn while it is no manager) or off (`--swarm=off`).
    #[arg(
        long,
        global = true,
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
    #[arg(long, global = true, env = "TEAL_CERTS", value_parser = parse_certs_dir)]
    pub certs: Option<PathBuf>,

    /// Address of the HTTPS side of the shared frontend; used only with --certs.
    #[arg(long, global = true, env = "TEAL_HTTPS_BIND", default_value = ":443")]
    pub https_bind: BindAddr,

    /// Address of teal's status endpoint.
    #[arg(long, global = true, env = "TEAL_STATUS_BIND", default_value = "127.0.0.1:9180")]
    pub status_bind: SocketAddr,

    /// Quiet time that coalesces a burst of Docker events into one update.
    #[arg(long, global = true, env = "TEAL_DEBOUNCE", default_value = "50ms", value_parser = parse_duration)]
    pub debounce: Duration,
}

impl Settings {
    /// Ports HAProxy or teal already listen on, which no tcp service may take.
    pub fn frontend_ports(&self) -> std::collections::BTreeSet<u16> {
        let mut ports = std::collections::BTreeSet::from([self.http_bind.port, self.status_bind.port()]);
        ports.extend(self.preview_bind.map(|b| b.port));
        if self.certs.is_some() {
            ports.insert(self.https_bind.port);
        }
        ports
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
    fn swarm_flag_forms() {
        use clap::Parser;
        let parse = |args: &[&str]| crate::cli::Cli::try_parse_from(args).map(|cli| cli.settings.swarm);
        assert_eq!(parse(&["teal", "run"]).unwrap(), SwarmMode::Auto);
        // No value: on. A value needs '=', so `--swarm run` still reads `run` as the subcommand.
        assert_eq!(parse(&["teal", "--swarm", "run"]).unwrap(), SwarmMode::On);
        assert_eq!(parse(&["teal", "run", "--swarm=off"]).unwrap(), SwarmMode::Off);
        assert!(parse(&["teal", "run", "--swarm=maybe"]).is_err());
    }

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
